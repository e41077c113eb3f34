"""What every format module shares: reading foreign rows into traces, writing rows out.

A format module knows how one published layout maps to `Trace` (a `convert` function for
one row, a `to_rows` function for the way back). Everything about files lives here, so each
format reads JSONL, a JSON array, Parquet or a `datasets` folder the same way and every
bad row is reported with its file, line (or row) and field.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prm.errors import RecordError
from prm.io import ReadReport, atomic_path, atomic_write, read_records
from prm.records import Trace


@dataclass
class WriteReport:
    """What an exporter could not write exactly: records dropped or cut, and why."""

    written: int = 0
    dropped: list[str] = field(default_factory=list)  # one reason per dropped trace
    cut: list[str] = field(default_factory=list)  # one reason per shortened trace

    def summary(self) -> str:
        """One line of counts."""
        text = f"wrote {self.written} record(s)"
        if self.cut:
            text += f", cut {len(self.cut)} before their first unlabeled step"
        if self.dropped:
            text += f", dropped {len(self.dropped)}"
        return text

    def details(self, most: int = 20) -> list[str]:
        """Why traces were cut or dropped, one line each (the first `most`)."""
        reasons = [f"cut {reason}" for reason in self.cut] + \
                  [f"dropped {reason}" for reason in self.dropped]
        extra = [f"... and {len(reasons) - most} more"] if len(reasons) > most else []
        return reasons[:most] + extra


def read_rows(path: str | os.PathLike, convert: Callable[[Any, int], Trace | list[Trace]], *,
              skip_invalid: bool = False, report: ReadReport | None = None,
              limit: int | None = None) -> list[Trace]:
    """Read a file of foreign rows into traces through `convert(row, index)`.

    `index` is the 0-based position of the row in the file (used for stable ids). JSONL
    and JSON arrays go through `prm.io.read_records` (errors name file and line); Parquet
    files and `datasets` folders name the 1-based row instead. `limit` stops after that
    many traces, so big files can be sampled quickly.
    """
    path = Path(path)
    report = report if report is not None else ReadReport()
    counter = itertools.count()

    def indexed(row: Any) -> Trace | list[Trace]:
        return convert(row, next(counter))

    if path.is_dir() or path.suffix == ".parquet":
        traces = _read_table(path, indexed, skip_invalid, report)
    else:
        traces = read_records(path, indexed, skip_invalid=skip_invalid, report=report)
    return list(itertools.islice(traces, limit))


def _read_table(path: Path, convert, skip_invalid: bool, report: ReadReport) -> Iterator[Trace]:
    import datasets

    if path.is_dir():
        table = datasets.load_from_disk(str(path))
        if isinstance(table, datasets.DatasetDict):
            raise RecordError(f"holds several splits {list(table)}; pass one split's folder "
                              "(prm train: --split NAME)", path=str(path))
    else:
        table = datasets.Dataset.from_parquet(str(path))
    return table_rows(table, str(path), convert, skip_invalid, report)


def table_rows(table, where: str, convert, skip_invalid: bool, report: ReadReport) -> Iterator[Trace]:
    """Traces from the rows of a `datasets.Dataset` through `convert(row)`; errors name `where`
    (a file, or a dataset name and split) and the 1-based row."""
    for number, row in enumerate(table, start=1):
        try:
            result = convert(row)
        except RecordError as err:
            located = err.located(path=where, line=number)
            if not skip_invalid:
                raise located from None
            report.skipped.append(located)
            continue
        for trace in result if isinstance(result, list) else [result]:
            if report.accept(trace, where, number, skip_invalid):
                yield trace


def write_rows(path: str | os.PathLike, rows: Iterable[dict[str, Any]], *,
               ensure_ascii: bool = False) -> int:
    """Write plain rows atomically: `.jsonl` (one a line), `.json` (one array), `.parquet`,
    or anything else as a `datasets` folder (`save_to_disk`).

    `ensure_ascii` writes non-ASCII characters as `\\uXXXX` escapes, as some releases do.
    """
    path = Path(path)
    rows = list(rows)
    if path.suffix in (".jsonl", ".json", ".parquet"):
        path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        with atomic_write(path) as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=ensure_ascii) + "\n")
    elif path.suffix == ".json":
        with atomic_write(path) as handle:
            json.dump(rows, handle, ensure_ascii=ensure_ascii, indent=1)
            handle.write("\n")
    else:
        import datasets

        table = datasets.Dataset.from_list(rows)
        with atomic_path(path, folder=path.suffix != ".parquet") as tmp:  # complete or absent
            if path.suffix == ".parquet":
                table.to_parquet(str(tmp))
            else:
                table.save_to_disk(str(tmp))
    return len(rows)


# -- small checks shared by the converters -------------------------------------------------

def require(row: Any, *names: str) -> None:
    """Raise `RecordError` naming the first missing field (or a non-object row)."""
    if not isinstance(row, dict):
        raise RecordError(f"a record must be a JSON object, got {type(row).__name__}")
    for name in names:
        if name not in row or row[name] is None:
            raise RecordError("missing required field", field=name)


def string_field(row: dict, name: str) -> str:
    value = row.get(name)
    if not isinstance(value, str):
        raise RecordError(f"must be a string, got {type(value).__name__}", field=name)
    return value


def string_list(row: dict, name: str) -> list[str]:
    """A non-empty list of strings (the steps of a solution)."""
    value = row.get(name)
    if not isinstance(value, list):
        raise RecordError(f"must be a list of strings, got {type(value).__name__}", field=name)
    if not value:
        raise RecordError("empty step list", field=name)
    for i, item in enumerate(value):
        if not isinstance(item, str):
            raise RecordError(f"must be a string, got {type(item).__name__}", field=f"{name}[{i}]")
    return value


def check_length(values: list, steps: list, name: str) -> None:
    if len(values) != len(steps):
        raise RecordError(f"{len(values)} labels for {len(steps)} steps", field=name)


def gold_meta(labels: list[int | None]) -> dict[str, Any]:
    """meta["gold_labels"] and meta["gold_first_error"] for known gold step labels.

    gold_first_error is the 0-based first wrong step, -1 if none; it is omitted when an
    unknown label comes before the first wrong step (then it cannot be told).
    """
    meta: dict[str, Any] = {"gold_labels": list(labels)}
    for i, label in enumerate(labels):
        if label is None:
            return meta
        if label == 0:
            meta["gold_first_error"] = i
            return meta
    meta["gold_first_error"] = -1
    return meta


UNKNOWN_POLICIES = ("cut", "drop")


def exportable_steps(trace: Trace, labels: list, unknown: str, report: WriteReport) -> int:
    """How many leading steps of `trace` a target without an "unknown" label can hold.

    `labels` are the values to export (None = unknown). unknown="cut" keeps the steps
    before the first unknown label (the trace is cut there), unknown="drop" drops any trace
    with an unknown label. Returns 0 for a dropped trace; every cut or drop is recorded
    in `report` with its reason, never silently.
    """
    if unknown not in UNKNOWN_POLICIES:
        raise ValueError(f"unknown must be one of {UNKNOWN_POLICIES}, got {unknown!r}")
    first_unknown = next((i for i, label in enumerate(labels) if label is None), None)
    if first_unknown is None:
        return len(labels)
    if unknown == "drop" or first_unknown == 0:
        report.dropped.append(f"{trace.id}: step {first_unknown} has no label")
        return 0
    report.cut.append(f"{trace.id}: kept {first_unknown} of {len(labels)} steps "
                      f"(step {first_unknown} has no label)")
    return first_unknown
