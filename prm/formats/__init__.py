"""Importers and exporters for published PRM data layouts, by name.

One module per layout (gsm8k, math500, trl, math_shepherd, prm800k, processbench,
prmbench) turns its rows into `Trace` records and, where the layout can hold a trace,
back. This registry maps a format name to its reader and writer so that `prm convert`
and `prm inspect` work on every format, and guesses a file's format from its fields.

    from prm.formats import read, write
    traces = read("../shared/data/prmbench-train")           # format guessed, all files
    write("train.jsonl", traces, "trl", soft=True)            # TRL PRMTrainer input
    read_dataset("trl-lib/math_shepherd", split="train")     # a hub dataset (or a local one)

Each reader takes `skip_invalid`, `report` (a `prm.io.ReadReport`) and `limit`; each
writer takes `report` (a `WriteReport`, which counts traces cut or dropped because the
target cannot hold them). Format-specific options are listed in `Format.read_options` /
`Format.write_options`. See docs/formats.md for the label mapping of each layout.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prm.errors import RecordError
from prm.formats.base import WriteReport, table_rows
from prm.formats.gsm8k import read_gsm8k, write_gsm8k
from prm.formats.math500 import read_math500, trace_from_math
from prm.formats.math_shepherd import read_math_shepherd, trace_from_math_shepherd, write_math_shepherd
from prm.formats.prm800k import read_prm800k, trace_from_prm800k
from prm.formats.prmbench import read_prmbench
from prm.formats.processbench import read_processbench, trace_from_processbench, write_processbench
from prm.formats.trl import read_trl, trace_from_trl, write_trl
from prm.io import ReadReport, parse_json, read_traces, write_traces
from prm.records import Trace

__all__ = ["FORMATS", "Format", "ReadReport", "WriteReport", "get_format", "guess_format",
           "read", "read_dataset", "write"]


def _read_native(path, *, skip_invalid=False, report=None, limit=None) -> list[Trace]:
    return read_traces(path, skip_invalid=skip_invalid, report=report)[:limit]


def _write_native(path, traces, *, report=None) -> int:
    count = write_traces(path, traces)
    if report is not None:
        report.written += count
    return count


def _write_gsm8k(path, traces, *, report=None) -> int:
    count = write_gsm8k(path, traces)
    if report is not None:
        report.written += count
    return count


@dataclass(frozen=True)
class Format:
    """A data layout: how to read it, how to write it, and which options each takes."""

    name: str
    description: str
    reader: Callable[..., list[Trace]] | None
    writer: Callable[..., int] | None
    read_options: tuple[str, ...] = ()
    write_options: tuple[str, ...] = ()


FORMATS: dict[str, Format] = {f.name: f for f in [
    Format("native", "this toolkit's trace records (JSONL, Parquet or datasets folder), lossless",
           _read_native, _write_native),
    Format("gsm8k", "GSM8K question/answer with `#### answer` (and the model-solutions file)",
           read_gsm8k, _write_gsm8k),
    Format("math500", "MATH problem/solution/answer; steps are sentences", read_math500, None),
    Format("trl", "TRL stepwise supervision: prompt, completions, labels (PRMTrainer input)",
           read_trl, write_trl, write_options=("soft", "unknown")),
    Format("math-shepherd", "Math-Shepherd input/label with ` ки` tags and +/- labels",
           read_math_shepherd, write_math_shepherd, write_options=("unknown",)),
    Format("prm800k", "PRM800K phase 1/2 human ratings -1/0/+1 per step", read_prm800k, None,
           read_options=("neutral",)),
    Format("processbench", "ProcessBench: id, generator, problem, steps, label = first wrong step",
           read_processbench, write_processbench),
    Format("prmbench", "PRMBench: modified_process with 1-based error_steps", read_prmbench, None,
           read_options=("include_original", "out_of_range")),
]}


def get_format(name: str) -> Format:
    try:
        return FORMATS[name]
    except KeyError:
        raise RecordError(f"unknown format {name!r}; known formats: {', '.join(FORMATS)}") from None


# -- guessing a file's format ---------------------------------------------------------------

def guess_format(path: str | os.PathLike) -> str:
    """The format of a file or folder, told from the fields of its first record."""
    fields, first = _first_record(Path(path))
    name = _format_of(fields, first)
    if name is None:
        raise RecordError(f"cannot tell the format from the fields {sorted(fields)}; "
                          f"name it (one of {', '.join(FORMATS)})", path=str(path))
    return name


def _format_of(fields: set[str], first: dict[str, Any]) -> str | None:
    if {"modified_process", "error_steps"} <= fields:
        return "prmbench"
    if {"prompt", "completions"} <= fields:
        return "trl"
    if "input" in fields and ("label" in fields or " ки" in str(first.get("input", ""))):
        return "math-shepherd"
    if {"question", "label"} <= fields and isinstance(first.get("label"), dict):
        return "prm800k"
    if {"id", "problem", "steps", "label"} <= fields:
        return "processbench"
    if {"id", "problem", "steps"} <= fields:
        return "native"
    if "question" in fields and fields & {"answer", "ground_truth"}:
        return "gsm8k"
    if {"problem", "solution"} <= fields:
        return "math500"
    return None


def _first_record(path: Path) -> tuple[set[str], dict[str, Any]]:
    if not path.exists():
        raise RecordError("no such file or folder", path=str(path))
    if path.is_dir() and not _is_dataset_dir(path):
        files = _data_files(path)
        if not files:
            raise RecordError("folder holds no .jsonl/.json files and is not a datasets folder",
                              path=str(path))
        return _first_record(files[0])
    if path.is_dir() or path.suffix == ".parquet":
        import datasets

        table = (datasets.load_from_disk(str(path)) if path.is_dir()
                 else datasets.Dataset.from_parquet(str(path)))
        if isinstance(table, datasets.DatasetDict):
            raise RecordError(f"holds several splits {list(table)}; pass one split's folder",
                              path=str(path))
        first = table[0] if len(table) else {}
        return set(table.column_names), first
    first = _first_json_value(path)
    if not isinstance(first, dict):
        raise RecordError("the first record is not a JSON object", path=str(path), line=1)
    return set(first), first


def _first_json_value(path: Path) -> Any:
    """The first record of a JSON array, or the first parsable line of a JSONL file (a bad
    line before it is left for the reader to report, or skip, with its line number)."""
    with open(path, "rb") as handle:
        head = handle.read(64).lstrip()
    if head.startswith(b"["):
        try:
            items = parse_json(path.read_bytes())
        except RecordError as err:
            raise RecordError(f"not a readable JSON array: {err.reason}", path=str(path)) from None
        return items[0] if items else {}
    first_error = None
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            try:
                return parse_json(raw)
            except RecordError as err:
                first_error = first_error or RecordError(
                    f"cannot tell the format: not a JSON record ({err.reason})", path=str(path), line=number)
            if number >= 100:
                break
    if first_error is not None:
        raise first_error
    return {}


def _blank(path: Path) -> bool:
    """Whether `path` is a file holding nothing but white space."""
    if not path.is_file() or path.stat().st_size > 1 << 16:
        return False
    return not path.read_bytes().strip()


def _is_dataset_dir(path: Path) -> bool:
    return (path / "dataset_info.json").exists() or (path / "state.json").exists() \
        or (path / "dataset_dict.json").exists()


def _data_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix in (".jsonl", ".json", ".parquet")
                  and not p.name.startswith("."))


# -- reading and writing by name ------------------------------------------------------------

def read(path: str | os.PathLike, format: str | None = None, *, skip_invalid: bool = False,
         report: ReadReport | None = None, limit: int | None = None, keep_duplicates: bool = False,
         **options) -> list[Trace]:
    """Read traces from a file or folder in the named format (guessed when None).

    A folder that is not a `datasets` folder is read file by file (its .jsonl/.json/
    .parquet files in name order), e.g. the eight PRMBench files at once. Two traces with
    the same id (in one file or across the files of a folder) are an error naming the file
    and line of the second, unless `keep_duplicates`.
    """
    path = Path(path)
    if format is None and _blank(path):
        return []  # an empty input holds no traces whatever its format: nothing to guess from
    name = format or guess_format(path)
    fmt = get_format(name)
    if fmt.reader is None:
        raise RecordError(f"format {name!r} cannot be read")
    _check_options(fmt, options, fmt.read_options, "reading")
    report = report if report is not None else ReadReport()
    report.keep_duplicates = report.keep_duplicates or keep_duplicates
    if path.is_dir() and not _is_dataset_dir(path):
        traces: list[Trace] = []
        for file in _data_files(path):
            left = None if limit is None else limit - len(traces)
            if left is not None and left <= 0:
                break
            traces += fmt.reader(file, skip_invalid=skip_invalid, report=report, limit=left, **options)
        return traces
    return fmt.reader(path, skip_invalid=skip_invalid, report=report, limit=limit, **options)


# Formats whose rows convert one at a time, as `datasets.load_dataset` yields them:
# (row, row id) -> Trace.
ROW_READERS: dict[str, Callable[[Any, str], Trace]] = {
    "native": lambda row, _id: Trace.from_dict(row),
    "trl": trace_from_trl,
    "math-shepherd": trace_from_math_shepherd,
    "processbench": lambda row, _id: trace_from_processbench(row),
    "prm800k": trace_from_prm800k,
    "math500": lambda row, trace_id: trace_from_math(row, trace_id),
}


def read_dataset(name: str, split: str = "train", format: str | None = None, *, skip_invalid: bool = False,
                 report: ReadReport | None = None, keep_duplicates: bool = False) -> list[Trace]:
    """Read one split of a Hugging Face dataset: what `datasets.load_dataset(name, split=split)`
    reads (a hub name such as "trl-lib/math_shepherd", or a local folder of data files whose
    names give the splits, e.g. train.jsonl and test.jsonl), or a folder saved by
    `DatasetDict.save_to_disk`. The format is guessed from the columns when not named. Errors
    name the dataset, the split and the 1-based row. Ids are `<format>-<name>-<split>-<row>`
    where the layout has none."""
    import datasets

    where = f"{name} (split {split})"
    path = Path(name)
    try:
        if (path / "dataset_dict.json").exists():
            splits = datasets.load_from_disk(str(path))
            if split not in splits:
                raise RecordError(f"has no split {split!r}; its splits: {', '.join(splits)}", path=name)
            table = splits[split]
        elif _is_dataset_dir(path):
            table = datasets.load_from_disk(str(path))
        else:
            table = datasets.load_dataset(name, split=split)
    except (FileNotFoundError, ValueError, ConnectionError, OSError) as err:
        if isinstance(err, RecordError):
            raise
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RecordError(f"cannot load dataset split {split!r}: {first_line}", path=name) from None
    first = table[0] if len(table) else {}
    name_of_format = format or _format_of(set(table.column_names), first)
    if name_of_format not in ROW_READERS:
        known = ", ".join(ROW_READERS)
        raise RecordError(f"cannot read its columns {sorted(table.column_names)} as one of {known}"
                          if format is None else f"format {format!r} cannot be read row by row; "
                          f"formats that can: {known}", path=where)
    convert = ROW_READERS[name_of_format]
    slug = name.rstrip("/").replace("/", "_")
    counter = iter(range(len(table)))
    report = report if report is not None else ReadReport()
    report.keep_duplicates = report.keep_duplicates or keep_duplicates
    return list(table_rows(table, where,
                           lambda row: convert(row, f"{name_of_format}-{slug}-{split}-{next(counter)}"),
                           skip_invalid, report))


def write(path: str | os.PathLike, traces: list[Trace], format: str = "native", *,
          report: WriteReport | None = None, **options) -> int:
    """Write traces in the named format: `.jsonl`, `.json`, `.parquet`, or a `datasets`
    folder for any other path. Returns the number of records written."""
    fmt = get_format(format)
    if fmt.writer is None:
        writable = [f.name for f in FORMATS.values() if f.writer is not None]
        raise RecordError(f"format {format!r} cannot be written; writable formats: "
                          f"{', '.join(writable)}")
    _check_options(fmt, options, fmt.write_options, "writing")
    return fmt.writer(path, traces, report=report, **options)


def _check_options(fmt: Format, options: dict, allowed: tuple[str, ...], doing: str) -> None:
    extra = sorted(set(options) - set(allowed))
    if extra:
        raise RecordError(f"option(s) {extra} do not apply to {doing} {fmt.name!r} "
                          f"(it takes: {', '.join(allowed) or 'no options'})")
