"""TRL stepwise supervision and Math-Shepherd, both directions, on real data."""

import json
import random

import pytest

from prm.errors import RecordError
from prm.formats import read, write
from prm.formats.base import WriteReport
from prm.formats.gsm8k import inject_calculator_error, read_gsm8k
from prm.formats.math_shepherd import read_math_shepherd, write_math_shepherd
from prm.formats.prmbench import read_prmbench
from prm.formats.trl import read_trl, to_trl_rows, write_trl
from prm.records import Step, Trace


@pytest.fixture(scope="module")
def labeled(shared_data):
    """Real traces with both labels: PRMBench (errors anywhere) and GSM8K with injected errors."""
    prmbench = read_prmbench(shared_data / "prmbench-train" /
                             "prm800k_train_p1_first400_4o_counterfactual.jsonl", limit=60)
    gsm8k = read_gsm8k(shared_data / "gsm8k" / "test.jsonl", limit=60)
    rng = random.Random(0)
    injected = [bad for t in gsm8k if (bad := inject_calculator_error(t, rng)) is not None]
    traces = [t for t in prmbench if None not in t.hard_labels] + gsm8k + injected
    assert {0, 1} <= {label for t in traces for label in t.hard_labels}
    return traces


def partly_unknown() -> list[Trace]:
    return [Trace(id="cut-me", problem="p", steps=[Step("a", 1), Step("b", 0), Step("c"), Step("d", 1)]),
            Trace(id="drop-me", problem="p", steps=[Step("a"), Step("b", 1)]),
            Trace(id="whole", problem="p", steps=[Step("a", 1)])]


# -- TRL ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["trl.jsonl", "trl.parquet", "trl_folder"])
def test_native_to_trl_to_native_keeps_problems_steps_and_labels(labeled, tmp_path, name):
    assert write_trl(tmp_path / name, labeled) == len(labeled)
    again = read_trl(tmp_path / name)
    assert [t.problem for t in again] == [t.problem for t in labeled]
    assert [t.step_texts for t in again] == [t.step_texts for t in labeled]
    assert [t.hard_labels for t in again] == [t.hard_labels for t in labeled]


def test_trl_labels_are_booleans_in_the_file(labeled, tmp_path):
    write_trl(tmp_path / "trl.jsonl", labeled[:5])
    row = json.loads((tmp_path / "trl.jsonl").read_text().splitlines()[0])
    assert set(row) == {"prompt", "completions", "labels"}
    assert all(isinstance(label, bool) for label in row["labels"])


def test_trl_datasets_folder_has_the_prm_trainer_columns(labeled, tmp_path):
    import datasets

    write_trl(tmp_path / "folder", labeled[:10])
    table = datasets.load_from_disk(str(tmp_path / "folder"))
    assert table.column_names == ["prompt", "completions", "labels"]
    assert table.features["labels"].feature.dtype == "bool"
    assert table.features["completions"].feature.dtype == "string"


def test_soft_labels_survive_trl_export_as_floats(shared_data, tmp_path):
    traces = read(shared_data / "samples" / "prm800k.sample.jsonl", "prm800k")
    assert 0.5 in {s for t in traces for s in t.soft_labels}  # a neutral rating
    write_trl(tmp_path / "soft.jsonl", traces, soft=True)
    rows = [json.loads(line) for line in (tmp_path / "soft.jsonl").read_text().splitlines()]
    assert all(isinstance(x, float) for row in rows for x in row["labels"])
    again = read_trl(tmp_path / "soft.jsonl")
    assert [t.soft_labels for t in again] == [t.soft_labels for t in traces]
    # soft 1.0/0.0 also give the hard label back; 0.5 has no hard label
    assert again[1].hard_labels[1] is None and again[1].hard_labels[-1] == 0


def test_soft_export_falls_back_to_hard_labels_as_floats():
    rows = to_trl_rows([Trace(id="t", problem="p", steps=[Step("a", 1, 0.8), Step("b", 0)])], soft=True)
    assert rows[0]["labels"] == [0.8, 0.0]


def test_unknown_labels_are_cut_or_dropped_and_counted_never_false():
    report = WriteReport()
    rows = to_trl_rows(partly_unknown(), report=report)
    assert [row["labels"] for row in rows] == [[True, False], [True]]
    assert report.written == 2 and len(report.cut) == 1 and len(report.dropped) == 1
    assert "cut-me" in report.cut[0] and "drop-me" in report.dropped[0]
    strict = WriteReport()
    assert [r["labels"] for r in to_trl_rows(partly_unknown(), unknown="drop", report=strict)] == [[True]]
    assert len(strict.dropped) == 2


def test_reading_trl_accepts_bool_and_float_labels(tmp_path):
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps({"prompt": "p", "completions": ["a", "b"], "labels": [True, False]}) + "\n"
                    + json.dumps({"prompt": "p", "completions": ["a", "b"], "labels": [0.25, 1.0]}) + "\n")
    hard, soft = read_trl(path)
    assert hard.hard_labels == [1, 0] and hard.soft_labels == [None, None]
    assert soft.soft_labels == [0.25, 1.0] and soft.hard_labels == [None, 1]


@pytest.mark.parametrize("row, field", [
    ({"prompt": "p", "completions": ["a", "b"], "labels": [True]}, "labels"),
    ({"prompt": "p", "completions": [], "labels": []}, "completions"),
    ({"prompt": "p", "completions": ["a"], "labels": ["yes"]}, "labels[0]"),
    ({"prompt": "p", "completions": ["a"], "labels": [1.5]}, "labels[0]"),
    ({"completions": ["a"], "labels": [True]}, "prompt"),
])
def test_bad_trl_rows_name_the_field(tmp_path, row, field):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(RecordError) as caught:
        read_trl(path)
    assert (caught.value.line, caught.value.field) == (1, field)


# -- Math-Shepherd --------------------------------------------------------------------------

def test_real_math_shepherd_sample_reads_problem_steps_and_labels(shared_data):
    traces = read_math_shepherd(shared_data / "samples" / "math-shepherd.sample.jsonl")
    assert len(traces) == 7
    first = traces[0]
    assert first.problem.endswith("than clarinet lessons in a year?")
    assert first.step_texts[0] == ("Janet spends 3 hours + 5 hours = <<3+5=8>>8 hours per week "
                                   "on music lessons.")
    assert first.hard_labels == [1, 1, 1, 1, 0]
    assert first.final_answer == "13520" and first.outcome_label == 0
    assert first.meta["task"] == "GSM8K"
    for trace in traces:
        assert not any(text.startswith("Step ") or "ки" in text for text in trace.step_texts)


def test_math_shepherd_sample_to_native_and_back_is_byte_exact(shared_data, tmp_path):
    sample = shared_data / "samples" / "math-shepherd.sample.jsonl"
    write(tmp_path / "native.jsonl", read_math_shepherd(sample))
    write_math_shepherd(tmp_path / "again.jsonl", read(tmp_path / "native.jsonl", "native"))
    assert (tmp_path / "again.jsonl").read_bytes() == sample.read_bytes()


def test_native_to_math_shepherd_to_native_keeps_problems_steps_and_labels(labeled, tmp_path):
    assert write_math_shepherd(tmp_path / "ms.jsonl", labeled) == len(labeled)
    again = read_math_shepherd(tmp_path / "ms.jsonl")
    assert [t.problem for t in again] == [t.problem for t in labeled]
    assert [t.step_texts for t in again] == [t.step_texts for t in labeled]
    assert [t.hard_labels for t in again] == [t.hard_labels for t in labeled]


def test_step_k_prefix_in_a_native_step_survives_the_round_trip(tmp_path):
    trace = Trace(id="t", problem="Q?", steps=[Step("Step 1: already numbered", 1), Step("two\nlines", 0)])
    write_math_shepherd(tmp_path / "ms.jsonl", [trace])
    assert read_math_shepherd(tmp_path / "ms.jsonl")[0].step_texts == trace.step_texts


def test_math_shepherd_writer_cuts_unknown_and_drops_untaggable_traces(tmp_path):
    report = WriteReport()
    traces = partly_unknown() + [Trace(id="tagged", problem="p", steps=[Step("x ки y", 1)])]
    write_math_shepherd(tmp_path / "ms.jsonl", traces, report=report)
    again = read_math_shepherd(tmp_path / "ms.jsonl")
    assert [t.hard_labels for t in again] == [[1, 0], [1]]
    assert len(report.cut) == 1 and len(report.dropped) == 2
    assert any("tagged" in reason and "tag" in reason for reason in report.dropped)


@pytest.mark.parametrize("row, field, words", [
    ({"input": "Q? Step 1: a ки", "label": "Q? Step 1: a *"}, "label", "expected ' +' or ' -'"),
    ({"input": "Q? Step 1: a ки", "label": "Q? Step 1: b +"}, "label", "differs"),
    ({"input": "Q? Step 1: a", "label": "Q? Step 1: a +"}, "input", "no step tag"),
    ({"input": "Q? a ки", "label": "Q? a +"}, "input", "Step 1:"),
    ({"label": "Q? Step 1: a +"}, "input", "missing"),
])
def test_bad_math_shepherd_rows_name_the_field(tmp_path, row, field, words):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(RecordError) as caught:
        read_math_shepherd(path)
    assert (caught.value.line, caught.value.field) == (1, field)
    assert words in str(caught.value)


def test_math_shepherd_input_without_label_has_unknown_labels(tmp_path):
    path = tmp_path / "unlabeled.jsonl"
    path.write_text(json.dumps({"input": "Q? Step 1: a ки\nStep 2: b ки"}) + "\n")
    trace = read_math_shepherd(path)[0]
    assert trace.step_texts == ["a", "b"] and trace.hard_labels == [None, None]
