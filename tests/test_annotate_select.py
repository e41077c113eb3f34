"""Active learning's selection step (annotate.select, `prm select`): the most uncertain traces
first, within a rollout budget; random selection as the seeded baseline."""

import pytest

from annotate.select import binary_entropy, estimated_rollouts, select, trace_uncertainty
from prm.app.cli import main
from prm.io import read_traces, write_traces
from prm.records import Step, Trace


def scored(trace_id, scores):
    return Trace(id=trace_id, problem=f"problem {trace_id}", steps=[Step(f"s{i}", score=s) for i, s in enumerate(scores)])


def test_uncertainty_is_the_largest_step_entropy_and_an_unscored_step_is_most_uncertain():
    assert binary_entropy(0.5) == 1.0 and binary_entropy(0.0) == binary_entropy(1.0) == 0.0
    assert trace_uncertainty([0.99, 0.5, 0.01]) == 1.0
    assert trace_uncertainty([0.9, 0.8]) == pytest.approx(binary_entropy(0.8))
    assert trace_uncertainty([0.99, None]) == 1.0


def test_estimated_rollouts_of_each_method():
    trace = scored("t", [0.5] * 7)
    assert estimated_rollouts(trace, "mc", 8) == 56
    assert estimated_rollouts(trace, "binary", 8) == 24  # ceil(log2(8)) = 3 probes
    with pytest.raises(ValueError):
        estimated_rollouts(trace, "judge", 8)


def test_uncertain_selection_takes_the_least_sure_traces_that_fit_the_budget():
    pool = [scored("sure", [0.99, 0.98]), scored("unsure", [0.9, 0.55]), scored("middle", [0.8, 0.7]),
            scored("long-unsure", [0.5] * 6)]
    # mc, n=2: costs 4, 4, 4, 12; budget 10: long-unsure (12) does not fit, the next ones do
    chosen = select(pool, 10, strategy="uncertain", method="mc", n=2)
    assert [t.id for t in chosen.traces] == ["unsure", "middle"]
    assert chosen.spent == 8 and chosen.estimated == [4, 4] and chosen.uncertainty[0] > chosen.uncertainty[1]
    assert [t.id for t in select(pool, 12, n=2).traces] == ["long-unsure"]


def test_random_selection_is_reproducible_from_its_seed_and_honours_true_costs():
    pool = [scored(f"t{i}", [0.5]) for i in range(20)]
    a = select(pool, 50, strategy="random", n=8, seed=3)
    assert [t.id for t in a.traces] == [t.id for t in select(pool, 50, strategy="random", n=8, seed=3).traces]
    assert [t.id for t in a.traces] != [t.id for t in select(pool, 50, strategy="random", n=8, seed=4).traces]
    assert len(a.traces) == 6  # 8 each, 50 // 8
    costs = {f"t{i}": i for i in range(20)}
    known = select(pool, 10, strategy="random", cost=lambda t: costs[t.id], seed=0)
    assert sum(costs[t.id] for t in known.traces) <= 10


def test_prm_select_writes_the_chosen_traces_without_scores(tmp_path, capsys):
    pool = [Trace(id="verified", problem="p", steps=[Step("2 + 2 = 4")]),
            Trace(id="unknown", problem="p", steps=[Step("we think hard about it")]),
            Trace(id="done", problem="p", steps=[Step("so on")])]
    write_traces(tmp_path / "pool.jsonl", pool)
    write_traces(tmp_path / "done.jsonl", pool[2:])
    out = tmp_path / "chosen.jsonl"
    assert main(["select", str(tmp_path / "pool.jsonl"), str(out), "--scorer", "checker:sympy",
                 "--budget-rollouts", "8", "--n", "8", "--exclude", str(tmp_path / "done.jsonl")]) == 0
    chosen = read_traces(out)
    # sympy verifies 2 + 2 = 4 (score 1.0: certain); the other step is unknown (0.5: most uncertain)
    assert [t.id for t in chosen] == ["unknown"]
    assert chosen[0].meta["selection"]["uncertainty"] == 1.0 and chosen[0].steps[0].score is None
    assert "chose 1 of 2 trace(s) (1 excluded" in capsys.readouterr().out
    assert main(["select", str(tmp_path / "pool.jsonl"), str(out), "--budget-rollouts", "8"]) == 1
    assert "--scorer" in capsys.readouterr().err
