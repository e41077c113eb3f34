"""`prm eval --benchmark processbench|prmbench`: metrics by hand, and both benchmarks end to end
on local files with a tiny Qwen2.5-Math-PRM-layout model and with the checker-only scorer."""

import json

import pytest
from helpers.first_error import GSM8K, MATH, SCORES
from helpers.reward_models import SHARED, processbench_folder

from evals.prmbench import load_prmbench_benchmark, prmbench_metrics
from evals.processbench import processbench_metrics
from prm.app.cli import main
from prm.io import read_traces, write_traces
from prm.records import Step, Trace

PRMBENCH = SHARED / "prmbench-train"


def scored(records, subset):
    folder_traces = []
    for row in records:
        trace = Trace(id=row["id"], problem=row["problem"],
                      steps=[Step(text, score=s) for text, s in zip(row["steps"], SCORES[row["id"]])],
                      meta={"subset": subset, "gold_first_error": row["label"]})
        folder_traces.append(trace)
    return folder_traces


# --- ProcessBench metrics ----------------------------------------------------------------------

def test_processbench_metrics_by_hand_and_the_threshold_rule():
    traces = scored(GSM8K, "gsm8k") + scored(MATH, "math")
    fixed = processbench_metrics(traces, 0.5)
    # by hand (see test_evals_first_error): gsm8k F1 1/2, math F1 2/3, average 7/12
    assert fixed["subsets"]["gsm8k"]["f1"] == pytest.approx(0.5)
    assert fixed["subsets"]["math"]["f1"] == pytest.approx(2 / 3)
    assert fixed["average_f1"] == pytest.approx(7 / 12)
    assert fixed["threshold_rule"] == "fixed at 0.5"
    # chosen on gsm8k: its right-intervals are (0.2, 0.9], (-inf, 0.7], (0.2, 0.3], (-inf, 0.4]; the
    # threshold 0.3 (right for the first three) is the smallest candidate with the best gsm8k F1 2/3 ...
    tuned = processbench_metrics(traces, threshold_from="gsm8k")
    assert set(tuned["subsets"]) == {"math"}  # ... and gsm8k, used for tuning, is not reported
    t = tuned["threshold"]
    assert 0.2 < t <= 0.3
    # math at t in (0.2, 0.3]: math-0 predicts 0 (right), math-1 -1 (right), math-2 -1 (wrong)
    assert tuned["subsets"]["math"]["error_accuracy"] == pytest.approx(0.5)
    assert tuned["subsets"]["math"]["correct_accuracy"] == pytest.approx(1.0)
    assert "chosen on gsm8k" in tuned["threshold_rule"]


# --- PRMBench metrics --------------------------------------------------------------------------

def pb_trace(name, idx, scores, error_steps):
    return Trace(id=f"{name}-{idx}", problem="q", steps=[Step(f"s{i}", score=s) for i, s in enumerate(scores)],
                 meta={"error_class": name, "idx": idx, "error_steps": error_steps})


def test_prmbench_metrics_by_hand():
    traces = [
        # unmodified solutions (class "correct"): all steps right
        pb_trace("correct", "a", [0.9, 0.8, 0.7, 0.6], []),  # all valid: TP 4; share valid 1.0
        pb_trace("correct", "b", [0.9, 0.4, 0.8], []),       # TP 2, FN 1; share valid 2/3
        # circular, 1-based error steps
        pb_trace("circular", "a", [0.9, 0.3, 0.2, 0.7], [2, 3]),  # TP 2 (steps 1,4), TN 2 (2,3); share 2/4
        pb_trace("circular", "b", [0.9, 0.9, 0.6], [3]),          # TP 2, FP 1 (step 3 valid); share 1
        # counterfactual
        pb_trace("counterfactual", "a", [0.5, 0.9, 0.1], [1]),    # step 1: 0.5 is not > 0.5: TN 1; TP 1; FN 1
        pb_trace("counterfactual", "c", [0.9, None], [2]),        # an unscored step: left out
    ]
    m = prmbench_metrics(traces, 0.5)
    assert m["skipped"] == 1
    circ, cf, corr, total = (m["classes"]["circular"], m["classes"]["counterfactual"], m["classes"]["correct"],
                             m["overall"])
    assert (circ["TP"], circ["FP"], circ["TN"], circ["FN"]) == (4, 1, 2, 0)
    # F1 (valid = positive): precision 4/5, recall 4/4 -> 8/9; negative: precision 2/2, recall 2/3 -> 4/5
    assert circ["f1"] == pytest.approx(8 / 9) and circ["negative_f1"] == pytest.approx(4 / 5)
    assert circ["prm_score"] == pytest.approx(0.5 * 8 / 9 + 0.5 * 4 / 5)
    # first error: circular-a step 2 (0.3) invalid -> 1; circular-b step 3 (0.6) valid -> 0
    assert circ["first_error_acc"] == pytest.approx(0.5)
    # step accuracies: correct steps 4/4; wrong steps 2/3; all 6/7
    assert circ["correct_step_acc"] == 1.0 and circ["wrong_step_acc"] == pytest.approx(2 / 3)
    assert circ["total_step_acc"] == pytest.approx(6 / 7)
    # similarity: |2/4 - 1.0| for idx a, |1 - 2/3| for idx b -> mean (1/2 + 1/3) / 2
    assert circ["similarity"] == pytest.approx((0.5 + 1 / 3) / 2)
    assert (cf["TP"], cf["FP"], cf["TN"], cf["FN"]) == (1, 0, 1, 1)
    assert cf["f1"] == pytest.approx(2 / 3) and cf["negative_f1"] == pytest.approx(2 / 3)
    assert cf["similarity"] == pytest.approx(2 / 3)  # |1/3 valid - 1.0 valid in unmodified "a"|
    assert total["similarity"] == pytest.approx((1 / 2 + 1 / 3 + 2 / 3) / 3)
    # overall: circular + counterfactual, not the correct samples
    assert (total["TP"], total["FP"], total["TN"], total["FN"]) == (5, 1, 3, 1)
    precision, recall = 5 / 6, 5 / 6
    negative_precision, negative_recall = 3 / 4, 3 / 4
    assert total["prm_score"] == pytest.approx(0.5 * precision + 0.5 * negative_precision)
    assert total["samples"] == 3 and total["first_error_acc"] == pytest.approx(2 / 3)
    # the unmodified class has no erroneous step: its negative F1 is undefined (None), PRMScore too
    assert corr["negative_f1"] is None and corr["prm_score"] is None
    assert corr["f1"] == pytest.approx(2 * 1 * (6 / 7) / (1 + 6 / 7))
    assert recall == precision and negative_recall == negative_precision


def test_prmbench_benchmark_set_is_built_as_the_release_builds_it():
    traces = load_prmbench_benchmark(str(PRMBENCH))
    by_class = {}
    for trace in traces:
        by_class.setdefault(trace.meta["error_class"], []).append(trace)
    assert set(by_class) == {"circular", "confidence", "counterfactual", "deception", "domain_inconsistency",
                             "missing_condition", "redundency", "step_contradiction", "correct"}
    # the unmodified solutions come from the redundency records, once per idx
    assert len(by_class["correct"]) == len({t.meta["idx"] for t in by_class["redundency"]})
    assert all(t.meta["error_steps"] == [] for t in by_class["correct"])
    keys = [(t.meta["error_class"], t.meta["idx"]) for t in traces]
    assert len(keys) == len(set(keys))


# --- end to end ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def processbench_dir(tmp_path_factory):
    """Two subsets in ProcessBench's release layout (one JSON array each): real GSM8K solutions and
    copies with one calculator result changed (the first error is that step)."""
    folder = processbench_folder(tmp_path_factory.mktemp("processbench"), per_subset=5)
    rows = json.loads((folder / "gsm8k.json").read_text())
    assert isinstance(rows, list) and set(rows[0]) == {"id", "generator", "problem", "steps",
                                                       "final_answer_correct", "label"}
    assert {r["label"] for r in rows} - {-1}  # some erroneous samples
    return folder


@pytest.fixture(scope="module")
def prmbench_dir(tmp_path_factory):
    """The first records of two PRMBench files, with the redundency one for the unmodified solutions."""
    folder = tmp_path_factory.mktemp("prmbench")
    for name in ("circular", "redundency"):
        source = PRMBENCH / f"prm800k_train_p1_first400_4o_{name}.jsonl"
        lines = source.read_text(encoding="utf-8").splitlines()[:4]
        (folder / source.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def qwen_folder(tmp_path_factory):
    from helpers.reward_models import make_qwen_prm

    return str(make_qwen_prm(tmp_path_factory.mktemp("qwen") / "Qwen2.5-Math-PRM-tiny"))


def run_cli(*argv):
    return main(["eval", *[str(a) for a in argv]])


def test_processbench_end_to_end_with_the_checker_scorer(processbench_dir, tmp_path):
    out = tmp_path / "out"
    assert run_cli("--benchmark", "processbench", "--scorer", "checker:sympy", "--data", processbench_dir,
                   "--out", out, "--threads", "1") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["subsets"]) == {"gsm8k", "math"} and metrics["threshold"] == 0.25
    # the inserted errors are wrong calculator results: sympy refutes them where they are
    assert metrics["overall"]["error_accuracy"] >= 0.8
    assert metrics["overall"]["correct_accuracy"] >= 0.8
    scored_traces = read_traces(out / "scored.jsonl")
    assert not (out / "scored.partial.jsonl").exists()
    again = processbench_metrics(scored_traces, 0.25)
    assert again["average_f1"] == pytest.approx(metrics["average_f1"])
    assert "| gsm8k |" in (out / "report.md").read_text()
    # the scored file is evaluated anywhere, without a scorer; --subsets filters it
    out2 = tmp_path / "again"
    assert run_cli("--benchmark", "processbench", out / "scored.jsonl",  # the checker's threshold, from the file
                   "--subsets", "math", "--out", out2) == 0
    math_only = json.loads((out2 / "metrics.json").read_text())
    assert set(math_only["subsets"]) == {"math"}
    assert math_only["subsets"]["math"] == metrics["subsets"]["math"]


def test_processbench_end_to_end_with_a_tiny_model_resumes(processbench_dir, tmp_path, qwen_folder):
    out = tmp_path / "out"
    args = ["--benchmark", "processbench", "--scorer", qwen_folder, "--data", processbench_dir,
            "--out", out, "--threads", "1", "--chunk", "3", "--subsets", "gsm8k,math"]
    assert run_cli(*args) == 0
    first = read_traces(out / "scored.jsonl")
    assert all(s.score is not None for t in first for s in t.steps)
    # an interrupted run: the partial file holds 4 traces, one of them with a marked score
    first[0].steps[0].score = 0.123456
    write_traces(out / "scored.partial.jsonl", first[:4])
    assert run_cli(*args) == 0
    second = read_traces(out / "scored.jsonl")
    assert second[0].steps[0].score == 0.123456  # kept, not scored again
    for new, old in zip(second[1:], first[1:]):
        assert new.id == old.id and new.scores == pytest.approx(old.scores, abs=1e-6)
    # a partial file of other traces, or scored with another scorer, is refused
    write_traces(out / "scored.partial.jsonl", list(reversed(first[:2])))
    assert run_cli(*args) == 1
    first[0].meta["scored_with"]["scorer"] = "checker:sympy"
    write_traces(out / "scored.partial.jsonl", first[:2])
    assert run_cli(*args) == 1


def test_prmbench_end_to_end_with_the_checker_and_a_tiny_model(prmbench_dir, tmp_path, qwen_folder):
    for spec in ("checker:sympy", qwen_folder, f"{qwen_folder}+checker:sympy"):
        out = tmp_path / str(abs(hash(spec)))
        assert run_cli("--benchmark", "prmbench", "--scorer", spec, "--data", prmbench_dir, "--out", out,
                       "--threads", "1") == 0
        metrics = json.loads((out / "metrics.json").read_text())
        assert set(metrics["classes"]) == {"circular", "redundency", "correct"}
        assert metrics["overall"]["samples"] == 8 and metrics["classes"]["correct"]["samples"] == 4
        recomputed = prmbench_metrics(read_traces(out / "scored.jsonl"), metrics["threshold"])
        assert recomputed["overall"] == metrics["overall"]
        assert "PRMScore" in (out / "report.md").read_text()


def test_benchmark_errors_are_one_clear_line(tmp_path, capsys):
    assert run_cli("--benchmark", "processbench", "--out", tmp_path / "o") == 1
    assert "--scorer" in capsys.readouterr().err
    assert run_cli("--benchmark", "processbench", "--scorer", "checker:nope", "--data", tmp_path,
                   "--out", tmp_path / "o") == 1
    assert "unknown checker" in capsys.readouterr().err
    assert run_cli("--benchmark", "processbench", "--scorer", "checker:sympy", "--subsets", "gsm9k",
                   "--data", tmp_path, "--out", tmp_path / "o") == 1
    assert "unknown ProcessBench subset" in capsys.readouterr().err


def test_processbench_from_a_folder_of_predictions_as_the_release_code_writes_them(tmp_path):
    folder = tmp_path / "outputs"
    folder.mkdir()
    rows = {"gsm8k_error.jsonl": [{"id": "a", "label": 2, "prediction": 2}, {"id": "b", "label": 1, "prediction": None},
                                  {"id": "c", "label": 0, "prediction": 3}],
            "gsm8k_correct.jsonl": [{"id": "d", "label": -1, "prediction": -1},
                                    {"id": "e", "label": -1, "prediction": 1}],
            "math_error.jsonl": [{"id": "f", "label": 1, "prediction": 1}],
            "math_correct.jsonl": [{"id": "g", "label": -1, "prediction": -1}]}
    for name, items in rows.items():
        (folder / name).write_text("".join(json.dumps(r) + "\n" for r in items))
    out = tmp_path / "out"
    assert run_cli("--benchmark", "processbench", folder, "--out", out) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    # gsm8k: error acc 1/3, correct acc 1/2, F1 = 2(1/3)(1/2)/(5/6) = 2/5; math: 1 and 1, F1 1
    assert metrics["subsets"]["gsm8k"]["f1"] == pytest.approx(2 / 5)
    assert metrics["subsets"]["math"]["f1"] == pytest.approx(1.0)
    assert metrics["average_f1"] == pytest.approx(0.7)


def test_prmbench_test_release_with_repeated_records_loads_as_its_authors_load_it(tmp_path, capsys):
    """PRMBench's test release repeats records (`prm_test_p12_multi_solutions.jsonl`: 165 records,
    160 idx); its loader keeps the first of each (classification, idx). Built here in the test
    release's layout: multi_solutions records, one idx three times (the later two differ)."""
    source = PRMBENCH / "prm800k_train_p1_first400_4o_circular.jsonl"
    base = [json.loads(line) for line in source.read_text(encoding="utf-8").splitlines()[:3]]
    rows = []
    for number, row in enumerate(base):
        rows.append({**row, "classification": "multi_solutions", "idx": f"multi_solutions_prm_test_p12_{number}"})
    for changed in ("again", "and again"):  # repeats of the first idx, with other steps
        rows.append({**rows[0], "modified_process": rows[0]["modified_process"] + [changed]})
    release = tmp_path / "prm_test_p12_multi_solutions.jsonl"
    release.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")

    from evals.prmbench import load_prmbench_release

    traces, dropped = load_prmbench_release(str(release))
    assert dropped == 2
    assert [t.meta["idx"] for t in traces] == [r["idx"] for r in rows[:3]]
    assert traces[0].step_texts == rows[0]["modified_process"]  # the first record is the one kept
    assert {t.meta["error_class"] for t in traces} == {"multi_solutions"}

    out = tmp_path / "out"
    assert run_cli("--benchmark", "prmbench", "--scorer", "checker:sympy", "--data", release,
                   "--out", out, "--threads", "1") == 0
    assert "dropped 2 repeated record(s)" in capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["classes"]) == {"multi_solutions"} and metrics["overall"]["samples"] == 3
    assert metrics["inputs"]["repeated_records_dropped"] == 2
