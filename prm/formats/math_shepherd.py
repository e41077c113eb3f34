"""Math-Shepherd: step-tagged solutions with Monte Carlo `+`/`-` step labels.

A row has `input`: `<problem> Step 1: <step> ки\\nStep 2: <step> ки ...`, every step
ending with the tag ` ки`; `label`: the same text with each ` ки` replaced by ` +` (good,
hard label 1) or ` -` (bad, hard label 0); and `task` (GSM8K or MATH). A row without
`label` has unknown step labels.

Reading: the problem is the text before the first `Step 1:` less the one space that
separates them; each step's `Step k: ` prefix (k = its 1-based position) and the newline
before it are removed, so native step texts are clean; a step that does not start with
its own `Step k:` keeps its text as is. The writer adds the prefixes back, so
Math-Shepherd -> native -> Math-Shepherd is byte-exact for rows in the release layout
(checked on the real sample; JSON is written with `\\uXXXX` escapes, as released) and
native -> Math-Shepherd -> native gives back the same problem, step texts and labels.
`final_answer` is the text after `The answer is:` in the last step; outcome_label is the
last step's label (Math-Shepherd labels the last step by whether the answer is right).
Labels are automatic (Monte Carlo), so label_source is "import" and no gold meta is set.

Writing: hard labels only (`+`/`-`); steps after the first unknown label are cut (or
the trace dropped, `unknown="drop"`), counted in the `WriteReport`. A trace whose text
contains the tag ` ки`, or whose problem contains `Step 1:`, cannot be written
unambiguously and is dropped with its reason. `task` comes from meta["task"] (omitted
when unknown). Lost: ids, soft labels, answers, verdicts, meta other than task.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from prm.errors import RecordError
from prm.formats.base import (
    WriteReport, exportable_steps, read_rows, require, string_field, write_rows)
from prm.io import ReadReport
from prm.records import Step, Trace

TAG = " ки"
GOOD, BAD = " +", " -"
FIRST_STEP = re.compile(r"Step 1:")
ANSWER = re.compile(r"The answer is:(.*)$", re.DOTALL)


def read_math_shepherd(path: str | os.PathLike, *, skip_invalid: bool = False,
                       report: ReadReport | None = None, limit: int | None = None) -> list[Trace]:
    """Read a Math-Shepherd file (JSONL, JSON, Parquet or `datasets` folder)."""
    stem = Path(path).stem
    return read_rows(path, lambda row, i: trace_from_math_shepherd(row, f"math-shepherd-{stem}-{i}"),
                     skip_invalid=skip_invalid, report=report, limit=limit)


def trace_from_math_shepherd(row: Any, trace_id: str) -> Trace:
    """One Math-Shepherd row as a trace."""
    require(row, "input")
    text = string_field(row, "input")
    pieces = text.split(TAG)
    if len(pieces) < 2:
        raise RecordError(f"no step tag {TAG!r}", field="input")
    if pieces[-1].strip():
        raise RecordError(f"text after the last step tag {TAG!r}: {pieces[-1][:40]!r}", field="input")
    first = FIRST_STEP.search(pieces[0])
    if first is None:
        raise RecordError("no 'Step 1:' separating the problem from the steps", field="input")
    problem = pieces[0][:first.start()]
    problem = problem[:-1] if problem.endswith(" ") else problem  # the one separating space
    bodies = [pieces[0][first.start():], *pieces[1:-1]]
    texts = [_without_prefix(body, k) for k, body in enumerate(bodies, start=1)]
    labels = _labels(row, pieces) if row.get("label") is not None else [None] * len(texts)
    steps = [Step(t, hard_label=label, label_source=None if label is None else "import")
             for t, label in zip(texts, labels)]
    answer = ANSWER.search(texts[-1])
    meta = {"source": "math-shepherd"}
    if row.get("task") is not None:
        meta["task"] = row["task"]
    return Trace(id=trace_id, problem=problem, steps=steps,
                 final_answer=answer.group(1).strip() if answer else None,
                 outcome_label=labels[-1], meta=meta)


def _without_prefix(piece: str, k: int) -> str:
    if k > 1 and piece.startswith("\n"):
        piece = piece[1:]
    for prefix in (f"Step {k}: ", f"Step {k}:"):
        if piece.startswith(prefix):
            return piece[len(prefix):]
    return piece


def _labels(row: dict, pieces: list[str]) -> list[int]:
    """The +/- after each step: `label` must be `input` with each tag replaced by +/-."""
    label = string_field(row, "label")
    labels, pos = [], 0
    for k, piece in enumerate(pieces[:-1], start=1):
        if label[pos:pos + len(piece)] != piece:
            raise RecordError(f"text of step {k} differs from `input`", field="label")
        mark = label[pos + len(piece):pos + len(piece) + 2]
        if mark not in (GOOD, BAD):
            raise RecordError(f"step {k} ends with {mark!r}, expected ' +' or ' -'", field="label")
        labels.append(1 if mark == GOOD else 0)
        pos += len(piece) + 2
    if label[pos:] != pieces[-1]:
        raise RecordError("text after the last label differs from `input`", field="label")
    return labels


def to_math_shepherd_rows(traces: list[Trace], *, unknown: str = "cut",
                          report: WriteReport | None = None) -> list[dict[str, Any]]:
    """Math-Shepherd rows for `traces` (hard labels; see the module docstring)."""
    report = report if report is not None else WriteReport()
    rows = []
    for trace in traces:
        if any(TAG in text for text in [trace.problem, *trace.step_texts]):
            report.dropped.append(f"{trace.id}: text contains the step tag {TAG!r}")
            continue
        if FIRST_STEP.search(trace.problem):
            report.dropped.append(f"{trace.id}: problem contains 'Step 1:'")
            continue
        keep = exportable_steps(trace, trace.hard_labels, unknown, report)
        if not keep:
            continue
        steps = trace.steps[:keep]
        body = [f"Step {k}: {step.text}" for k, step in enumerate(steps, start=1)]
        marks = [GOOD if step.hard_label == 1 else BAD for step in steps]
        row = {"input": f"{trace.problem} " + "\n".join(b + TAG for b in body),
               "label": f"{trace.problem} " + "\n".join(b + m for b, m in zip(body, marks))}
        if trace.meta.get("task") is not None:
            row["task"] = trace.meta["task"]
        rows.append(row)
    report.written += len(rows)
    return rows


def write_math_shepherd(path: str | os.PathLike, traces: list[Trace], *, unknown: str = "cut",
                        report: WriteReport | None = None) -> int:
    """Write traces in the Math-Shepherd layout (ASCII-escaped JSON, as released)."""
    return write_rows(path, to_math_shepherd_rows(traces, unknown=unknown, report=report),
                      ensure_ascii=True)


def load_math_shepherd_hub(split: str = "train", name: str = "peiyi9979/Math-Shepherd") -> list[Trace]:
    """Math-Shepherd from the Hugging Face hub (needs internet; 445k rows for "train")."""
    import datasets

    table = datasets.load_dataset(name, split=split)
    return [trace_from_math_shepherd(row, f"math-shepherd-{split}-{i}") for i, row in enumerate(table)]
