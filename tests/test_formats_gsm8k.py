"""GSM8K importer, answer parser and calculator-error injection, on the real GSM8K files."""

import json
import random
import re

import pytest

from prm.errors import RecordError
from prm.formats.gsm8k import (
    CALCULATOR_NOTE, MODELS, inject_calculator_error, parse_gsm8k_answer, read_gsm8k, write_gsm8k)


def test_parse_answer_splits_lines_and_final_answer():
    steps, final = parse_gsm8k_answer("A is <<2*3=6>>6.\n\nB is 6+1=<<6+1=7>>7.\n#### 7")
    assert steps == ["A is <<2*3=6>>6.", "B is 6+1=<<6+1=7>>7."]
    assert final == "7"


def test_parse_answer_without_final_line_keeps_every_line_as_a_step():
    assert parse_gsm8k_answer("one\ntwo") == (["one", "two"], None)


def test_train_file_every_record_is_read_with_all_steps_labelled_correct(shared_data):
    traces = read_gsm8k(shared_data / "gsm8k" / "train.jsonl")
    assert len(traces) == 7473
    assert len({t.id for t in traces}) == 7473
    first = traces[0]
    assert first.problem.startswith("Natalia sold clips to 48")
    assert first.step_texts == ["Natalia sold 48/2 = <<48/2=24>>24 clips in May.",
                                "Natalia sold 48+24 = <<48+24=72>>72 clips altogether in April and May."]
    assert first.final_answer == first.reference_answer == "72"
    for trace in traces:
        assert set(trace.hard_labels) == {1}
        assert {s.label_source for s in trace.steps} == {"import"}
        assert trace.meta["gold_first_error"] == -1
        assert trace.meta["gold_labels"] == trace.hard_labels
        assert not any("####" in s for s in trace.step_texts)
        assert all(s.strip() == s and s for s in trace.step_texts)


def test_test_file_steps_match_the_answer_lines(shared_data):
    path = shared_data / "gsm8k" / "test.jsonl"
    traces = read_gsm8k(path)
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert len(traces) == len(rows) == 1319
    for trace, row in zip(traces, rows):
        lines = [x.strip() for x in row["answer"].split("\n") if x.strip()]
        assert trace.step_texts + [f"#### {trace.final_answer}"] == lines


def test_model_solutions_give_one_trace_per_model_with_outcome_labels(shared_data):
    path = shared_data / "gsm8k" / "example_model_solutions.jsonl"
    traces = read_gsm8k(path, limit=40)
    assert len(traces) == 40
    first_row = json.loads(path.read_text().splitlines()[0])
    by_model = {t.meta["generator"]: t for t in traces[:4]}
    assert set(by_model) == set(MODELS)
    for model in MODELS:
        trace = by_model[model]
        assert trace.outcome_label == int(first_row[model]["is_correct"])
        assert trace.reference_answer == "18"
        assert trace.hard_labels == [None] * len(trace.steps)
        assert not any(s.startswith("A:") for s in trace.step_texts)
    assert by_model["6b_finetuning"].final_answer == "26"


def test_model_solutions_whole_file_reads_and_cut_off_solutions_have_no_final_answer(shared_data):
    traces = read_gsm8k(shared_data / "gsm8k" / "example_model_solutions.jsonl")
    assert len(traces) == 1319 * 4
    assert 0 < sum(t.final_answer is None for t in traces) < 20
    assert {t.outcome_label for t in traces} == {0, 1}


def test_injected_error_changes_one_note_and_labels_from_that_step(shared_data):
    traces = read_gsm8k(shared_data / "gsm8k" / "test.jsonl", limit=200)
    rng = random.Random(7)
    made = 0
    for trace in traces:
        bad = inject_calculator_error(trace, rng)
        if bad is None:
            assert not CALCULATOR_NOTE.search("\n".join(trace.step_texts))
            continue
        made += 1
        k = bad.meta["injected"]["step"]
        assert bad.meta["gold_first_error"] == k == bad.first_error()
        assert bad.hard_labels == [1] * k + [0] * (len(bad.steps) - k)
        assert bad.meta["gold_labels"] == bad.hard_labels
        assert bad.outcome_label == 0
        changed = [i for i, (a, b) in enumerate(zip(trace.step_texts, bad.step_texts)) if a != b]
        assert changed == [k]
        old, new = bad.meta["injected"]["original"], bad.meta["injected"]["new"]
        assert 1 <= abs(float(new) - float(old)) <= 10
        assert f"={new}>>" in bad.step_texts[k]
        # the original trace is untouched
        assert set(trace.hard_labels) == {1} and trace.outcome_label == 1
    assert made > 150


def test_injected_error_also_changes_the_number_written_after_the_note():
    from prm.records import Trace

    trace = Trace(id="t", problem="p", steps=["He pays 4500*5 = $<<4500*5=22500>>22,500 a year."])
    bad = inject_calculator_error(trace, random.Random(1))
    new = bad.meta["injected"]["new"]
    assert bad.steps[0].text == f"He pays 4500*5 = $<<4500*5={new}>>{int(new):,} a year."


def test_injection_is_reproducible_with_the_same_seed(shared_data):
    trace = read_gsm8k(shared_data / "gsm8k" / "train.jsonl", limit=1)[0]
    a = inject_calculator_error(trace, random.Random(3))
    b = inject_calculator_error(trace, random.Random(3))
    assert a == b


def test_trace_without_notes_gives_none():
    from prm.records import Trace

    assert inject_calculator_error(Trace(id="t", problem="p", steps=["3 apples"]), random.Random(0)) is None


def test_gsm8k_write_then_read_keeps_steps_and_answer(shared_data, tmp_path):
    traces = read_gsm8k(shared_data / "gsm8k" / "test.jsonl", limit=30)
    out = tmp_path / "gsm8k-out.jsonl"
    write_gsm8k(out, traces)
    again = read_gsm8k(out)
    assert [t.step_texts for t in again] == [t.step_texts for t in traces]
    assert [t.final_answer for t in again] == [t.final_answer for t in traces]


@pytest.mark.parametrize("line, field", [
    ('{"question": "q"}', "answer"),
    ('{"question": "q", "answer": "no final line"}', "answer"),
    ('{"question": "q", "answer": "#### 3"}', "answer"),
    ('{"question": 3, "answer": "a\\n#### 3"}', "question"),
])
def test_bad_gsm8k_rows_name_file_line_and_field(tmp_path, line, field):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"question": "q", "answer": "a\\n#### 1"}\n' + line + "\n")
    with pytest.raises(RecordError) as caught:
        read_gsm8k(path)
    assert (caught.value.path, caught.value.line, caught.value.field) == (str(path), 2, field)
    assert re.search(r"bad\.jsonl, line 2, field 'answer|question'", str(caught.value))
