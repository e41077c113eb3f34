"""TRL "stepwise supervision": the dataset layout TRL's `PRMTrainer` trains on.

One row per trace: `prompt` (the problem), `completions` (the steps, a list of strings)
and `labels` (one per step). Written files feed `trl.PRMTrainer` directly (as JSONL,
Parquet or a `datasets` folder).

Writing:
- hard labels are written as booleans (1 -> true, 0 -> false);
- with `soft=True` the labels are floats: the step's soft label, or its hard label as
  0.0/1.0 when it has no soft label (TRL's column then holds floats; use it with a
  trainer that accepts soft targets);
- the layout has no "unknown": a trace is cut before its first step without a label
  (`unknown="cut"`, default) or dropped whole (`unknown="drop"`); a trace whose first
  step has no label is always dropped. Every cut or drop is counted and explained in the
  `WriteReport`; an unknown label is never written as false.
- only the three columns are written: ids, answers, outcome labels, verdicts and meta are
  lost.

Reading: booleans (or the integers 0/1) are hard labels; other numbers are soft labels
in [0, 1] (a soft label of exactly 0.0 or 1.0 also gives the hard label). Labels come
with label_source "import". Ids are `trl-<file stem>-<row>`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from prm.errors import RecordError
from prm.formats.base import (
    WriteReport, check_length, exportable_steps, read_rows, require, string_field, string_list,
    write_rows)
from prm.io import ReadReport
from prm.records import Step, Trace


def read_trl(path: str | os.PathLike, *, skip_invalid: bool = False,
             report: ReadReport | None = None, limit: int | None = None) -> list[Trace]:
    """Read a TRL stepwise-supervision file (JSONL, JSON, Parquet or `datasets` folder)."""
    stem = Path(path).stem
    return read_rows(path, lambda row, index: trace_from_trl(row, f"trl-{stem}-{index}"),
                     skip_invalid=skip_invalid, report=report, limit=limit)


def trace_from_trl(row: Any, trace_id: str) -> Trace:
    """One TRL row as a trace."""
    require(row, "prompt", "completions")
    prompt = string_field(row, "prompt")
    texts = string_list(row, "completions")
    labels = row.get("labels")
    if labels is None:
        labels = [None] * len(texts)
    if not isinstance(labels, list):
        raise RecordError(f"must be a list, got {type(labels).__name__}", field="labels")
    check_length(labels, texts, "labels")
    steps = [_step(text, label, i) for i, (text, label) in enumerate(zip(texts, labels))]
    return Trace(id=trace_id, problem=prompt, steps=steps, meta={"source": "trl"})


def _step(text: str, label: Any, index: int) -> Step:
    if label is None:
        return Step(text)
    if isinstance(label, bool) or (isinstance(label, int) and label in (0, 1)):
        return Step(text, hard_label=int(label), label_source="import")
    if isinstance(label, (int, float)) and 0.0 <= label <= 1.0:
        hard = int(label) if label in (0.0, 1.0) else None
        return Step(text, hard_label=hard, soft_label=float(label), label_source="import")
    raise RecordError(f"a label must be true/false or a number in [0, 1], got {label!r}",
                      field=f"labels[{index}]")


def to_trl_rows(traces: list[Trace], *, soft: bool = False, unknown: str = "cut",
                report: WriteReport | None = None) -> list[dict[str, Any]]:
    """TRL rows for `traces` (see the module docstring for labels and unknowns)."""
    report = report if report is not None else WriteReport()
    rows = []
    for trace in traces:
        if soft:
            labels = [s.soft_label if s.soft_label is not None else
                      (float(s.hard_label) if s.hard_label is not None else None)
                      for s in trace.steps]
        else:
            labels = [bool(s.hard_label) if s.hard_label is not None else None for s in trace.steps]
        keep = exportable_steps(trace, labels, unknown, report)
        if keep:
            rows.append({"prompt": trace.problem, "completions": trace.step_texts[:keep],
                         "labels": labels[:keep]})
    report.written += len(rows)
    return rows


def write_trl(path: str | os.PathLike, traces: list[Trace], *, soft: bool = False,
              unknown: str = "cut", report: WriteReport | None = None) -> int:
    """Write traces as TRL stepwise supervision; returns the number of rows written."""
    return write_rows(path, to_trl_rows(traces, soft=soft, unknown=unknown, report=report))
