"""`prm eval` and `evals.report`: every file is written, plots are real PNGs, a model folder
is scored before evaluation, and bad input gives one clear line."""

import json
import random

import pytest

from evals.first_error import first_error_metrics
from evals.report import EvalConfig, write_report
from evals.step_metrics import step_metrics
from prm.app.cli import main
from prm.io import read_traces, write_traces
from prm.records import Rollouts, Step, Trace

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def sample_set(problems=12, per_problem=4, seed=0, scores=True):
    """Scored, MC-labelled traces with gold labels, several per problem."""
    rng = random.Random(seed)
    traces = []
    for p in range(problems):
        for k in range(per_problem):
            n = rng.randint(2, 5)
            first = rng.choice([-1, -1] + list(range(n)))
            gold = [1 if first == -1 or i < first else 0 for i in range(n)]
            steps = [Step(f"step {i}", hard_label=g if rng.random() > 0.1 else 1 - g,
                          soft_label=round(0.15 + 0.7 * g, 2), label_source="monte-carlo",
                          rollouts=Rollouts(correct=4 * g, total=4),
                          score=min(1.0, max(0.0, rng.gauss(0.75 if g else 0.3, 0.15))) if scores else None)
                     for i, g in enumerate(gold)]
            right = first == -1
            traces.append(Trace(id=f"p{p}-{k}", problem=f"problem {p}", steps=steps,
                                final_answer=str(p) if right else str(100 + k), outcome_label=int(right),
                                meta={"gold_labels": gold, "gold_first_error": first, "problem_id": f"p{p}"}))
    return traces


def test_report_writes_markdown_metrics_and_readable_pngs(tmp_path):
    out = tmp_path / "report"
    metrics = write_report(out, sample_set(), EvalConfig(repeats=8), inputs={"data": "sample"})
    expected_plots = {"calibration": "calibration.png", "roc": "roc.png", "heatmap": "step_scores.png",
                      "best_of_n": "best_of_n.png", "label_calibration": "label_calibration.png"}
    assert metrics["plots"] == expected_plots
    report = (out / "report.md").read_text()
    for name in expected_plots.values():
        data = (out / name).read_bytes()
        assert data.startswith(PNG_SIGNATURE) and len(data) > 5000
        assert f"]({name})" in report
    saved = json.loads((out / "metrics.json").read_text())
    assert {"step", "first_error", "best_of_n", "label_quality", "threshold"} <= set(saved)
    assert saved["threshold"]["chosen_on"] == "split by trace id"
    assert "split by trace id" in report and "test traces only" in report
    for heading in ("## Step level", "## First error (ProcessBench)", "## Best-of-N", "## Label quality"):
        assert heading in report


def test_labels_without_scores_give_a_label_quality_report(tmp_path):
    data = tmp_path / "labelled.jsonl"
    write_traces(data, sample_set(scores=False))
    out = tmp_path / "report"
    assert main(["eval", str(data), "--out", str(out), "--repeats", "4"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "step" not in metrics and "label_quality" in metrics
    assert metrics["label_quality"]["rollouts"]["per_trace_mean"] > 0
    assert set(metrics["best_of_n"]["methods"]) == {"oracle", "majority"}
    assert (out / "label_calibration.png").read_bytes().startswith(PNG_SIGNATURE)


def test_eval_scores_with_a_model_folder_and_its_orm(tmp_path):
    from prm.reward.model import RewardModel

    model_dir = tmp_path / "prm"
    RewardModel.from_backbone("minilm-l6").save_pretrained(model_dir)
    data = tmp_path / "data.jsonl"
    write_traces(data, sample_set(problems=4, scores=False))
    out = tmp_path / "report"
    code = main(["eval", str(model_dir), "--data", str(data), "--orm", str(model_dir), "--threshold", "0.5",
                 "--out", str(out), "--n", "1", "4", "--repeats", "4"])
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["inputs"]["model"] == str(model_dir)
    # The same numbers as scoring in-process and measuring at 0.5.
    traces = RewardModel.from_pretrained(model_dir).score_traces(read_traces(data))
    assert metrics["step"]["accuracy"] == pytest.approx(step_metrics(traces, 0.5)["accuracy"])
    assert metrics["first_error"]["overall"] == pytest.approx(first_error_metrics(traces, 0.5)["overall"])
    assert metrics["best_of_n"]["orm_source"] == "meta.orm_score"


def test_missing_input_is_one_line_naming_the_file(tmp_path, capsys):
    missing = tmp_path / "nope.jsonl"
    assert main(["eval", str(missing), "--out", str(tmp_path / "r")]) == 1
    err = capsys.readouterr().err
    assert str(missing) in err and "Traceback" not in err


def test_nothing_to_evaluate_says_what_is_missing(tmp_path, capsys):
    data = tmp_path / "bare.jsonl"
    write_traces(data, [Trace(id="a", problem="p", steps=[Step("s")])])
    assert main(["eval", str(data), "--out", str(tmp_path / "r")]) == 1
    assert "nothing to evaluate" in capsys.readouterr().err


def test_bad_gold_labels_name_the_field(tmp_path, capsys):
    trace = sample_set(problems=1, per_problem=1)[0]
    trace.meta["gold_labels"] = trace.meta["gold_labels"] + [1]
    data = tmp_path / "bad.jsonl"
    write_traces(data, [trace])
    assert main(["eval", str(data), "--out", str(tmp_path / "r")]) == 1
    assert "meta.gold_labels" in capsys.readouterr().err


def test_gold_from_another_file_is_matched_by_id(tmp_path):
    traces = sample_set(problems=6)
    gold_file = tmp_path / "gold.jsonl"
    gold_records = []
    for trace in traces:
        twin = Trace(id=trace.id, problem=trace.problem, steps=[Step(s.text) for s in trace.steps],
                     outcome_label=trace.outcome_label)
        twin.set_labels(hard=trace.meta["gold_labels"], source="human")
        gold_records.append(twin)
        trace.meta.clear()  # the scored file itself knows no gold
    write_traces(gold_file, gold_records)
    data = tmp_path / "scored.jsonl"
    write_traces(data, traces)
    out = tmp_path / "report"
    assert main(["eval", str(data), "--gold", str(gold_file), "--threshold", "0.5", "--out", str(out),
                 "--repeats", "2"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["inputs"]["gold_file"] == str(gold_file)
    expected = step_metrics([_with_gold(t, g) for t, g in zip(read_traces(data), gold_records)], 0.5)
    assert metrics["step"]["accuracy"] == pytest.approx(expected["accuracy"])
    assert metrics["step"]["steps"] == sum(len(t.steps) for t in traces)


def _with_gold(trace, twin):
    trace.meta["gold_labels"] = twin.hard_labels
    return trace


def test_unknown_gold_name_is_refused(tmp_path, capsys):
    data = tmp_path / "d.jsonl"
    write_traces(data, sample_set(problems=1))
    assert main(["eval", str(data), "--gold", "gold.jsonl", "--out", str(tmp_path / "r")]) == 1
    assert "--gold must be" in capsys.readouterr().err


def test_markdown_tables_keep_a_cell_with_a_pipe_or_newline_in_one_cell():
    from prm.markdown import table

    text = table(["name", "value"], [["a | b\nc", 1], [None, 2.5]])
    assert text == "| name | value |\n|---|---|\n| a \\| b c | 1 |\n|  | 2.5 |\n"
