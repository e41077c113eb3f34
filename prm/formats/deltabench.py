"""DeltaBench (OpenStellarTeam): long chains of thought split into sections, with human
annotations per section.

Written from the authors' release (github.com/OpenStellarTeam/DeltaBench, commit 6b67c64):
`evaluation.py` (which fields it reads and how it scores) and
`data/Deltabench_v1_examples.jsonl` (the record layout). No code was copied.

A record (one JSONL line of `Deltabench_v1.jsonl`) has `id`, `question`, `answer`,
`task_l1` (math, code, PCB, general), `task_l2`, `origin`, `long_cot`, and
`sections_content`: the long CoT with section headers ("section1:", "section2:", ... at the
start of a line; the authors' evaluator also accepts the key `section_content`). The
annotations name sections by their **1-based** number: `reason_error_section_numbers`
(a section with a reasoning error), `reason_unuseful_section_numbers` (useless reasoning),
`reflection_section_numbers`, `stragegy_shift_section_numbers` (sic), and per-section
`sections_labeled_info`.

Reading (one trace per record, one step per section, in order): the authors' evaluator
takes the union of the error and the unuseful sections as the sections a critic must name,
so those sections get hard label 0; other sections up to the last named one get 1; sections
after it get None, because the evaluator drops every prediction past the last named section
(they are never scored).

The hub copy (`OpenStellarTeam/DeltaBench`) now holds only `Deltabench_v1.csv`, where the
list fields are JSON text ("[2, 5]"); `.csv` files are read too and such text is parsed as
JSON (never evaluated). label_source "human"; gold meta (0-based) as for every format;
meta["error_sections"] keeps the union, 1-based as released, and meta["subset"] = task_l1
(the evaluator reports per task_l1). There is no writer.
"""

from __future__ import annotations

import csv
import itertools
import json
import os
import re
import sys
from pathlib import Path
from typing import Any

from prm.errors import RecordError
from prm.formats.base import gold_meta, read_rows, require, string_field, table_rows
from prm.io import ReadReport
from prm.records import Step, Trace

SECTION_HEADER = re.compile(r"(?:^|\n)[ \t]*section[ \t]*(\d+)[ \t]*:", re.IGNORECASE)
ERROR_FIELDS = ("reason_error_section_numbers", "reason_unuseful_section_numbers")


def read_deltabench(path: str | os.PathLike, *, skip_invalid: bool = False,
                    report: ReadReport | None = None, limit: int | None = None) -> list[Trace]:
    """Read a DeltaBench file (JSONL as released, the hub's CSV, JSON, Parquet or a `datasets` folder)."""
    if Path(path).suffix == ".csv":
        csv.field_size_limit(sys.maxsize)  # a long chain of thought is one cell
        with open(path, newline="", encoding="utf-8") as handle:
            rows = table_rows(csv.DictReader(handle), str(path), lambda row: trace_from_deltabench(row),
                              skip_invalid, report if report is not None else ReadReport())
            return list(itertools.islice(rows, limit))
    return read_rows(path, lambda row, _: trace_from_deltabench(row),
                     skip_invalid=skip_invalid, report=report, limit=limit)


def split_sections(text: str) -> list[str]:
    """The sections of `sections_content`, in order; their headers must count 1, 2, 3, ..."""
    headers = list(SECTION_HEADER.finditer(text))
    if not headers:
        raise RecordError("no 'section1:' header", field="sections_content")
    numbers = [int(h.group(1)) for h in headers]
    if numbers != list(range(1, len(numbers) + 1)):
        raise RecordError(f"section headers must count 1, 2, 3, ...; got {numbers[:6]}", field="sections_content")
    ends = [h.start() for h in headers[1:]] + [len(text)]
    return [text[h.end():end].strip() for h, end in zip(headers, ends)]


def _section_numbers(row: dict, name: str, count: int) -> list[int]:
    numbers = row.get(name) or []
    if isinstance(numbers, str):  # the CSV release
        try:
            numbers = json.loads(numbers)
        except ValueError:
            raise RecordError(f"not a JSON list of section numbers: {numbers[:40]!r}", field=name) from None
    if not isinstance(numbers, list) or not all(isinstance(n, int) and not isinstance(n, bool) for n in numbers):
        raise RecordError("must be a list of 1-based section numbers", field=name)
    wrong = [n for n in numbers if not 1 <= n <= count]
    if wrong:
        raise RecordError(f"section {wrong[0]} is not among the {count} sections (1-based)", field=name)
    return numbers


def trace_from_deltabench(row: Any) -> Trace:
    """One DeltaBench record as a trace (see the module docstring)."""
    require(row, "id", "question")
    key = "sections_content" if "sections_content" in row else "section_content"
    require(row, key)
    sections = split_sections(string_field(row, key))
    named = sorted({n for name in ERROR_FIELDS for n in _section_numbers(row, name, len(sections))})
    last = max(named, default=len(sections))
    labels: list[int | None] = [(0 if i + 1 in named else 1) if i + 1 <= last else None
                                for i in range(len(sections))]
    meta: dict[str, Any] = {"source": "deltabench", "subset": str(row.get("task_l1") or "unknown"),
                            "error_sections": named, **gold_meta(labels)}
    for name in ("task_l2", "origin", "error_type"):
        if row.get(name) is not None:
            meta[name] = row[name]
    answer = row.get("answer")
    return Trace(id=str(row["id"]), problem=string_field(row, "question"),
                 steps=[Step(text, hard_label=lab, label_source=None if lab is None else "human")
                        for text, lab in zip(sections, labels)],
                 reference_answer=answer if isinstance(answer, str) else None, meta=meta)


def load_deltabench_hub(name: str = "OpenStellarTeam/DeltaBench", split: str = "train") -> list[Trace]:
    """DeltaBench from the Hugging Face hub (needs internet)."""
    import datasets

    return [trace_from_deltabench(row) for row in datasets.load_dataset(name, split=split)]
