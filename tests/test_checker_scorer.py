"""Checker scorers (annotate.checkers.scorer) and the scorer spec resolver (prm.app.scorers)."""

import pytest

from annotate.checkers.scorer import (
    REFUTED,
    UNKNOWN,
    VERIFIED,
    CheckerAwareScorer,
    CheckerScorer,
)
from evals.first_error import predict_first_error
from prm.app.scorers import load_step_scorer, parse_spec
from prm.errors import RecordError
from prm.reward.scorer import StepScorer

PROBLEM = "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May."
STEPS = ["In May she sold 48/2 = 24 clips.",        # verified
         "Altogether she sold 48 + 24 = 70 clips.",  # refuted (72)
         "So the answer is seventy-two."]            # nothing to check


class FixedScorer(StepScorer):
    """A scorer giving every step the same score (a stand-in model for the override)."""

    aggregation = "prod"

    def __init__(self, value):
        self.value, self.calls = value, 0

    def score_many(self, items, batch_size=None, progress=False):
        self.calls += 1
        return [[self.value] * len(item[1]) for item in items]


def test_checker_scorer_scores_refuted_verified_and_unknown_steps():
    scorer = CheckerScorer(["sympy"])
    scores = scorer.score(PROBLEM, STEPS)
    assert scores == [VERIFIED, REFUTED, UNKNOWN] == [1.0, 0.0, 0.5]
    # at the default threshold the refuted step is the first error, the unknown one is not
    assert predict_first_error(scores, scorer.default_threshold) == 1
    assert predict_first_error(scorer.score(PROBLEM, [STEPS[0], STEPS[2]]), scorer.default_threshold) == -1
    assert 0.0 < scorer.default_threshold < 0.5  # PRMBench's strict "valid when > threshold" too
    assert scorer.solution_score(scores) == 0.0


def test_checker_scorer_uses_earlier_steps_as_context_with_z3():
    scorer = CheckerScorer("sympy,z3")
    assert [c.name for c in scorer.checkers] == ["sympy", "z3"]
    scores = scorer.score_many([(PROBLEM, STEPS), ("Q", [])])
    assert scores[0][1] == REFUTED and scores[1] == []


def test_checker_aware_scorer_overrides_only_refuted_steps():
    base = FixedScorer(0.9)
    scorer = CheckerAwareScorer(base, ["sympy"])
    assert scorer.score(PROBLEM, STEPS) == [0.9, 0.0, 0.9]
    assert scorer.aggregation == "prod" and base.calls == 1
    assert CheckerAwareScorer(base, "sympy", refuted_score=0.1).score(PROBLEM, STEPS) == [0.9, 0.1, 0.9]
    # items may carry extras after the steps (e.g. step features for another scorer)
    assert scorer.score_many([(PROBLEM, STEPS, {"extra": 1})]) == [[0.9, 0.0, 0.9]]
    assert CheckerScorer("sympy").score_many([(PROBLEM, STEPS, None)]) == [[1.0, 0.0, 0.5]]


def test_load_step_scorer_understands_checker_specs(tmp_path):
    assert parse_spec("checker:sympy,z3") == (None, ["sympy", "z3"])
    assert parse_spec("some/model+checker:sympy") == ("some/model", ["sympy"])
    assert parse_spec("some/model") == ("some/model", [])
    assert isinstance(load_step_scorer("checker:sympy"), CheckerScorer)
    with pytest.raises(RecordError, match="unknown checker 'nope'"):
        load_step_scorer("checker:nope")
    with pytest.raises(RecordError, match="no checker named"):
        load_step_scorer("checker:")
    with pytest.raises(RecordError, match="no such model folder"):
        load_step_scorer(str(tmp_path / "missing") + "+checker:sympy")


def test_load_step_scorer_wraps_a_model_folder(tmp_path):
    from helpers.reward_models import tiny_bert

    from prm.reward.model import RewardModel

    RewardModel.from_backbone(str(tiny_bert(tmp_path / "bert"))).save_pretrained(tmp_path / "rm")
    plain = load_step_scorer(str(tmp_path / "rm"))
    aware = load_step_scorer(str(tmp_path / "rm") + "+checker:sympy")
    assert isinstance(plain, RewardModel) and isinstance(aware, CheckerAwareScorer)
    base = plain.score(PROBLEM, STEPS)
    assert aware.score(PROBLEM, STEPS) == pytest.approx([base[0], 0.0, base[2]], abs=1e-6)


def test_checker_scorer_on_worker_processes_scores_as_one_process():
    from helpers.reward_models import gsm8k_with_errors

    traces = gsm8k_with_errors(12, seed=4)
    items = [(t.problem, t.step_texts) for t in traces] + [(PROBLEM, STEPS), (PROBLEM, [])]
    alone = CheckerScorer("sympy,z3").score_many(items)
    assert REFUTED in {s for row in alone for s in row}  # the injected errors are found
    for workers in (1, 2):
        assert CheckerScorer("sympy,z3", workers=workers).score_many(items, progress=True) == alone
    aware = CheckerAwareScorer(FixedScorer(0.9), ["sympy"], workers=2).score_many(items)
    assert aware == CheckerAwareScorer(FixedScorer(0.9), ["sympy"]).score_many(items)
    with pytest.raises(ValueError, match="by name"):
        CheckerScorer([CheckerScorer("sympy").checkers[0]], workers=2)


def processbench_folder(folder, problems: int, seed: int) -> list:
    """A ProcessBench-format folder of GSM8K traces with injected errors; its traces."""
    from prm.formats.processbench import write_processbench
    from helpers.reward_models import gsm8k_with_errors

    folder.mkdir()
    traces = gsm8k_with_errors(problems, seed=seed)
    for trace in traces:
        trace.id = f"gsm8k-{trace.id}"
    write_processbench(folder / "gsm8k.json", traces)
    return traces


def test_eval_benchmark_with_checker_workers_predicts_as_one_worker(tmp_path):
    import json

    from prm.app.cli import main

    data = tmp_path / "pb"
    traces = processbench_folder(data, 8, seed=2)
    predictions = {}
    for workers in (1, 2):
        out = tmp_path / f"out{workers}"
        assert main(["eval", "--benchmark", "processbench", "--scorer", "checker:sympy", "--data", str(data),
                     "--out", str(out), "--workers", str(workers), "--threads", "1"]) == 0
        rows = [json.loads(line) for line in (out / "scored.jsonl").read_text().splitlines()]
        predictions[workers] = [[s["score"] for s in row["steps"]] for row in rows]
    assert predictions[1] == predictions[2] and len(predictions[1]) == len(traces)


def test_checker_only_eval_leaves_torch_sklearn_and_sympy_out_of_the_main_process(tmp_path):
    """Their imports are seconds of start-up that two workers cannot shorten (issue 30)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    data = tmp_path / "pb"
    processbench_folder(data, 3, seed=1)
    script = ("import sys\nfrom prm.app.cli import main\n"
              "if __name__ == '__main__':\n"
              f"    assert main(['eval', '--benchmark', 'processbench', '--scorer', 'checker:sympy', '--data', "
              f"{str(data)!r}, '--out', {str(tmp_path / 'out')!r}, '--workers', '1']) == 0\n"
              "    print(sorted(m for m in ('torch', 'sklearn', 'transformers', 'sympy', 'z3') if m in sys.modules))\n")
    (tmp_path / "run.py").write_text(script)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, str(tmp_path / "run.py")], capture_output=True, text=True, env=env,
                          cwd=root, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "[]"
    assert (tmp_path / "out" / "scored.jsonl").exists()
