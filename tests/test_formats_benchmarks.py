"""PRMBench, PRM800K, ProcessBench and MATH500 importers, on the real files where they exist."""

import json
import re

import pytest

from prm.errors import RecordError
from prm.formats import read
from prm.formats.base import WriteReport
from prm.formats.math500 import read_math500, split_sentences
from prm.formats.prm800k import read_prm800k
from prm.formats.prmbench import read_prmbench
from prm.formats.processbench import read_processbench, to_processbench_rows, write_processbench
from prm.records import Step, Trace

PRMBENCH_CLASSES = {"circular", "confidence", "counterfactual", "deception", "domain_inconsistency",
                    "missing_condition", "redundency", "step_contradiction"}


# -- PRMBench -------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def prmbench_rows(shared_data):
    files = sorted((shared_data / "prmbench-train").glob("*.jsonl"))
    assert len(files) == 8
    return {f.name: [json.loads(line) for line in f.read_text().splitlines()] for f in files}


def test_prmbench_error_steps_are_one_based_in_all_eight_files(prmbench_rows):
    numbers = [n for rows in prmbench_rows.values() for row in rows for n in row["error_steps"]]
    assert min(numbers) == 1  # never 0
    names_last_step = sum(len(row["modified_process"]) in row["error_steps"]
                          for rows in prmbench_rows.values() for row in rows)
    assert names_last_step > 600  # step number len(steps) exists only when counting from 1


def test_every_prmbench_file_reads_with_zero_at_the_error_steps(shared_data, prmbench_rows):
    for name, rows in prmbench_rows.items():
        traces = read_prmbench(shared_data / "prmbench-train" / name)
        assert len(traces) == len(rows)
        for trace, row in zip(traces, rows):
            assert trace.step_texts == row["modified_process"]
            assert trace.problem == row["modified_question"]
            assert trace.meta["error_class"] == row["classification"] in PRMBENCH_CLASSES
            inside = {n - 1 for n in row["error_steps"] if n <= len(row["modified_process"])}
            if inside:
                assert trace.hard_labels == [0 if i in inside else 1 for i in range(len(trace.steps))]
                assert trace.meta["gold_first_error"] == min(inside) == trace.first_error()
            else:  # every error number is past the end: the labels cannot be told
                assert trace.hard_labels == [None] * len(trace.steps)
            outside = [n for n in row["error_steps"] if n > len(row["modified_process"])]
            assert trace.meta.get("error_steps_out_of_range", []) == sorted(set(outside))


def test_prmbench_first_record_labels(shared_data):
    trace = read_prmbench(shared_data / "prmbench-train" / "prm800k_train_p1_first400_4o_circular.jsonl",
                          limit=1)[0]
    # error_steps [2, 3, 4]: the 2nd-4th steps, i.e. indices 1-3
    assert trace.hard_labels == [1, 0, 0, 0, 1, 1]
    assert trace.step_texts[1].startswith("Verify the total seconds by assuming")
    assert trace.id == "prmbench-circular-prm_train_p1_0"
    assert trace.outcome_label is None


def test_prmbench_out_of_range_can_be_an_error(shared_data):
    path = shared_data / "prmbench-train" / "prm800k_train_p1_first400_4o_circular.jsonl"
    with pytest.raises(RecordError, match=r"line \d+, field 'error_steps': error step \d+ is beyond"):
        read_prmbench(path, out_of_range="error")


def test_prmbench_original_solution_as_a_correct_trace(shared_data):
    traces = read_prmbench(shared_data / "prmbench-train" / "prm800k_train_p1_first400_4o_redundency.jsonl",
                           include_original=True, limit=10)
    originals = [t for t in traces if t.meta["error_class"] == "correct"]
    assert len(originals) == 5
    assert all(set(t.hard_labels) == {1} and t.outcome_label == 1 for t in originals)


def test_all_prmbench_files_read_as_one_folder(shared_data):
    traces = read(shared_data / "prmbench-train")
    assert len(traces) == 3203
    assert {t.meta["error_class"] for t in traces} == PRMBENCH_CLASSES
    assert len({t.id for t in traces}) == 3203


def test_bad_prmbench_records_name_the_field(tmp_path):
    good = {"modified_question": "q", "modified_process": ["a", "b"], "error_steps": [2],
            "classification": "circular", "idx": "x"}
    cases = [({**good, "error_steps": [0]}, "error_steps"),
             ({**good, "error_steps": "2"}, "error_steps"),
             ({**good, "modified_process": []}, "modified_process"),
             ({k: v for k, v in good.items() if k != "classification"}, "classification")]
    for row, field in cases:
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(good) + "\n" + json.dumps(row) + "\n")
        with pytest.raises(RecordError) as caught:
            read_prmbench(path)
        assert (caught.value.line, caught.value.field) == (2, field)


# -- PRM800K --------------------------------------------------------------------------------

def test_prm800k_sample_follows_the_labelers_path(shared_data):
    traces = read_prm800k(shared_data / "samples" / "prm800k.sample.jsonl")
    assert len(traces) == 6
    first = traces[0]
    # step 2 was written by the labeler after all five candidates were rated -1
    assert first.step_texts[1] == "We have $3p+e=1.24$ and $5p+e=1.82$."
    assert first.step_texts[-1].endswith("# Answer\n\n29")
    assert first.final_answer == "29" and first.reference_answer == "29"
    assert first.meta["phase"] == 1 and first.meta["gold_first_error"] == -1
    found_error = traces[1]
    assert found_error.meta["finish_reason"] == "found_error" and found_error.meta["phase"] == 2
    assert found_error.meta["ratings"] == [1, 0, 1, 1, 1, 1, -1]
    assert found_error.hard_labels == [1, 1, 1, 1, 1, 1, 0]
    assert found_error.soft_labels == [1.0, 0.5, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert found_error.first_error() == 6 and found_error.final_answer is None
    assert {s.label_source for t in traces for s in t.steps} == {"human"}


@pytest.mark.parametrize("neutral, expected", [("positive", 1), ("negative", 0), ("unknown", None)])
def test_prm800k_neutral_rating_mapping(shared_data, neutral, expected):
    trace = read_prm800k(shared_data / "samples" / "prm800k.sample.jsonl", neutral=neutral)[1]
    assert trace.hard_labels[1] == expected and trace.soft_labels[1] == 0.5


def test_prm800k_bad_records_name_the_field(tmp_path):
    step = {"completions": [{"text": "a", "rating": 1}], "chosen_completion": 0, "human_completion": None}
    good = {"question": {"problem": "p"}, "label": {"steps": [step], "finish_reason": "solution"}}
    cases = [({**good, "label": {"steps": [{**step, "chosen_completion": 3}]}},
              "label.steps[0].chosen_completion"),
             ({**good, "label": {"steps": [{**step, "completions": [{"text": "a", "rating": 5}]}]}},
              "label.steps[0].completions[0].rating"),
             ({**good, "label": {"steps": []}}, "label.steps"),
             ({"question": {}, "label": good["label"]}, "question.problem")]
    for row, field in cases:
        path = tmp_path / "bad.jsonl"
        path.write_text(json.dumps(row) + "\n")
        with pytest.raises(RecordError) as caught:
            read_prm800k(path)
        assert caught.value.field == field


# -- ProcessBench ---------------------------------------------------------------------------

PROCESSBENCH = [
    {"id": "gsm8k-0", "generator": "Qwen2-7B-Instruct", "problem": "2+2*3?",
     "steps": ["2*3 = 6", "2+6 = 9", "So 9."], "final_answer_correct": False, "label": 1},
    {"id": "gsm8k-1", "generator": "Llama-3.1-8B-Instruct", "problem": "1+1?",
     "steps": ["1+1 = 2", "So 2."], "final_answer_correct": True, "label": -1},
]


@pytest.mark.parametrize("name", ["gsm8k.json", "gsm8k.jsonl"])
def test_processbench_labels_before_at_and_after_the_first_error(tmp_path, name):
    path = tmp_path / name
    if name.endswith(".json"):  # the released layout: one JSON array
        path.write_text(json.dumps(PROCESSBENCH, indent=2))
    else:
        path.write_text("\n".join(json.dumps(r) for r in PROCESSBENCH) + "\n")
    wrong, right = read_processbench(path)
    assert wrong.hard_labels == [1, 0, None] and wrong.meta["gold_first_error"] == 1
    assert wrong.meta["gold_labels"] == [1, 0, None] and wrong.outcome_label == 0
    assert wrong.meta["generator"] == "Qwen2-7B-Instruct" and wrong.id == "gsm8k-0"
    assert right.hard_labels == [1, 1] and right.meta["gold_first_error"] == -1
    assert read(path) == [wrong, right]  # the format is told from the fields


def test_processbench_write_then_read_gives_the_release_records(tmp_path):
    source = tmp_path / "in.json"
    source.write_text(json.dumps(PROCESSBENCH))
    write_processbench(tmp_path / "out.json", read_processbench(source))
    assert json.loads((tmp_path / "out.json").read_text()) == PROCESSBENCH


def test_processbench_writer_drops_traces_whose_first_error_is_unknown():
    report = WriteReport()
    traces = [Trace(id="u", problem="p", steps=[Step("a"), Step("b", 0)]),
              Trace(id="k", problem="p", steps=[Step("a", 1), Step("b", 0), Step("c")])]
    rows = to_processbench_rows(traces, report=report)
    assert [r["label"] for r in rows] == [1]
    assert len(report.dropped) == 1 and "u:" in report.dropped[0]


@pytest.mark.parametrize("change, field", [
    ({"label": 3}, "label"), ({"label": -2}, "label"), ({"label": "1"}, "label"),
    ({"steps": []}, "steps"), ({"final_answer_correct": "yes"}, "final_answer_correct")])
def test_bad_processbench_records_name_the_field(tmp_path, change, field):
    path = tmp_path / "bad.json"
    path.write_text(json.dumps([PROCESSBENCH[1], {**PROCESSBENCH[0], **change}]))
    with pytest.raises(RecordError) as caught:
        read_processbench(path)
    assert (caught.value.line, caught.value.field) == (2, field)  # line = item number in the array


# -- MATH500 --------------------------------------------------------------------------------

def test_math500_reads_all_problems_with_sentence_steps(shared_data):
    path = shared_data / "math500" / "test.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    traces = read_math500(path)
    assert len(traces) == 500
    for trace, row in zip(traces, rows):
        assert trace.reference_answer == row["answer"] and trace.meta["subject"] == row["subject"]
        assert set(trace.hard_labels) == {None}
        # nothing is lost: the steps hold every non-space character of the solution, in order
        assert re.sub(r"\s", "", "".join(trace.step_texts)) == re.sub(r"\s", "", row["solution"])
    assert sum(len(t.steps) > 1 for t in traces) > 350


def test_sentences_are_not_cut_inside_formulas():
    text = "Let $x = 3.$  Then $y = x. Z$ holds.  Also \\[a = b. C\\] is true. So it ends."
    assert split_sentences(text) == ["Let $x = 3.$", "Then $y = x. Z$ holds.",
                                     "Also \\[a = b. C\\] is true.", "So it ends."]


def test_diagrams_and_environments_stay_whole():
    text = ("First.\n\n[asy]\ndraw(A);\n\nlabel(B).\n[/asy]\n\n"
            "Next \\begin{align*}\na. B\n\nc\n\\end{align*} done.")
    steps = split_sentences(text)
    assert steps[0].startswith("First.") and steps[0].endswith("[/asy]")
    assert steps[1].startswith("Next \\begin{align*}") and steps[1].endswith("done.")


# -- hub loaders ----------------------------------------------------------------------------

@pytest.mark.parametrize("module, function, hub_name", [
    ("gsm8k", "load_gsm8k_hub", "openai/gsm8k"),
    ("math_shepherd", "load_math_shepherd_hub", "peiyi9979/Math-Shepherd"),
    ("prm800k", "load_prm800k_hub", "tasksource/PRM800K"),
    ("processbench", "load_processbench_hub", "Qwen/ProcessBench"),
    ("prmbench", "load_prmbench_hub", "hitsmy/PRMBench_Preview"),
    ("math500", "load_math500_hub", "HuggingFaceH4/MATH-500"),
])
def test_hub_loaders_call_datasets_and_fail_clearly_offline(module, function, hub_name):
    import importlib
    import os

    if os.environ.get("HF_DATASETS_OFFLINE") != "1":
        pytest.skip("the hub is reachable: not exercised in tests")
    load = getattr(importlib.import_module(f"prm.formats.{module}"), function)
    with pytest.raises(ConnectionError, match=re.escape(hub_name)):
        load()
