"""`prm eval --benchmark deltabench|socratic-prmbench|hard2verify` on small hand-made records in
each release's layout, scored by the sympy checker (a refuted step scores 0, a confirmed one 1,
a step without a checkable claim 0.5; its threshold is 0.25), with the metrics worked by hand."""

import json

import pytest

from evals.deltabench import deltabench_metrics, section_counts
from evals.hard2verify import hard2verify_metrics
from evals.prmbench import prmbench_metrics
from prm.app.cli import main
from prm.errors import RecordError
from prm.formats.deltabench import split_sections, trace_from_deltabench
from prm.formats.hard2verify import trace_from_hard2verify
from prm.io import read_traces


def run_cli(*argv):
    return main(["eval", *[str(a) for a in argv]])


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def sections(*texts):
    return "\n\n".join(f"section{i}:\n{text}" for i, text in enumerate(texts, start=1))


DELTABENCH = [
    # gold {2, 3}: the checker refutes section 2 (found) and section 4, which lies past the last
    # gold section and is dropped; section 3 is missed: P 1, R 1/2, F1 2/3
    {"id": "d1", "question": "q1", "answer": "20", "task_l1": "math",
     "sections_content": sections("We have 2 + 3 = 5.", "Then 5 * 4 = 21.", "Check: 21 - 1 = 20.", "So 7 * 3 = 22."),
     "reason_error_section_numbers": [2], "reason_unuseful_section_numbers": [3]},
    # gold {1}, found: P = R = F1 = 1
    {"id": "d2", "question": "q2", "answer": "9", "task_l1": "code",
     "sections_content": sections("First 3 * 3 = 10.", "Then write the loop."),
     "reason_error_section_numbers": [1], "reason_unuseful_section_numbers": []},
    # gold {1}, nothing flagged: all 0
    {"id": "d3", "question": "q3", "answer": "1", "task_l1": "math",
     "sections_content": sections("Think about the parity first.", "It is odd."),
     "reason_error_section_numbers": [1], "reason_unuseful_section_numbers": [1]},
]


def test_deltabench_sections_become_steps_with_the_evaluators_gold():
    trace = trace_from_deltabench(DELTABENCH[0])
    assert [s.text for s in trace.steps] == ["We have 2 + 3 = 5.", "Then 5 * 4 = 21.", "Check: 21 - 1 = 20.",
                                             "So 7 * 3 = 22."]
    # the union of error and unuseful sections is wrong; after the last of them nothing is judged
    assert [s.hard_label for s in trace.steps] == [1, 0, 0, None]
    assert trace.meta["error_sections"] == [2, 3] and trace.meta["subset"] == "math"
    with pytest.raises(RecordError, match="count 1, 2, 3"):
        split_sections("section1: a\nsection3: b")
    with pytest.raises(RecordError, match="not among the 2 sections"):
        trace_from_deltabench({**DELTABENCH[1], "reason_error_section_numbers": [3]})


def test_deltabench_sample_counts_follow_the_authors_parse_output():
    assert section_counts([2, 3], [2, 4]) == {"tp": 1, "fp": 0, "fn": 1, "precision": 1.0, "recall": 0.5,
                                              "f1": pytest.approx(2 / 3)}
    assert section_counts([1], [])["f1"] == 0.0 and section_counts([1], [])["precision"] == 0.0


def test_deltabench_end_to_end_with_the_checker(tmp_path):
    data = write_jsonl(tmp_path / "Deltabench_v1.jsonl", DELTABENCH)
    out = tmp_path / "out"
    assert run_cli("--benchmark", "deltabench", "--scorer", "checker:sympy", "--data", data, "--out", out,
                   "--threads", "1") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    overall = metrics["overall"]
    assert overall["samples"] == 3 and metrics["threshold"] == 0.25
    assert overall["f1_macro"] == pytest.approx((2 / 3 + 1 + 0) / 3)
    assert overall["recall_macro"] == pytest.approx(0.5)
    # micro: TP 2, FP 0, FN 2
    assert overall["precision_micro"] == pytest.approx(1.0) and overall["f1_micro"] == pytest.approx(2 / 3)
    assert metrics["subsets"]["math"]["f1_micro"] == pytest.approx(0.5)  # TP 1, FN 2
    assert metrics["subsets"]["code"]["f1_macro"] == pytest.approx(1.0)
    assert "# DeltaBench" in (out / "report.md").read_text()
    # the scored file is evaluated again without a scorer, one task at a time
    again = tmp_path / "again"
    assert run_cli("--benchmark", "deltabench", out / "scored.jsonl", "--subsets", "math", "--out", again) == 0
    assert json.loads((again / "metrics.json").read_text())["subsets"] == {"math": metrics["subsets"]["math"]}
    assert deltabench_metrics(read_traces(out / "scored.jsonl"), 0.25)["overall"] == overall


def socratic(classification, idx, steps, error_steps):
    return {"original_question": "q", "original_process": steps, "modified_question": "q",
            "modified_process": steps, "modified_steps": error_steps, "error_steps": error_steps,
            "reason": "inserted", "question": "q", "idx": idx, "classification": classification}


def test_socratic_prmbench_end_to_end_gives_the_prm_score_per_error_type(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    write_jsonl(data / "test_premise_redundancy.jsonl", [
        # valid (score > 0.25) = [yes, no, yes]: TP 2, TN 1
        socratic("premise_redundancy", "MATH#1", ["2 + 3 = 5", "5 * 4 = 21", "So the answer is 21."], [2])])
    write_jsonl(data / "test_conclusion_counterfactual.jsonl", [
        # an error the checker cannot see: TP 2, FP 1
        socratic("conclusion_counterfactual", "MATH#2", ["6 / 2 = 3", "3 + 1 = 4", "Hence the answer is 4."], [3]),
        socratic("conclusion_counterfactual", "MATH#3", ["4 - 1 = 2"], [1])])  # TN 1
    out = tmp_path / "out"
    assert run_cli("--benchmark", "socratic-prmbench", "--scorer", "checker:sympy", "--data", data, "--out", out,
                   "--threads", "1") == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["classes"]) == {"premise_redundancy", "conclusion_counterfactual"}  # no "correct" class
    assert metrics["classes"]["premise_redundancy"]["prm_score"] == pytest.approx(1.0)
    # counterfactual: F1 = 0.8 (P 2/3, R 1), negative F1 = 2/3 (P 1, R 1/2)
    assert metrics["classes"]["conclusion_counterfactual"]["prm_score"] == pytest.approx(0.5 * 0.8 + 0.5 * 2 / 3)
    # overall: TP 4, FP 1, TN 2: F1 8/9, negative F1 0.8
    assert metrics["overall"]["prm_score"] == pytest.approx(0.5 * 8 / 9 + 0.5 * 0.8)
    scored = read_traces(out / "scored.jsonl")
    assert {t.meta["source"] for t in scored} == {"socratic-prmbench"}
    assert scored[0].id.startswith("socratic-")
    assert prmbench_metrics(scored, 0.25)["overall"] == metrics["overall"]
    assert "PRM-Score" in (out / "report.md").read_text()
    assert run_cli("--benchmark", "socratic-prmbench", "--scorer", "checker:sympy", "--data", data,
                   "--subsets", "premise_unsoundness", "--out", tmp_path / "o") == 1


HARD2VERIFY = [
    {"unique_id": "h1", "question": "q1", "model_response_by_step": ["2 + 3 = 5", "5 * 4 = 20", "Hence 20."],
     "human_labels": [1, 1, 1], "human_labels_first_error_idx": -1},
    {"unique_id": "h2", "question": "q2", "model_response_by_step": ["3 * 3 = 9", "9 + 1 = 11", "Hence 11."],
     "human_labels": [1, 0, 0], "human_labels_first_error_idx": 1},
    {"unique_id": "h3", "question": "q3", "model_response_by_step": ["Consider the parity.", "Thus n is even."],
     "human_labels": [0, 0], "human_labels_first_error_idx": 0},
]


def test_hard2verify_end_to_end_balanced_f1_for_the_three_tasks(tmp_path):
    data = write_jsonl(tmp_path / "hard2verify_decrypted.jsonl", HARD2VERIFY)
    out = tmp_path / "out"
    assert run_cli("--benchmark", "hard2verify", "--scorer", "checker:sympy", "--data", data, "--out", out,
                   "--threads", "1") == 0
    tasks = json.loads((out / "metrics.json").read_text())["tasks"]
    # steps: the 4 correct ones all judged correct; of the 4 incorrect only "9 + 1 = 11" is caught
    assert (tasks["step"]["tpr"], tasks["step"]["tnr"]) == (1.0, 0.25)
    assert tasks["step"]["balanced_accuracy"] == pytest.approx(0.625)
    assert tasks["step"]["balanced_f1"] == pytest.approx(0.4)
    # responses: h1 right, h2 right (a step flagged), h3 wrong (nothing flagged)
    assert tasks["response"]["balanced_f1"] == pytest.approx(2 / 3)
    # first error: h1 -1 right, h2 1 right, h3 -1 instead of 0
    assert (tasks["first_error"]["tpr"], tasks["first_error"]["tnr"]) == (1.0, 0.5)
    assert hard2verify_metrics(read_traces(out / "scored.jsonl"), 0.25)["tasks"] == tasks
    assert "balanced F1" in (out / "report.md").read_text()


def test_hard2verify_refuses_encrypted_or_inconsistent_records(tmp_path, capsys):
    encrypted = write_jsonl(tmp_path / "enc.jsonl", [{"canary": "BENCHMARK DATA", "question": "b64",
                                                       "model_response_by_step": "b64", "human_labels": "b64"}])
    assert run_cli("--benchmark", "hard2verify", "--scorer", "checker:sympy", "--data", encrypted,
                   "--out", tmp_path / "o") == 1
    err = capsys.readouterr().err
    assert "still encrypted" in err and "enc.jsonl" in err
    assert run_cli("--benchmark", "hard2verify", "--scorer", "checker:sympy", "--out", tmp_path / "o") == 1
    assert "decrypt" in capsys.readouterr().err
    with pytest.raises(RecordError, match="first incorrect step at 1"):
        trace_from_hard2verify({**HARD2VERIFY[1], "human_labels_first_error_idx": 2})
    trace = trace_from_hard2verify(HARD2VERIFY[1])
    assert [s.hard_label for s in trace.steps] == [1, 0, 0] and trace.outcome_label == 0


def test_deltabench_reads_the_hubs_csv_with_json_lists(tmp_path):
    import csv

    from prm.formats.deltabench import read_deltabench

    def write_csv(path, rows):
        with open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(DELTABENCH[0]))
            writer.writeheader()
            for row in rows:
                writer.writerow({k: json.dumps(v) if isinstance(v, list) else v for k, v in row.items()})
        return path

    traces = read_deltabench(write_csv(tmp_path / "Deltabench_v1.csv", DELTABENCH))
    assert [t.meta["error_sections"] for t in traces] == [[2, 3], [1], [1]]
    bad = write_csv(tmp_path / "bad.csv", [DELTABENCH[0], {**DELTABENCH[1], "reason_error_section_numbers": "one"}])
    with pytest.raises(RecordError, match="not a JSON list") as err:
        read_deltabench(bad)
    assert "bad.csv" in str(err.value) and "reason_error_section_numbers" in str(err.value)
