"""Label Studio: traces out for people to review, their answers back in as `Review`s.

Export (`tasks_for`, `labeling_config`): a Label Studio import file is a JSON list of tasks,
each `{"data": {...}, "predictions": [{"model_version", "result": [...]}]}`; the
predictions pre-annotate the task with the automatic labels, so reviewers confirm or
correct them instead of starting blank (`automatic_label`: the step's label, else the
checkers' call, else Monte Carlo's, else the PRM's). Two shapes:

- `unit="step"`: one task per disputed step (its signals disagree, `prm.view_html`, or a
  checker refuted it while its label is not bad): the
  problem, the steps before it, the step, and what Monte Carlo, the checkers, the PRM and
  gold said about it; one `Choices` control `label` (good / bad / unsure) and a comment.
- `unit="trace"`: one task per trace: the problem and `steps`, a list of `{"text",
  "evidence"}`. The config draws it with Label Studio's `Repeater` (its body once per item
  of `steps`, `{{idx}}` the 0-based index): per step the text, a `Choices` control
  `step_K_label`, the evidence in a fold and a `TextArea` `step_K_comment`. So one config
  fits traces of any length (a config is fixed per project, a task's keys are not), and
  each comment belongs to its step.

Import (`read_export`, `reviews_from_export`): Label Studio's JSON export is the task list
again with `annotations`: each has `result` (a list of `{"from_name", "to_name", "type",
"value": {"choices": [...]}}` / `{"type": "textarea", "value": {"text": [...]}}`),
`completed_by` (a user id, or a user object `{"id", "email", ...}` in a snapshot with user
details), `created_at`, `updated_at` and `was_cancelled`. Its JSON-MIN export has one flat
item per annotation: the task's data, the answers under their control names (one choice as
a string, one text as a string), `annotator` (the user id, or the email alone in a snapshot
with user details), `created_at`, `updated_at`. CSV/TSV exports are refused in one line.
Each answered step becomes a `Review` (reviewer "label-studio user ID" whenever the id is
there, else the email; time = updated_at or created_at; tool "label-studio").
"""

from __future__ import annotations

import json
import os
from typing import Any

from prm.errors import RecordError
from prm.io import parse_json
from prm.records import Review, Trace
from prm.view_html import SIGNAL_NAMES, disagreeing_pairs, gold_labels, step_signals

TOOL = "label-studio"
USER_PREFIX = f"{TOOL} user "  # reviewers known by their Label Studio user id
CHOICES = {"good": 1, "bad": 0, "unsure": None}
UNITS = ("step", "trace")


# -- export ----------------------------------------------------------------------------------

def disputed_steps(trace: Trace) -> list[int]:
    """Indices of the steps worth a person's look: their signals (Monte Carlo, checker, PRM,
    gold, reviewers) disagree, or a checker refuted a step not labelled bad."""
    data = trace.to_dict()
    disputed = []
    for i, (step, gold) in enumerate(zip(data["steps"], gold_labels(data))):
        signals = step_signals(step, gold)
        if disagreeing_pairs(signals) or (signals["checker"] == 0 and step.get("hard_label") != 0):
            disputed.append(i)
    return disputed


def _word(label: int | None) -> str | None:
    return {1: "good", 0: "bad"}.get(label)


def _evidence(step: dict[str, Any], gold: int | None) -> str:
    """What the automatic signals said about a step, as lines a reviewer can read."""
    lines = [f"label: {_word(step.get('hard_label')) or 'unknown'} ({step.get('label_source') or 'no source'})"]
    rollouts = step.get("rollouts")
    if rollouts:
        answers = ", ".join("none" if a is None else a for a in rollouts.get("answers") or [])
        lines.append(f"Monte Carlo: {rollouts['correct']}/{rollouts['total']} reached the answer"
                     + (f" (answers: {answers})" if answers else ""))
    for verdict in step.get("verdicts") or []:
        lines.append(f"{verdict['checker']}: {verdict['status']}"
                     + (f"; evidence {verdict['evidence']}" if verdict.get("evidence") else ""))
    if step.get("score") is not None:
        lines.append(f"PRM score: {step['score']:.3f}")
    if gold is not None:
        lines.append(f"gold: {_word(gold)}")
    pairs = disagreeing_pairs(step_signals(step, gold))
    if pairs:
        lines.append("disagree: " + ", ".join(" vs ".join(SIGNAL_NAMES[s] for s in p.split("-")) for p in pairs))
    return "\n".join(lines)


def automatic_label(step: dict[str, Any]) -> tuple[str | None, str | None]:
    """The pre-annotation for a step and where it comes from: its label when it has one, else
    the checkers' call, else Monte Carlo's, else the PRM's (None when nothing called it)."""
    if step.get("hard_label") is not None:
        return _word(step["hard_label"]), step.get("label_source") or "labels"
    signals = step_signals(step, None)
    for name, source in (("checker", "checker"), ("mc", "monte-carlo"), ("prm", "prm score")):
        if signals[name] is not None:
            return _word(signals[name]), source
    return None, None


def _model_version(sources: set[str]) -> str:
    return "prm-toolkit " + (", ".join(sorted(sources)) if sources else "labels")


def tasks_for(traces: list[Trace], unit: str = "step") -> list[dict[str, Any]]:
    """Label Studio tasks for the traces: one per disputed step, or one per trace."""
    if unit not in UNITS:
        raise RecordError(f"unit must be one of {UNITS}, got {unit!r}")
    tasks = []
    for trace in traces:
        data = trace.to_dict()
        golds = gold_labels(data)
        steps = data["steps"]
        if unit == "trace":
            task_data = {"trace_id": trace.id, "problem": trace.problem,
                         "steps": [{"text": f"{k}. {step['text']}", "evidence": _evidence(step, golds[k - 1])}
                                   for k, step in enumerate(steps, start=1)]}
            result, sources = [], set()
            for index, step in enumerate(steps):
                label, source = automatic_label(step)
                if label:
                    result.append(_choice(f"step_{index}_label", f"step_{index}", label))
                    sources.add(source)
            tasks.append(_task(task_data, result, sources))
            continue
        for index in disputed_steps(trace):
            step = steps[index]
            earlier = "\n".join(f"{k}. {s['text']}" for k, s in enumerate(steps[:index], start=1))
            task_data = {"trace_id": trace.id, "step_index": index, "problem": trace.problem,
                         "previous_steps": earlier or "(this is the first step)",
                         "step": f"{index + 1}. {step['text']}", "evidence": _evidence(step, golds[index])}
            label, source = automatic_label(step)
            result = [_choice("label", "step", label)] if label else []
            tasks.append(_task(task_data, result, {source} if label else set()))
    return tasks


def _choice(from_name: str, to_name: str, value: str) -> dict[str, Any]:
    return {"from_name": from_name, "to_name": to_name, "type": "choices", "value": {"choices": [value]}}


def _task(data: dict[str, Any], result: list[dict[str, Any]], sources: set[str]) -> dict[str, Any]:
    task: dict[str, Any] = {"data": data}
    if result:
        task["predictions"] = [{"model_version": _model_version(sources), "result": result}]
    return task


def labeling_config(unit: str = "step") -> str:
    """The labelling interface (Label Studio's XML config) matching `tasks_for(..., unit)`."""
    choices = "".join(f'<Choice value="{name}"/>' for name in CHOICES)
    if unit == "step":
        return ("<View>\n"
                '  <Header value="Problem"/>\n  <Text name="problem" value="$problem"/>\n'
                '  <Header value="Steps so far"/>\n  <Text name="previous_steps" value="$previous_steps"/>\n'
                '  <Header value="Is this step correct?"/>\n  <Text name="step" value="$step"/>\n'
                f'  <Choices name="label" toName="step" choice="single-radio" showInline="true" required="true">{choices}</Choices>\n'
                '  <Header value="What the automatic labellers said"/>\n  <Text name="evidence" value="$evidence"/>\n'
                '  <TextArea name="comment" toName="step" placeholder="why (optional)" rows="2"/>\n'
                "</View>\n")
    if unit != "trace":
        raise RecordError(f"unit must be one of {UNITS}, got {unit!r}")
    # Label Studio's Repeater copies its body once per item of the task's `steps` list ({{idx}} is
    # the 0-based index), so one config fits traces of any length and shows no empty rows.
    return ("<View>\n"
            '  <Header value="Problem"/>\n  <Text name="problem" value="$problem"/>\n'
            '  <Header value="Label each step: good, bad, or unsure"/>\n'
            '  <Repeater on="$steps" indexFlag="{{idx}}">\n'
            '    <View style="border-top: 1px solid #ddd; padding-top: 4px">\n'
            '      <Text name="step_{{idx}}" value="$steps[{{idx}}].text"/>\n'
            f'      <Choices name="step_{{{{idx}}}}_label" toName="step_{{{{idx}}}}" choice="single-radio" showInline="true">{choices}</Choices>\n'
            '      <Collapse><Panel value="What the automatic labellers said">'
            '<Text name="evidence_{{idx}}" value="$steps[{{idx}}].evidence"/></Panel></Collapse>\n'
            '      <TextArea name="step_{{idx}}_comment" toName="step_{{idx}}" placeholder="why (optional)" rows="1"/>\n'
            "    </View>\n  </Repeater>\n</View>\n")


def export_files(traces: list[Trace], unit: str = "step") -> tuple[list[dict[str, Any]], str]:
    """The tasks and the config that goes with them."""
    return tasks_for(traces, unit), labeling_config(unit)


# -- import ----------------------------------------------------------------------------------

USE_JSON = "export the project with Export > JSON (or JSON-MIN)"


def read_export(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A Label Studio export, JSON or JSON-MIN: a list of items (errors name the file; a CSV
    or TSV export is refused in one line saying which export to use)."""
    try:
        with open(path, "rb") as handle:
            raw = handle.read()
    except OSError as err:
        raise RecordError(f"cannot read: {err.strerror}", path=str(path)) from None
    try:
        items = parse_json(raw)
    except RecordError as err:
        if _looks_like_a_table(raw):
            raise RecordError(f"this is Label Studio's CSV or TSV export, which `prm import` does not read; "
                              f"{USE_JSON}", path=str(path)) from None
        raise err.located(path=str(path)) from None
    if not isinstance(items, list):
        raise RecordError(f"a Label Studio export is a list of tasks; got {_kind(items)} ({USE_JSON})",
                          path=str(path))
    return items


def _looks_like_a_table(raw: bytes) -> bool:
    header = raw.lstrip()[:2000].split(b"\n", 1)[0]
    return not header.startswith((b"[", b"{")) and (b"," in header or b"\t" in header)


def reviewer_of(user: Any) -> str:
    """The reviewer's name, the same in every export: `label-studio user ID` whenever Label
    Studio's user id is there (`completed_by` as an id, or as a user object with `id`);
    else the user's email (a JSON-MIN export taken with user details holds only that)."""
    if isinstance(user, dict):
        if _is_id(user.get("id")):
            return f"{USER_PREFIX}{user['id']}"
        for key in ("email", "username"):
            if isinstance(user.get(key), str) and user[key]:
                return user[key]
    elif _is_id(user):
        return f"{USER_PREFIX}{user}"
    elif isinstance(user, str) and user.strip():
        return user.strip()
    raise RecordError(f"no reviewer: expected a user id, a user object or an email, got {_kind(user)}",
                      field="completed_by")


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def reviews_from_export(items: list[Any]) -> list[tuple[str, int, str, Review]]:
    """(trace id, step index, step text shown, review) for each answered step of each
    annotation that was not cancelled, from a JSON export (tasks with `annotations`) or a
    JSON-MIN one (one flat item per annotation). Raises `RecordError` naming the item and field."""
    found = []
    for number, item in enumerate(items, start=1):
        minimal = (isinstance(item, dict) and not isinstance(item.get("data"), dict)
                   and any(key in item for key in ("trace_id", "annotator", "annotation_id")))
        try:
            found += _min_item_reviews(item) if minimal else _task_reviews(item)
        except RecordError as err:
            where = _min_item_name(number, item) if minimal else f"task {number}"
            where += f", field '{err.field}'" if err.field else ""
            raise RecordError(f"{where}: {err.reason}") from None
    return found


def _task_reviews(task: Any) -> list[tuple[str, int, str, Review]]:
    """The reviews in one task of Label Studio's JSON export."""
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise RecordError(f"not a task of a Label Studio JSON export (no data object; {USE_JSON})", field="data")
    data = task["data"]
    trace_id = _trace_id(data, "data.trace_id")
    annotations = task.get("annotations")
    if annotations is None:
        return []
    if not isinstance(annotations, list):
        raise RecordError(f"must be a list of annotations, got {_kind(annotations)}", field="annotations")
    found = []
    for a, annotation in enumerate(annotations):
        where = f"annotations[{a}]"
        if not isinstance(annotation, dict):
            raise RecordError(f"an annotation is an object, got {_kind(annotation)}", field=where)
        if annotation.get("was_cancelled"):
            continue
        reviewer = reviewer_of(annotation.get("completed_by"))
        results = annotation.get("result") or []
        if not isinstance(results, list):
            raise RecordError(f"must be a list, got {_kind(results)}", field=f"{where}.result")
        answers = []
        for r, result in enumerate(results):
            at = f"{where}.result[{r}]"
            if not isinstance(result, dict):
                raise RecordError(f"a result is an object, got {_kind(result)}", field=at)
            if result.get("type") == "choices":
                answers.append((result.get("from_name"), _value(result, at).get("choices") or [], f"{at}.value.choices"))
            elif result.get("type") == "textarea":
                answers.append((result.get("from_name"), _text(_value(result, at).get("text"), f"{at}.value.text"),
                                f"{at}.value.text"))
        found += _reviews(trace_id, data, answers, reviewer, annotation.get("updated_at") or annotation.get("created_at"))
    return found


def _min_item_reviews(item: dict[str, Any]) -> list[tuple[str, int, str, Review]]:
    """The reviews in one item of Label Studio's JSON-MIN export: the task's data fields with
    one annotation's answers beside them, flat (`label: "bad"`, `comment: "..."`, one choice
    as a string, several as `{"choices": [...]}`), and `annotator`, `created_at`, `updated_at`."""
    trace_id = _trace_id(item, "trace_id")
    if "annotator" not in item:  # a task nobody annotated
        return []
    answers = []
    for name, value in item.items():
        kind = _control_kind(name)
        if kind == "label":
            if isinstance(value, str):  # the one choice
                value = [value]
            elif isinstance(value, dict):
                value = value.get("choices")
            answers.append((name, value, name))
        elif kind == "comment":
            answers.append((name, _text(value.get("text") if isinstance(value, dict) else value, name), name))
    return _reviews(trace_id, item, answers, reviewer_of(item["annotator"]),
                    item.get("updated_at") or item.get("created_at"))


def _min_item_name(number: int, item: dict[str, Any]) -> str:
    ids = ", ".join(f"{key} {item[key]}" for key in ("id", "annotation_id") if _is_id(item.get(key)))
    return f"JSON-MIN item {number}" + (f" (task {ids})" if ids else "")


def _trace_id(data: dict[str, Any], field: str) -> str:
    if not isinstance(data.get("trace_id"), str):
        raise RecordError("no trace_id: not a task written by `prm export --to label-studio`", field=field)
    return data["trace_id"]


def _control_kind(name: Any) -> str | None:
    """'label' or 'comment' for the controls `labeling_config` writes (label, comment,
    step_K_label, step_K_comment), else None."""
    if name in ("label", "comment"):
        return name
    if isinstance(name, str) and name.startswith("step_"):
        number, _, kind = name[5:].partition("_")
        if number.isdigit() and kind in ("label", "comment"):
            return kind
    return None


def _reviews(trace_id: str, data: dict[str, Any], answers: list[tuple[Any, Any, str]], reviewer: str,
             time: Any) -> list[tuple[str, int, str, Review]]:
    """One review per step the annotation answered: its choice and the comment written on that
    step (a step with a comment and no choice is a review with no label, so nothing said is lost)."""
    labels: dict[int, int | None] = {}
    comments: dict[int, list[str]] = {}
    shown: dict[int, str] = {}
    for name, value, field in answers:
        index, text = _step_of(name, data)
        shown[index] = text
        if _control_kind(name) == "comment":
            if value:
                comments.setdefault(index, []).append(value)
            continue
        if not isinstance(value, list) or len(value) != 1 or value[0] not in CHOICES:
            raise RecordError(f"expected one of {list(CHOICES)}, got {value!r}",
                              field=field if field == name else f"{field} ({name})")
        labels[index] = CHOICES[value[0]]
    return [(trace_id, index, shown[index], Review(reviewer, labels.get(index), time=time, tool=TOOL,
                                                   comment=" ".join(comments.get(index, [])) or None))
            for index in sorted(set(labels) | set(comments))]


def _kind(value: Any) -> str:
    """What a JSON value is, for an error message: `a string ('oops')`, `a list`, ..."""
    name = {str: "a string", list: "a list", dict: "an object", bool: "a boolean", int: "a number",
            float: "a number", type(None): "null"}.get(type(value), type(value).__name__)
    return f"{name} ({value!r})" if isinstance(value, str) and len(value) <= 40 else name


def _value(result: dict[str, Any], where: str) -> dict[str, Any]:
    value = result.get("value")
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(f"must be an object such as {{\"choices\": [\"good\"]}}, got {_kind(value)}",
                          field=f"{where}.value")
    return value


def _text(text: Any, where: str) -> str:
    """A textarea's text: a list of strings (Label Studio's layout), or one string, kept as it is."""
    if text is None or isinstance(text, str):
        return text or ""
    if not isinstance(text, list) or not all(isinstance(line, str) for line in text):
        raise RecordError(f"must be a list of strings, got {text!r}"[:120], field=where)
    return " ".join(text)


def _step_of(name: Any, data: dict[str, Any]) -> tuple[int, str]:
    """The 0-based step a control is about, and the step text the reviewer was shown."""
    kind = _control_kind(name)
    if name == kind and "step_index" in data:  # one task per step: `label` and `comment`
        index = data["step_index"]
        if not isinstance(index, int) or isinstance(index, bool):
            raise RecordError(f"must be a step number, got {_kind(index)}", field="data.step_index")
        return index, str(data.get("step", ""))
    if kind and name != kind:  # one task per trace: step_K_label and step_K_comment, K from 0
        index = int(name[5:].partition("_")[0])
        steps = data.get("steps")
        if not isinstance(steps, list) or index >= len(steps) or not isinstance(steps[index], dict):
            raise RecordError(f"control {name!r} is about step {index + 1}, which the task's steps do not have",
                              field="data.steps")
        return index, str(steps[index].get("text", ""))
    raise RecordError(f"unknown control {name!r} (expected label, comment, step_K_label or step_K_comment: "
                      "re-export the traces with this version of `prm export`)", field="annotations.result.from_name")


def apply_reviews(traces: list[Trace], reviews: list[tuple[str, int, str, Review]], source: str) -> int:
    """Add reviews to their steps; one review per reviewer and tool per step (a newer answer
    replaces an older one, so importing the same export twice changes nothing). Returns the
    number of reviews added or updated."""
    by_id = {trace.id: trace for trace in traces}
    changed = 0
    for trace_id, index, shown, review in reviews:
        trace = by_id.get(trace_id)
        if trace is None:
            raise RecordError(f"trace {trace_id!r} is in the review export but not in the traces", path=source)
        if not 0 <= index < len(trace.steps):
            raise RecordError(f"trace {trace_id!r} has {len(trace.steps)} steps; the review is of step {index + 1}",
                              path=source)
        step = trace.steps[index]
        if shown and not shown.endswith(step.text):
            raise RecordError(f"trace {trace_id!r} step {index + 1} differs from the text reviewed "
                              f"({shown[:60]!r}); were the traces changed after the export?", path=source)
        same = [i for i, r in enumerate(step.reviews) if (r.reviewer, r.tool) == (review.reviewer, review.tool)]
        if same:
            old = step.reviews[same[0]]
            if old == review or (old.time or "") > (review.time or ""):
                continue
            step.reviews[same[0]] = review
        else:
            step.reviews.append(review)
        changed += 1
    return changed


def dumps_tasks(tasks: list[dict[str, Any]]) -> str:
    return json.dumps(tasks, ensure_ascii=False, indent=1) + "\n"


__all__ = ["CHOICES", "TOOL", "UNITS", "apply_reviews", "disputed_steps", "dumps_tasks", "export_files",
           "labeling_config", "read_export", "reviews_from_export", "tasks_for"]
