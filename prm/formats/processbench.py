"""ProcessBench (Qwen): solutions with the expert-annotated first wrong step.

A record has `id`, `generator` (the model that wrote the solution), `problem`, `steps`
(list of strings), `final_answer_correct` (bool) and `label`: the 0-based index of the
first wrong step, or -1 if every step is right. The release is one JSON array per split
(`gsm8k.json`, `math.json`, `olympiadbench.json`, `omnimath.json`); JSONL is read too.

Reading: steps before `label` get hard label 1, the step at `label` 0, and the steps after
it None (ProcessBench says nothing about them); with label -1 every step is 1. Labels are
human (label_source "human") and also kept as meta gold_labels / gold_first_error (=
label). outcome_label = final_answer_correct; meta keeps generator.

Writing: label = the trace's first wrong step (`Trace.first_error()`): a trace whose
first wrong step cannot be told (an unknown label before any 0) is dropped and counted
in the `WriteReport`. final_answer_correct = outcome_label (null when unknown). Lost:
labels after the first error, soft labels, answers, verdicts, meta other than generator.
"""

from __future__ import annotations

import os
from typing import Any

from prm.errors import RecordError
from prm.formats.base import (
    WriteReport, gold_meta, read_rows, require, string_field, string_list, write_rows)
from prm.io import ReadReport
from prm.records import Step, Trace

SPLITS = ("gsm8k", "math", "olympiadbench", "omnimath")


def read_processbench(path: str | os.PathLike, *, skip_invalid: bool = False,
                      report: ReadReport | None = None, limit: int | None = None) -> list[Trace]:
    """Read a ProcessBench split (JSON array as released, JSONL, Parquet or `datasets` folder)."""
    return read_rows(path, lambda row, _: trace_from_processbench(row),
                     skip_invalid=skip_invalid, report=report, limit=limit)


def trace_from_processbench(row: Any) -> Trace:
    """One ProcessBench record as a trace."""
    require(row, "id", "problem", "steps", "label")
    texts = string_list(row, "steps")
    label = row["label"]
    if isinstance(label, bool) or not isinstance(label, int) or not -1 <= label < len(texts):
        raise RecordError(f"must be -1 or a 0-based step index below {len(texts)}, got {label!r}",
                          field="label")
    correct = row.get("final_answer_correct")
    if correct is not None and not isinstance(correct, bool):
        raise RecordError(f"must be true, false or null, got {correct!r}", field="final_answer_correct")
    labels = [1] * len(texts) if label == -1 else [1] * label + [0] + [None] * (len(texts) - label - 1)
    steps = [Step(text, hard_label=lab, label_source=None if lab is None else "human")
             for text, lab in zip(texts, labels)]
    meta = {"source": "processbench", **gold_meta(labels)}
    if row.get("generator") is not None:
        meta["generator"] = row["generator"]
    return Trace(id=str(row["id"]), problem=string_field(row, "problem"), steps=steps,
                 outcome_label=None if correct is None else int(correct), meta=meta)


def to_processbench_rows(traces: list[Trace], *, report: WriteReport | None = None) -> list[dict]:
    """ProcessBench records for `traces` (see the module docstring)."""
    report = report if report is not None else WriteReport()
    rows = []
    for trace in traces:
        first_error = trace.first_error()
        if first_error is None:
            report.dropped.append(f"{trace.id}: the first wrong step cannot be told "
                                  "(a step without a label comes before any wrong step)")
            continue
        rows.append({"id": trace.id, "generator": trace.meta.get("generator"),
                     "problem": trace.problem, "steps": trace.step_texts,
                     "final_answer_correct": None if trace.outcome_label is None
                     else bool(trace.outcome_label),
                     "label": first_error})
    report.written += len(rows)
    return rows


def write_processbench(path: str | os.PathLike, traces: list[Trace], *,
                       report: WriteReport | None = None) -> int:
    """Write traces as ProcessBench records (`.json` gives one array, as released)."""
    return write_rows(path, to_processbench_rows(traces, report=report))


def load_processbench_hub(split: str = "gsm8k") -> list[Trace]:
    """One ProcessBench split from the Hugging Face hub ("Qwen/ProcessBench"; needs internet)."""
    if split not in SPLITS:
        raise ValueError(f"ProcessBench split must be one of {SPLITS}, got {split!r}")
    import datasets

    table = datasets.load_dataset("Qwen/ProcessBench", split=split)
    return [trace_from_processbench(row) for row in table]
