"""Label quality (Monte Carlo / binary-search / checker labels against gold) and PRMBench
per-class detection, against hand computations; PRMBench on the real released records."""

import pytest
from sklearn.metrics import cohen_kappa_score

from evals.label_quality import label_quality
from evals.prmbench import per_class_detection
from prm.formats.prmbench import read_prmbench
from prm.records import Rollouts, Step, Trace, Verdict


def mc_step(text, hard, soft, total, source="monte-carlo", verdicts=()):
    rollouts = Rollouts(correct=round(soft * total), total=total, tokens=10 * total) if total else None
    return Step(text, hard_label=hard, soft_label=soft, label_source=source, rollouts=rollouts,
                verdicts=list(verdicts))


def labelled_set():
    t1 = Trace(id="t1", problem="p", steps=[mc_step("a", 1, 0.9, 8), mc_step("b", 0, 0.4, 8),
                                            mc_step("c", 0, 0.1, 8), mc_step("d", 0, 0.0, 0)],
               meta={"gold_labels": [1, 1, 0, 0]})
    t2 = Trace(id="t2", problem="p",
               steps=[mc_step("a", 1, 1.0, 4, verdicts=[Verdict("sympy", "verified")]),
                      mc_step("b", 1, 0.8, 4, verdicts=[Verdict("sympy", "refuted"), Verdict("z3", "unknown")])],
               meta={"gold_labels": [1, 1]})
    t3 = Trace(id="t3", problem="p", steps=[Step("a", hard_label=1, label_source="binary-search"),
                                            Step("b", hard_label=0, label_source="binary-search")],
               meta={"gold_labels": [1, 0]})
    return [t1, t2, t3]


def test_label_quality_matches_hand_computation():
    q = label_quality(labelled_set(), bins=2)
    assert q["compared_steps"] == 8
    assert q["agreement"] == pytest.approx(7 / 8)  # only t1's second step disagrees
    assert q["by_source"]["monte-carlo"]["agreement"] == pytest.approx(5 / 6)
    assert q["by_source"]["binary-search"]["agreement"] == 1.0
    assert q["bad_precision"] == pytest.approx(3 / 4)  # labelled 0: t1 b c d, t3 b; t1 b is gold-good
    assert q["bad_recall"] == 1.0
    labels, gold = [1, 0, 0, 0, 1, 1, 1, 0], [1, 1, 0, 0, 1, 1, 1, 0]
    assert q["kappa"] == pytest.approx(cohen_kappa_score(labels, gold))
    # first errors implied by labels vs gold: t1 1 vs 2, t2 -1 vs -1, t3 1 vs 1
    assert q["first_error"] == {"traces": 3, "accuracy": pytest.approx(2 / 3), "error_accuracy": 0.5,
                                "correct_accuracy": 1.0}
    soft = q["soft"]
    assert soft["steps"] == 6
    assert soft["brier"] == pytest.approx((0.01 + 0.36 + 0.01 + 0 + 0 + 0.04) / 6)
    # bins [0, .5): .4 .1 .0 (mean 1/6, 1 of 3 good); [.5, 1]: .9 1 .8 (mean .9, all good)
    assert soft["ece"] == pytest.approx(0.5 * (1 / 3 - 1 / 6) + 0.5 * 0.1)
    assert q["rollouts"] == {"traces": 2, "total": 32, "per_trace_mean": 16.0, "per_trace_median": 16.0,
                             "per_trace_max": 24, "probed_steps": 5, "per_probed_step_mean": 6.4,
                             "tokens": 320}
    assert q["checkers"]["sympy"] == {"verified": 1, "refuted": 1, "unknown": 0, "unavailable": 0,
                                      "verified_precision": 1.0, "refuted_precision": 0.0}
    assert q["checkers"]["z3"]["unknown"] == 1 and q["checkers"]["z3"]["verified_precision"] is None


def test_unknown_labels_are_left_out_not_counted_as_bad():
    trace = Trace(id="u", problem="p", steps=[Step("a", hard_label=1), Step("b"), Step("c", hard_label=0)],
                  meta={"gold_labels": [1, 0, None]})
    q = label_quality([trace])
    assert q["compared_steps"] == 1 and q["agreement"] == 1.0
    assert q["soft"] is None and q["rollouts"] is None and q["first_error"]["traces"] == 0


def test_prmbench_detection_per_class_on_real_records(shared_data):
    folder = shared_data / "prmbench-train"
    circular = read_prmbench(folder / "prm800k_train_p1_first400_4o_circular.jsonl", limit=25)
    counterfactual = read_prmbench(folder / "prm800k_train_p1_first400_4o_counterfactual.jsonl", limit=25)
    # A perfect PRM on circular records; a PRM that flags nothing on counterfactual ones.
    for trace in circular:
        for step, gold in zip(trace.steps, trace.meta["gold_labels"]):
            step.score = 0.5 if gold is None else 0.1 + 0.8 * gold
    for trace in counterfactual:
        for step in trace.steps:
            step.score = 0.8
    rows = per_class_detection(circular + counterfactual, threshold=0.5)
    assert set(rows) == {"circular", "counterfactual"}
    perfect = rows["circular"]
    assert perfect["traces"] == 25 and perfect["bad_steps"] > 0
    assert (perfect["step_recall"], perfect["false_alarm"], perfect["trace_detection"],
            perfect["first_error_accuracy"], perfect["prm_score"]) == (1.0, 0.0, 1.0, 1.0, 1.0)
    blind = rows["counterfactual"]
    good = sum(g == 1 for t in counterfactual for g in t.meta["gold_labels"])
    bad = sum(g == 0 for t in counterfactual for g in t.meta["gold_labels"])
    assert blind["bad_steps"] == bad
    assert (blind["step_recall"], blind["false_alarm"], blind["trace_detection"]) == (0.0, 0.0, 0.0)
    # everything predicted good: F1(good) = 2g / (2g + b), F1(bad) = 0
    assert blind["prm_score"] == pytest.approx((2 * good / (2 * good + bad) + 0) / 2)
