"""First-error identification (ProcessBench): prediction rule, F1 by hand, exact threshold
choice, and `prm eval` on records in ProcessBench's released format."""

import json

import numpy as np
import pytest
from helpers.first_error import GSM8K, MATH, SCORES

from evals.first_error import (choose_first_error_threshold, first_error_metrics,
                               predict_first_error)
from evals.processbench import is_processbench, load_processbench
from prm.app.cli import main
from prm.io import write_traces
from prm.records import Step, Trace


def write_processbench_dir(folder):
    folder.mkdir()
    (folder / "gsm8k.json").write_text(json.dumps(GSM8K, indent=1))
    (folder / "math.json").write_text(json.dumps(MATH, indent=1))
    return folder


def scored_processbench(folder):
    traces = load_processbench(str(folder))
    for trace in traces:
        for step, score in zip(trace.steps, SCORES[trace.id]):
            step.score = score
    return traces


def test_predicted_first_error_is_the_first_score_below_threshold():
    assert predict_first_error([0.9, 0.4, 0.1], 0.5) == 1
    assert predict_first_error([0.9, 0.5, 0.6], 0.5) == -1  # equal to the threshold is not below
    assert predict_first_error([0.2], 0.5) == 0


def test_processbench_f1_matches_hand_computation(tmp_path):
    traces = scored_processbench(write_processbench_dir(tmp_path / "pb"))
    m = first_error_metrics(traces, 0.5)
    gsm8k, math = m["subsets"]["gsm8k"], m["subsets"]["math"]
    assert (gsm8k["error_traces"], gsm8k["correct_traces"]) == (2, 2)
    assert (gsm8k["error_accuracy"], gsm8k["correct_accuracy"], gsm8k["f1"]) == pytest.approx((0.5, 0.5, 0.5))
    assert (math["error_accuracy"], math["correct_accuracy"], math["f1"]) == pytest.approx((0.5, 1.0, 2 / 3))
    assert m["average_f1"] == pytest.approx(7 / 12)
    assert m["overall"]["f1"] == pytest.approx(4 / 7)


def test_prm_eval_reproduces_processbench_f1_on_released_format(tmp_path, capsys):
    folder = write_processbench_dir(tmp_path / "pb")
    assert is_processbench(str(folder)) and is_processbench(str(folder / "math.json"))
    scored_file = tmp_path / "scored.jsonl"
    write_traces(scored_file, scored_processbench(folder))
    out = tmp_path / "report"
    assert main(["eval", str(scored_file), "--threshold", "0.5", "--out", str(out)]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    first = metrics["first_error"]
    assert first["subsets"]["gsm8k"]["f1"] == pytest.approx(1 / 2)
    assert first["subsets"]["math"]["f1"] == pytest.approx(2 / 3)
    assert first["average_f1"] == pytest.approx(7 / 12)
    assert "58.3%" in (out / "report.md").read_text()  # 7/12 as the report prints it
    assert "ProcessBench F1 58.3%" in capsys.readouterr().out


def test_chosen_threshold_maximises_f1_as_well_as_any_grid_threshold():
    rng = np.random.default_rng(5)
    traces = []
    for i in range(60):
        n = int(rng.integers(2, 7))
        first = int(rng.integers(-1, n))
        good = [first == -1 or j < first for j in range(n)]
        scores = [float(np.clip(rng.normal(0.7 if g else 0.35, 0.2), 0, 1)) for g in good]
        traces.append(Trace(id=f"t{i}", problem="p", steps=[Step("s", score=s) for s in scores],
                            meta={"gold_first_error": first, "subset": "ab"[i % 2]}))
    best = choose_first_error_threshold(traces)
    grid = max(first_error_metrics(traces, t)["overall"]["f1"] for t in np.linspace(0, 1.01, 1011))
    assert first_error_metrics(traces, best)["overall"]["f1"] >= grid - 1e-12


def test_traces_without_scores_or_known_first_error_are_left_out_and_counted():
    traces = [Trace(id="a", problem="p", steps=[Step("s", score=0.9)], meta={"gold_first_error": -1}),
              Trace(id="b", problem="p", steps=[Step("s")], meta={"gold_first_error": -1}),
              Trace(id="c", problem="p", steps=[Step("s", score=0.9)])]
    m = first_error_metrics(traces, 0.5)
    assert m["skipped"] == 2 and m["overall"]["correct_traces"] == 1
    assert m["overall"]["error_accuracy"] is None and m["overall"]["f1"] is None


def test_hub_split_is_read_through_datasets_and_tagged_with_its_subset(monkeypatch):
    import datasets

    requested = {}

    def fake_load_dataset(name, split):  # the hub is out of reach in tests: serve the records
        requested.update(name=name, split=split)
        return datasets.Dataset.from_list(MATH)

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    traces = load_processbench("math")
    assert requested == {"name": "Qwen/ProcessBench", "split": "math"}
    assert [t.meta["subset"] for t in traces] == ["math"] * 3
    assert [t.meta["gold_first_error"] for t in traces] == [0, -1, 2]
