"""The Label Studio round trip: `prm export --to label-studio`, then reviewers' answers back
with `prm import --from label-studio`, as human reviews beside the automatic labels.

tests/data/label_studio/export_steps.json is written by hand in Label Studio's JSON export
layout (task `id`/`data`/`annotations`/`predictions`; annotation `result`, `completed_by` as
a user id or a user object, `created_at`/`updated_at`, `was_cancelled`), for the malformed
variants below. tests/data/label_studio/recorded/ holds real exports (JSON, JSON-MIN, CSV, a
snapshot with user details) of both unit modes, taken from Label Studio 1.23.2 by
tests/test_label_studio_live.py (`make test-labelstudio`, PRM_LABEL_STUDIO_RECORD), and one
answer submitted through Label Studio's page in a browser (traces_browser_json.json).
"""

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from prm.app.cli import main
from prm.io import read_traces, write_traces

DATA = Path(__file__).parent / "data" / "label_studio"
RECORDED = DATA / "recorded"
USER = "label-studio user 1"


def controls(config: str) -> dict[str, tuple[str, list[str]]]:
    """Choices controls of a labelling config: name -> (toName, choice values); and the object
    tags' names must exist for every toName."""
    root = ET.fromstring(config)
    objects = {el.get("name") for el in root.iter() if el.tag in ("Text", "Header") and el.get("name")}
    found = {}
    for el in root.iter("Choices"):
        assert el.get("toName") in objects
        found[el.get("name")] = (el.get("toName"), [c.get("value") for c in el.iter("Choice")])
    return found


def test_export_of_disputed_steps_is_label_studio_import_json_with_predictions(tmp_path):
    out = tmp_path / "tasks.json"
    assert main(["export", "--to", "label-studio", str(DATA / "traces.jsonl"), str(out)]) == 0
    tasks = json.loads(out.read_text())
    # shop-1 step 2: Monte Carlo says good, sympy refuted it, gold says bad; train-7 step 1: checker vs PRM
    assert [(t["data"]["trace_id"], t["data"]["step_index"]) for t in tasks] == [("shop-1", 1), ("train-7", 0)]
    first = tasks[0]
    assert first["data"]["step"] == "2. With the book she spends 6 + 5 = 12 dollars."
    assert "sympy: refuted" in first["data"]["evidence"] and "gold: bad" in first["data"]["evidence"]
    config = controls((tmp_path / "tasks.label_config.xml").read_text())
    assert config == {"label": ("step", ["good", "bad", "unsure"])}
    for task in tasks:  # each pre-annotation names a control of the config and one of its choices
        (prediction,) = task["predictions"]
        (result,) = prediction["result"]
        assert config[result["from_name"]][0] == result["to_name"]
        assert result["value"]["choices"][0] in config[result["from_name"]][1]
    assert first["predictions"][0]["result"][0]["value"]["choices"] == ["good"]  # the automatic label
    assert first["predictions"][0]["model_version"] == "prm-toolkit monte-carlo"


def test_export_one_task_per_trace_draws_traces_of_any_length_with_a_repeater(tmp_path):
    out = tmp_path / "traces.json"
    assert main(["export", "--to", "label-studio", str(DATA / "traces.jsonl"), str(out), "--unit", "trace"]) == 0
    tasks = json.loads(out.read_text())
    assert [len(t["data"]["steps"]) for t in tasks] == [3, 2]  # each task has its own steps, no padding
    assert tasks[1]["data"]["steps"][1]["text"] == "2. The answer is 60."
    assert "sympy: refuted" in tasks[0]["data"]["steps"][1]["evidence"]
    root = ET.fromstring((tmp_path / "traces.label_config.xml").read_text())
    (repeater,) = root.iter("Repeater")
    assert (repeater.get("on"), repeater.get("indexFlag")) == ("$steps", "{{idx}}")
    inside = {el.get("name"): el for el in repeater.iter() if el.get("name")}
    assert inside["step_{{idx}}"].get("value") == "$steps[{{idx}}].text"
    assert inside["evidence_{{idx}}"].get("value") == "$steps[{{idx}}].evidence"  # each step's evidence shown
    assert controls(ET.tostring(root, encoding="unicode")) == {"step_{{idx}}_label": ("step_{{idx}}", ["good", "bad", "unsure"])}
    assert inside["step_{{idx}}_comment"].get("toName") == "step_{{idx}}"  # a comment box per step
    choices = {r["from_name"]: (r["to_name"], r["value"]["choices"][0]) for r in tasks[0]["predictions"][0]["result"]}
    assert choices == {"step_0_label": ("step_0", "good"), "step_1_label": ("step_1", "good"),
                       "step_2_label": ("step_2", "bad")}


def test_import_adds_human_reviews_and_keeps_the_automatic_labels(tmp_path):
    out = tmp_path / "reviewed.jsonl"
    assert main(["import", "--from", "label-studio", str(DATA / "export_steps.json"),
                 str(DATA / "traces.jsonl"), str(out)]) == 0
    before, after = read_traces(DATA / "traces.jsonl"), read_traces(out)
    shop = after[0].steps[1]
    (review,) = shop.reviews  # the cancelled annotation of user 2 is not a review
    assert (review.reviewer, review.hard_label, review.label_source, review.tool) == \
        ("label-studio user 1", 0, "human", "label-studio")
    assert review.time == "2024-05-02T14:40:51.498201Z" and review.comment == "6 + 5 is 11, not 12"
    assert (shop.hard_label, shop.label_source, shop.soft_label) == (1, "monte-carlo", 0.25)  # automatic, kept
    assert shop.rollouts == before[0].steps[1].rollouts and shop.verdicts == before[0].steps[1].verdicts
    assert shop.human_label == 0
    (rui,) = after[1].steps[0].reviews  # completed_by {"id": 3, "email": "rui@example.org", ...}
    assert (rui.reviewer, rui.hard_label) == ("label-studio user 3", 1)
    # nothing else changed
    for old, new in zip(before, after):
        for i, (a, b) in enumerate(zip(old.steps, new.steps)):
            if not b.reviews:
                assert a == b, (old.id, i)


def test_importing_the_same_export_twice_changes_nothing_and_a_newer_answer_replaces(tmp_path):
    once, twice = tmp_path / "once.jsonl", tmp_path / "twice.jsonl"
    export = DATA / "export_steps.json"
    assert main(["import", "--from", "label-studio", str(export), str(DATA / "traces.jsonl"), str(once)]) == 0
    assert main(["import", "--from", "label-studio", str(export), str(once), str(twice)]) == 0
    assert read_traces(once) == read_traces(twice)
    changed = json.loads(export.read_text())
    answer = changed[0]["annotations"][0]
    answer["result"][0]["value"]["choices"] = ["good"]
    answer["updated_at"] = "2024-05-04T10:00:00.000000Z"
    newer = tmp_path / "newer.json"
    newer.write_text(json.dumps(changed))
    third = tmp_path / "third.jsonl"
    assert main(["import", "--from", "label-studio", str(newer), str(twice), str(third)]) == 0
    (review,) = read_traces(third)[0].steps[1].reviews
    assert (review.hard_label, review.time) == (1, "2024-05-04T10:00:00.000000Z")


def reviews_of(traces) -> dict:
    return {(t.id, i): [(r.reviewer, r.hard_label, r.comment, r.time) for r in s.reviews]
            for t in traces for i, s in enumerate(t.steps) if s.reviews}


def imported(tmp_path, export, into=DATA / "traces.jsonl"):
    out = tmp_path / (Path(export).stem + ".reviewed.jsonl")
    assert main(["import", "--from", "label-studio", str(export), str(into), str(out)]) == 0
    return read_traces(out)


def test_import_of_a_real_per_trace_export_reviews_each_step_with_its_own_comment(tmp_path):
    shop, train = imported(tmp_path, RECORDED / "traces_json.json")
    assert [s.human_label for s in shop.steps] == [1, 0, None]
    assert [len(s.reviews) for s in shop.steps] == [1, 1, 1]  # "unsure" is a review with no label
    assert [s.reviews[0].comment for s in shop.steps] == [None, "6 + 5 is 11", None]
    assert {s.reviews[0].reviewer for s in shop.steps} == {USER}
    # train-7: step 1 answered, step 2 only commented on: a review with no label keeps the comment
    assert [(r.hard_label, r.comment) for s in train.steps for r in s.reviews] == [(1, None), (None, "states the answer")]


def test_import_of_a_per_trace_answer_made_in_the_browser(tmp_path):
    """traces_browser_json.json: a reviewer in Label Studio's own page (headless Chromium) took
    the pre-annotated 2-step trace, changed step 1 to unsure, kept step 2 and commented on it."""
    results = json.loads((RECORDED / "traces_browser_json.json").read_text())[0]["annotations"][0]["result"]
    assert {r["origin"] for r in results} == {"prediction", "prediction-changed", "manual"}
    (train,) = [t for t in imported(tmp_path, RECORDED / "traces_browser_json.json") if t.id == "train-7"]
    assert [[(r.reviewer, r.hard_label, r.comment) for r in s.reviews] for s in train.steps] == [
        [(USER, None, None)], [(USER, 1, "the answer is right but says nothing new")]]


@pytest.mark.parametrize("unit", ["steps", "traces"])
def test_real_json_min_and_snapshot_exports_give_the_same_reviews_as_json(tmp_path, unit):
    from_json = reviews_of(imported(tmp_path, RECORDED / f"{unit}_json.json"))
    assert from_json and all(r[0] == USER for rs in from_json.values() for r in rs)
    assert reviews_of(imported(tmp_path, RECORDED / f"{unit}_json_min.json")) == from_json
    assert reviews_of(imported(tmp_path, RECORDED / f"{unit}_snapshot_json.json")) == from_json


def test_one_reviewer_across_export_types_is_one_review_per_step(tmp_path):
    """completed_by: 1 (JSON), a user object with id 1 (snapshot with user details), annotator: 1
    (JSON-MIN): the same person, so importing one export over another adds no second review."""
    once = imported(tmp_path, RECORDED / "steps_json.json")
    write_traces(tmp_path / "once.jsonl", once)
    assert isinstance(json.loads((RECORDED / "steps_snapshot_json.json").read_text())[0]["annotations"][0]
                      ["completed_by"], dict)
    again = imported(tmp_path, RECORDED / "steps_snapshot_json.json", into=tmp_path / "once.jsonl")
    write_traces(tmp_path / "again.jsonl", again)
    third = imported(tmp_path, RECORDED / "steps_json_min.json", into=tmp_path / "again.jsonl")
    assert once == again == third
    assert sum(len(s.reviews) for t in third for s in t.steps) == 2


def test_json_min_with_user_details_keys_reviewers_by_email_and_warns(tmp_path, capsys):
    traces = imported(tmp_path, RECORDED / "traces_snapshot_json_min.json")
    assert {r.reviewer for t in traces for s in t.steps for r in s.reviews} == {"reviewer@example.org"}
    err = capsys.readouterr().err.strip()
    assert "warning" in err and "by email only" in err and len(err.splitlines()) == 1


@pytest.mark.parametrize("name, change, words", [
    ("steps_csv.csv", None, "this is Label Studio's CSV or TSV export, which `prm import` does not read; "
                            "export the project with Export > JSON (or JSON-MIN)"),
    # an answer Label Studio's config could not have produced
    ("steps_json_min.json", lambda item: item.update(label="maybe"), "field 'label': expected one of"),
    ("steps_json_min.json", lambda item: item.pop("trace_id"), "field 'trace_id': no trace_id: not a task written by"),
])
def test_a_csv_export_or_a_broken_json_min_item_is_one_line_naming_what_to_do(tmp_path, capsys, name, change, words):
    export = RECORDED / name
    if change:
        items = json.loads(export.read_text())
        change(items[1])
        export = tmp_path / name
        export.write_text(json.dumps(items))
    out = tmp_path / "out.jsonl"
    assert main(["import", "--from", "label-studio", str(export), str(DATA / "traces.jsonl"), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "Traceback" not in err and name in err
    assert words in err
    if change:
        item = json.loads(export.read_text())[1]
        assert f"JSON-MIN item 2 (task id {item['id']}, annotation_id {item['annotation_id']}), " in err
    assert not out.exists()


@pytest.mark.parametrize("change, words", [
    (lambda tasks: tasks[0]["data"].update(trace_id="nope"), "trace 'nope' is in the review export but not"),
    (lambda tasks: tasks[0]["data"].update(step="2. something else"), "differs from the text reviewed"),
    (lambda tasks: tasks[0]["annotations"][0]["result"][0]["value"].update(choices=["maybe"]), "task 1"),
    (lambda tasks: tasks[1]["data"].pop("trace_id"), "task 2"),
    # malformed answers (issue 27): each one line naming the task and the field, never a traceback
    (lambda tasks: tasks[0]["annotations"][0]["result"][0].update(value="bad"),
     "task 1, field 'annotations[0].result[0].value': must be an object"),
    (lambda tasks: tasks[0]["annotations"][0]["result"][0].update(value=["bad"]),
     "task 1, field 'annotations[0].result[0].value': must be an object"),
    (lambda tasks: tasks[0]["annotations"][0]["result"][0]["value"].update(choices="bad"),
     "task 1, field 'annotations[0].result[0].value.choices"),
    (lambda tasks: tasks[0]["annotations"][0]["result"][1]["value"].update(text=[1, 2]),
     "task 1, field 'annotations[0].result[1].value.text': must be a list of strings"),
    (lambda tasks: tasks[0].update(annotations="oops"), "task 1, field 'annotations': must be a list of annotations"),
    (lambda tasks: tasks[0]["annotations"].insert(0, "oops"), "task 1, field 'annotations[0]': an annotation is an object"),
    (lambda tasks: tasks[0]["annotations"][0]["result"].append("bad"),
     "task 1, field 'annotations[0].result[2]': a result is an object"),
    (lambda tasks: tasks[0]["data"].update(step_index="2"), "task 1, field 'data.step_index': must be a step number"),
])
def test_bad_export_is_one_line_naming_the_problem_and_writes_nothing(tmp_path, capsys, change, words):
    tasks = json.loads((DATA / "export_steps.json").read_text())
    change(tasks)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    out = tmp_path / "out.jsonl"
    assert main(["import", "--from", "label-studio", str(export), str(DATA / "traces.jsonl"), str(out)]) == 1
    err = capsys.readouterr().err.strip()
    assert words in err and len(err.splitlines()) == 1 and "Traceback" not in err
    assert "export.json" in err  # the file is named
    assert not out.exists()


def test_a_comment_given_as_one_string_is_kept_as_it_is(tmp_path):
    tasks = json.loads((DATA / "export_steps.json").read_text())
    tasks[0]["annotations"][0]["result"][1]["value"]["text"] = "just a string"
    export = tmp_path / "export.json"
    export.write_text(json.dumps(tasks))
    out = tmp_path / "out.jsonl"
    assert main(["import", "--from", "label-studio", str(export), str(DATA / "traces.jsonl"), str(out)]) == 0
    (review,) = read_traces(out)[0].steps[1].reviews
    assert review.comment == "just a string"


def test_round_trip_on_checked_gsm8k_solutions(shared_data, tmp_path):
    """Real model solutions through `prm check`, out to Label Studio, every disputed step
    answered by two reviewers, and back; then JSONL and datasets keep the reviews losslessly."""
    checked = tmp_path / "checked.jsonl"
    assert main(["check", str(shared_data / "gsm8k" / "example_model_solutions.jsonl"), str(checked),
                 "--limit", "120", "--checkers", "sympy", "--workers", "1", "--no-progress"]) == 0
    tasks_file = tmp_path / "tasks.json"
    assert main(["export", "--to", "label-studio", str(checked), str(tasks_file)]) == 0
    tasks = json.loads(tasks_file.read_text())
    assert tasks, "the checker refutes some steps of real model solutions"
    exported = []
    for number, task in enumerate(tasks, start=1):  # what Label Studio gives back after review
        task = copy.deepcopy(task)
        task["id"] = number
        task["annotations"] = [
            {"id": 10 * number + user, "completed_by": user, "was_cancelled": False, "ground_truth": False,
             "created_at": f"2024-07-0{user}T12:00:00.000000Z", "updated_at": f"2024-07-0{user}T12:00:30.000000Z",
             "lead_time": 30.0, "task": number,
             "result": [{"id": f"r{number}", "from_name": "label", "to_name": "step", "type": "choices",
                         "origin": "manual", "value": {"choices": ["bad" if user == 1 else "unsure"]}}]}
            for user in (1, 2)]
        exported.append(task)
    export = tmp_path / "export.json"
    export.write_text(json.dumps(exported))
    reviewed = tmp_path / "reviewed.jsonl"
    assert main(["import", "--from", "label-studio", str(export), str(checked), str(reviewed)]) == 0
    traces = read_traces(reviewed)
    by_id = {t.id: t for t in traces}
    for task in tasks:
        step = by_id[task["data"]["trace_id"]].steps[task["data"]["step_index"]]
        assert [(r.reviewer, r.hard_label) for r in step.reviews] == [("label-studio user 1", 0),
                                                                       ("label-studio user 2", None)]
        assert step.human_label is None  # the later review (user 2, unsure) is the current one
        assert step.verdict("sympy").status == "refuted"  # the checker's evidence is kept
    assert sum(len(s.reviews) for t in traces for s in t.steps) == 2 * len(tasks)
    for name in ("again.jsonl", "again_folder"):
        write_traces(tmp_path / name, traces)
        assert read_traces(tmp_path / name) == traces
