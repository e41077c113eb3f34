"""The Label Studio round trip: `prm export --to label-studio`, then reviewers' answers back
with `prm import --from label-studio`, as human reviews beside the automatic labels.

The export files in tests/data/label_studio/ are written by hand in Label Studio's documented
JSON export layout (task `id`/`data`/`annotations`/`predictions`; annotation `result`,
`completed_by` as a user id or a user object, `created_at`/`updated_at`, `was_cancelled`).
"""

import copy
import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from prm.app.cli import main
from prm.io import read_traces, write_traces

DATA = Path(__file__).parent / "data" / "label_studio"


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


def test_export_one_task_per_trace_has_a_control_per_step(tmp_path):
    out = tmp_path / "traces.json"
    assert main(["export", "--to", "label-studio", str(DATA / "traces.jsonl"), str(out), "--unit", "trace"]) == 0
    tasks = json.loads(out.read_text())
    config = controls((tmp_path / "traces.label_config.xml").read_text())
    assert set(config) == {"label_1", "label_2", "label_3"}  # the longest trace has 3 steps
    assert tasks[1]["data"]["step_2"] == "2. The answer is 60."
    choices = {r["from_name"]: r["value"]["choices"][0] for r in tasks[0]["predictions"][0]["result"]}
    assert choices == {"label_1": "good", "label_2": "good", "label_3": "bad"}


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
    (rui,) = after[1].steps[0].reviews
    assert (rui.reviewer, rui.hard_label) == ("rui@example.org", 1)
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


def test_import_of_a_per_trace_export_reviews_every_step(tmp_path):
    out = tmp_path / "reviewed.jsonl"
    assert main(["import", "--from", "label-studio", str(DATA / "export_traces.json"),
                 str(DATA / "traces.jsonl"), str(out)]) == 0
    shop = read_traces(out)[0]
    assert [s.human_label for s in shop.steps] == [1, 0, None]
    assert [len(s.reviews) for s in shop.steps] == [1, 1, 1]  # "unsure" is a review with no label
    assert {s.reviews[0].reviewer for s in shop.steps} == {"label-studio user 4"}


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
