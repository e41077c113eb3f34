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
- `unit="trace"`: one task per trace: the problem and every step, each step with its own
  `Choices` control `label_K` (K = 1-based step number). Label Studio's config is fixed per
  project, so the config holds as many step controls as the longest trace has steps, and
  shorter traces leave the rest blank.

Import (`reviews_from_export`): Label Studio's JSON export is the task list again with
`annotations`: each annotation has `result` (a list of `{"from_name", "to_name", "type",
"value": {"choices": [...]}}` / `{"type": "textarea", "value": {"text": [...]}}`),
`completed_by` (a user id, or a user object in some versions), `created_at`, `updated_at`
and `was_cancelled`. Each answered step becomes a `Review` (reviewer "label-studio user
ID" or the user's email, time = updated_at or created_at, tool "label-studio").
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
            task_data = {"trace_id": trace.id, "problem": trace.problem, "steps": len(steps)}
            result, sources = [], set()
            for k, step in enumerate(steps, start=1):
                task_data[f"step_{k}"] = f"{k}. {step['text']}"
                task_data[f"evidence_{k}"] = _evidence(step, golds[k - 1])
                label, source = automatic_label(step)
                if label:
                    result.append(_choice(f"label_{k}", f"step_{k}", label))
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


def labeling_config(unit: str = "step", max_steps: int = 1) -> str:
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
    parts = ["<View>\n", '  <Header value="Problem"/>\n  <Text name="problem" value="$problem"/>\n',
             '  <Header value="Label each step: good, bad, or unsure"/>\n']
    for k in range(1, max_steps + 1):
        parts.append(f'  <View style="border-top: 1px solid #ddd; padding-top: 4px">\n'
                     f'    <Text name="step_{k}" value="$step_{k}"/>\n'
                     f'    <Choices name="label_{k}" toName="step_{k}" choice="single-radio" showInline="true">'
                     f"{choices}</Choices>\n  </View>\n")
    parts.append('  <TextArea name="comment" toName="problem" placeholder="comments (optional)" rows="2"/>\n</View>\n')
    return "".join(parts)


def export_files(traces: list[Trace], unit: str = "step") -> tuple[list[dict[str, Any]], str]:
    """The tasks and the config that goes with them."""
    tasks = tasks_for(traces, unit)
    max_steps = max((len(t.steps) for t in traces), default=1)
    return tasks, labeling_config(unit, max_steps)


# -- import ----------------------------------------------------------------------------------

def read_export(path: str | os.PathLike) -> list[dict[str, Any]]:
    """A Label Studio JSON export: a list of tasks (errors name the file)."""
    try:
        with open(path, "rb") as handle:
            tasks = parse_json(handle.read())
    except OSError as err:
        raise RecordError(f"cannot read: {err.strerror}", path=str(path)) from None
    except RecordError as err:
        raise err.located(path=str(path)) from None
    if not isinstance(tasks, list):
        raise RecordError("a Label Studio JSON export is a list of tasks; got a "
                          f"{type(tasks).__name__} (export with the JSON format, not JSON_MIN or CSV)",
                          path=str(path))
    return tasks


def reviewer_of(completed_by: Any) -> str:
    """A readable reviewer name from `completed_by` (an id, or a user object with an email)."""
    if isinstance(completed_by, dict):
        for key in ("email", "username"):
            if completed_by.get(key):
                return str(completed_by[key])
        completed_by = completed_by.get("id")
    if completed_by is None:
        raise RecordError("annotation has no completed_by", field="completed_by")
    return f"{TOOL} user {completed_by}"


def reviews_from_export(tasks: list[dict[str, Any]]) -> list[tuple[str, int, str, Review]]:
    """(trace id, step index, step text shown, review) for each answered step of each annotation
    that was not cancelled. Raises `RecordError` naming the task (1-based) and field."""
    found = []
    for number, task in enumerate(tasks, start=1):
        try:
            found += _task_reviews(task)
        except RecordError as err:
            where = f"task {number}, field '{err.field}'" if err.field else f"task {number}"
            raise RecordError(f"{where}: {err.reason}") from None
    return found


def _task_reviews(task: Any) -> list[tuple[str, int, str, Review]]:
    if not isinstance(task, dict) or not isinstance(task.get("data"), dict):
        raise RecordError("not a Label Studio task (no data object)", field="data")
    data = task["data"]
    trace_id = data.get("trace_id")
    if not isinstance(trace_id, str):
        raise RecordError("no trace_id: not a task written by `prm export --to label-studio`", field="data.trace_id")
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
        time = annotation.get("updated_at") or annotation.get("created_at")
        results = annotation.get("result") or []
        if not isinstance(results, list):
            raise RecordError(f"must be a list, got {_kind(results)}", field=f"{where}.result")
        for r, result in enumerate(results):
            if not isinstance(result, dict):
                raise RecordError(f"a result is an object, got {_kind(result)}", field=f"{where}.result[{r}]")
        comment = " ".join(_comment(result, f"{where}.result[{r}]") for r, result in enumerate(results)
                           if result.get("type") == "textarea")
        for r, result in enumerate(results):
            if result.get("type") != "choices":
                continue
            index, shown = _step_of(result.get("from_name"), data)
            picked = _value(result, f"{where}.result[{r}]").get("choices") or []
            if not isinstance(picked, list) or len(picked) != 1 or picked[0] not in CHOICES:
                raise RecordError(f"expected one of {list(CHOICES)}, got {picked!r}",
                                  field=f"{where}.result[{r}].value.choices ({result.get('from_name')})")
            found.append((trace_id, index, shown, Review(reviewer, CHOICES[picked[0]], time=time, tool=TOOL,
                                                        comment=comment or None)))
    return found


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


def _comment(result: dict[str, Any], where: str) -> str:
    """A textarea's text: a list of strings (Label Studio's layout), or one string, kept as it is."""
    text = _value(result, where).get("text") or []
    if isinstance(text, str):
        return text
    if not isinstance(text, list) or not all(isinstance(line, str) for line in text):
        raise RecordError(f"must be a list of strings, got {text!r}"[:120], field=f"{where}.value.text")
    return " ".join(text)


def _step_of(from_name: Any, data: dict[str, Any]) -> tuple[int, str]:
    """The 0-based step an answer is about, and the step text the reviewer was shown."""
    if from_name == "label" and "step_index" in data:
        index = data["step_index"]
        if not isinstance(index, int) or isinstance(index, bool):
            raise RecordError(f"must be a step number, got {_kind(index)}", field="data.step_index")
        return index, str(data.get("step", ""))
    if isinstance(from_name, str) and from_name.startswith("label_") and from_name[6:].isdigit():
        k = int(from_name[6:])
        return k - 1, str(data.get(f"step_{k}", ""))
    raise RecordError(f"unknown control {from_name!r} (expected label or label_K)", field="annotations.result.from_name")


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
