"""Reading and writing trace records: JSONL (one record a line) and Hugging Face `datasets`.

JSONL is the native text format; a `datasets` folder (Arrow, from `save_to_disk`) or a
Parquet file is the native columnar one. Both round-trip a `Trace` losslessly: unknown
labels stay null, soft labels stay float64, `meta` is kept as a JSON string column so
that any JSON value survives Arrow's fixed schema.

Readers never drop a record silently: a bad line raises `RecordError` naming the file,
line and field, unless `skip_invalid=True`, in which case the skipped lines are reported
through the returned `ReadReport`.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prm.errors import RecordError
from prm.records import Trace


@dataclass
class ReadReport:
    """What a tolerant read skipped, and why (one `RecordError` per skipped record)."""

    read: int = 0
    skipped: list[RecordError] = field(default_factory=list)

    def summary(self) -> str:
        text = f"read {self.read} record(s), skipped {len(self.skipped)}"
        return text + "".join(f"\n  {err}" for err in self.skipped[:20])


def iter_json_lines(path: str | os.PathLike, *, skip_invalid: bool = False,
                    report: ReadReport | None = None) -> Iterator[tuple[int, Any]]:
    """Yield (line number, parsed JSON value) for each non-blank line of a JSONL file.

    Non-UTF-8 bytes or malformed JSON raise `RecordError` with the line number, or, with
    `skip_invalid`, are recorded in `report` and skipped.
    """
    path = str(path)
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                value = _parse_line(raw)
            except RecordError as err:
                located = err.located(path=path, line=number)
                if not skip_invalid:
                    raise located from None
                if report is not None:
                    report.skipped.append(located)
                continue
            if value is not _BLANK:
                yield number, value


_BLANK = object()


def _parse_line(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RecordError(f"not valid UTF-8 ({err.reason} at byte {err.start})") from None
    if not text.strip():
        return _BLANK
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RecordError(f"malformed JSON: {err.msg} at column {err.colno}") from None


def read_records(path: str | os.PathLike, convert: Callable[[Any], Trace | list[Trace]],
                 *, skip_invalid: bool = False, report: ReadReport | None = None) -> Iterator[Trace]:
    """Yield traces from a JSON-lines file (or a file holding one JSON array) through `convert`.

    `convert` turns one parsed JSON value into one trace (or a list of them); any
    `RecordError` it raises is given this file's name and line (the item's 1-based index
    for a JSON array). Every importer reads through this function.
    """
    path = str(path)
    report = report if report is not None else ReadReport()
    if not os.path.exists(path):
        raise RecordError("no such file", path=path)
    for number, value in _iter_values(path, skip_invalid, report):
        try:
            result = convert(value)
        except RecordError as err:
            located = err.located(path=path, line=number)
            if not skip_invalid:
                raise located from None
            report.skipped.append(located)
            continue
        for trace in result if isinstance(result, list) else [result]:
            report.read += 1
            yield trace


def _iter_values(path: str, skip_invalid: bool, report: ReadReport) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as handle:
        head = handle.read(64).lstrip()
    if not head.startswith(b"["):
        yield from iter_json_lines(path, skip_invalid=skip_invalid, report=report)
        return
    try:
        items = json.loads(Path(path).read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise RecordError(f"malformed JSON array: {err}", path=path) from None
    yield from enumerate(items, start=1)


# -- native traces ------------------------------------------------------------------------

def read_traces(path: str | os.PathLike, *, skip_invalid: bool = False,
                report: ReadReport | None = None) -> list[Trace]:
    """Read native traces from a JSONL file, a `datasets` folder or a Parquet file."""
    path = Path(path)
    if path.is_dir():
        return from_dataset(_load_dataset_dir(path))
    if path.suffix == ".parquet":
        import datasets

        return from_dataset(datasets.Dataset.from_parquet(str(path)))
    return list(read_records(path, Trace.from_dict, skip_invalid=skip_invalid, report=report))


def write_traces(path: str | os.PathLike, traces: Iterable[Trace]) -> int:
    """Write traces atomically: to JSONL, a `datasets` folder (no suffix) or Parquet.

    The file appears complete or not at all: it is written to a temporary name first.
    """
    path = Path(path)
    traces = list(traces)
    if path.suffix in (".jsonl", ".json"):
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_write(path) as handle:
            for trace in traces:
                handle.write(dumps(trace) + "\n")
    elif path.suffix == ".parquet":
        path.parent.mkdir(parents=True, exist_ok=True)
        to_dataset(traces).to_parquet(str(path))
    else:
        to_dataset(traces).save_to_disk(str(path))
    return len(traces)


def dumps(trace: Trace) -> str:
    """One trace as one line of JSON (non-ASCII kept as is)."""
    return json.dumps(trace.to_dict(), ensure_ascii=False)


class atomic_write:
    """Context manager: write text to a temporary file beside `path`, then rename it into place."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __enter__(self):
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        self.handle = os.fdopen(fd, "w", encoding="utf-8")
        return self.handle

    def __exit__(self, exc_type, exc, tb):
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
        else:
            os.unlink(self.tmp)
        return False


# -- Hugging Face datasets ----------------------------------------------------------------

def trace_features():
    """The explicit Arrow schema of a trace (so empty or all-null columns keep their types)."""
    from datasets import Features, List, Value

    verdict = {"checker": Value("string"), "status": Value("string"), "claim": Value("string"),
               "evidence": Value("string"), "backend": Value("string"),
               "seconds": Value("float64")}
    rollouts = {"correct": Value("int64"), "total": Value("int64"),
                "answers": List(Value("string")), "tokens": Value("int64"),
                "seconds": Value("float64"), "texts": List(Value("string"))}
    step = {"text": Value("string"), "hard_label": Value("int8"), "soft_label": Value("float64"),
            "label_source": Value("string"), "verdicts": List(verdict), "rollouts": rollouts,
            "score": Value("float64")}
    return Features({"id": Value("string"), "problem": Value("string"), "steps": List(step),
                     "final_answer": Value("string"), "reference_answer": Value("string"),
                     "outcome_label": Value("int8"), "meta": Value("string")})


def to_dataset(traces: Iterable[Trace]):
    """Traces as a `datasets.Dataset` with the schema of `trace_features()`."""
    import datasets

    rows = []
    for trace in traces:
        row = trace.to_dict()
        row["meta"] = json.dumps(row["meta"], ensure_ascii=False, sort_keys=True)
        rows.append(row)
    return datasets.Dataset.from_list(rows, features=trace_features())


def from_dataset(dataset) -> list[Trace]:
    """Traces back from a `datasets.Dataset` made by `to_dataset`."""
    traces = []
    for number, row in enumerate(dataset, start=1):
        row = dict(row)
        row["meta"] = json.loads(row["meta"]) if row.get("meta") else {}
        for step in row["steps"]:
            rollouts = step.get("rollouts")
            # Arrow stores a missing struct as a struct of nulls.
            if rollouts is not None and rollouts.get("total") is None:
                step["rollouts"] = None
        try:
            traces.append(Trace.from_dict(row))
        except RecordError as err:
            raise err.located(line=number) from None
    return traces


def _load_dataset_dir(path: Path):
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        raise RecordError(f"holds several splits {list(loaded)}; pass one split's folder",
                          path=str(path))
    return loaded
