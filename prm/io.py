"""Reading and writing trace records: JSONL (one record a line) and Hugging Face `datasets`.

JSONL is the native text format; a `datasets` folder (Arrow, from `save_to_disk`) or a
Parquet file is the native columnar one. Both round-trip a `Trace` losslessly: unknown
labels stay null, soft labels stay float64, `meta` is kept as a JSON string column so
that any JSON value survives Arrow's fixed schema.

Readers never drop a record silently: a bad line raises `RecordError` naming the file,
line and field, unless `skip_invalid=True`, in which case the skipped lines are reported
through the returned `ReadReport`. A record whose id was already read is such a bad line
(unless `keep_duplicates=True`); so are NaN/Infinity (not JSON) and JSON nested too deeply.

Writers are atomic (JSONL, Parquet and `datasets` folders appear complete or not at all)
and give files the user's usual mode. A `datasets` folder replaces only an empty folder or
one prm wrote (`check_output`): a folder holding anything else is refused, never emptied. `output_lock(path)` keeps a second run from writing
the same output; `read_finished(path)` reads an output appended one trace at a time, dropping
a torn last line. `ResumableOutput` is that output for every command that writes traces as
it goes: lock, torn-line repair, resume checks, fsync policy and the `.partial` file.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import stat
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prm.errors import RecordError
from prm.records import Trace


@dataclass
class ReadReport:
    """What a tolerant read skipped, and why (one `RecordError` per skipped record).

    It also remembers where each trace id was first read, so that a second record with the
    same id (in the same file, or in another file read with the same report) is an error
    naming both places, unless `keep_duplicates` is set.
    """

    read: int = 0
    skipped: list[RecordError] = field(default_factory=list)
    keep_duplicates: bool = False
    first_seen: dict[str, str] = field(default_factory=dict, repr=False)

    def duplicate(self, trace: Trace, path: str, line: int) -> RecordError | None:
        """The error for `trace` if its id was read before (None if new, or if duplicates are kept)."""
        if self.keep_duplicates:
            return None
        where = self.first_seen.get(trace.id)
        if where is None:
            self.first_seen[trace.id] = f"{path} line {line}"
            return None
        return RecordError(f"duplicate id {trace.id!r} (first at {where}); ids must be unique: "
                           "remove or rename one (`prm convert` and `prm inspect` keep both with "
                           "--keep-duplicates)", path=path, line=line, field="id")

    def accept(self, trace: Trace, path: str, line: int, skip_invalid: bool) -> bool:
        """Count `trace` as read, or refuse it as a duplicate (raise, or skip and record)."""
        error = self.duplicate(trace, path, line)
        if error is not None:
            if not skip_invalid:
                raise error
            self.skipped.append(error)
            return False
        self.read += 1
        return True

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
    return parse_json(text)


def parse_json(text: str | bytes) -> Any:
    """One JSON value, strictly: malformed JSON, invalid UTF-8, `NaN`/`Infinity` (not JSON)
    and nesting too deep for Python's parser all raise `RecordError` (without a location:
    the caller adds the file and line)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as err:
            raise RecordError(f"not valid UTF-8 ({err.reason} at byte {err.start})") from None
    try:
        return json.loads(text, parse_constant=_refuse_constant)
    except json.JSONDecodeError as err:
        message = err.msg.removesuffix(" at")  # "Unterminated string starting at": one "at"
        raise RecordError(f"malformed JSON: {message} at line {err.lineno} column {err.colno}"
                          if err.lineno > 1 else f"malformed JSON: {message} at column {err.colno}") from None
    except RecursionError:
        raise RecordError("JSON nested too deeply to read") from None


def _refuse_constant(name: str) -> Any:
    raise RecordError(f"{name} is not a JSON value (write null)")


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
    if os.path.isdir(path):
        raise RecordError("is a folder; give a file", path=path)
    for number, value in _iter_values(path, skip_invalid, report):
        try:
            result = convert(value)
        except RecordError as err:
            located = err.located(path=path, line=number)
            if not skip_invalid:
                raise located from None
            report.skipped.append(located)
            continue
        except RecursionError:  # a value nested too deeply to convert
            located = RecordError("nested too deeply to read", path=path, line=number)
            if not skip_invalid:
                raise located from None
            report.skipped.append(located)
            continue
        for trace in result if isinstance(result, list) else [result]:
            if report.accept(trace, path, number, skip_invalid):
                yield trace


def _iter_values(path: str, skip_invalid: bool, report: ReadReport) -> Iterator[tuple[int, Any]]:
    with open(path, "rb") as handle:
        head = handle.read(64).lstrip()
    if not head.startswith(b"["):
        yield from iter_json_lines(path, skip_invalid=skip_invalid, report=report)
        return
    try:
        items = parse_json(Path(path).read_bytes())
    except RecordError as err:
        raise RecordError(f"not a readable JSON array: {err.reason}", path=path) from None
    yield from enumerate(items, start=1)


# -- native traces ------------------------------------------------------------------------

def read_finished(path: str | os.PathLike, *, repair: bool = False) -> tuple[list[Trace], int]:
    """The finished traces of a JSONL output appended to one trace at a time (`prm annotate`,
    `prm score`'s partial file), and the size in bytes of a torn last line (0 if none). With
    `repair` the torn line is cut off the file, so that appending can go on after it.

    A torn line is a last line without its newline: the process died while writing it. Any
    other bad line is an error (`RecordError` with the line), never skipped; so is an id that
    appears twice.
    """
    path = Path(path)
    if not path.exists():
        return [], 0
    data = path.read_bytes()
    keep = data.rfind(b"\n") + 1
    torn = len(data) - keep
    if torn and repair:
        with open(path, "r+b") as handle:
            handle.truncate(keep)
            handle.flush()
            os.fsync(handle.fileno())
    traces = []
    report = ReadReport()
    for number, raw in enumerate(data[:keep].split(b"\n")[:-1], start=1):
        if not raw.strip():
            continue
        try:
            trace = Trace.from_dict(parse_json(raw))
        except RecordError as err:
            raise err.located(path=str(path), line=number) from None
        if report.accept(trace, str(path), number, skip_invalid=False):
            traces.append(trace)
    return traces, torn


def read_traces(path: str | os.PathLike, *, skip_invalid: bool = False,
                report: ReadReport | None = None, keep_duplicates: bool = False) -> list[Trace]:
    """Read native traces from a JSONL file, a `datasets` folder or a Parquet file.

    Two records with the same id are an error naming the second one's line (or row), unless
    `keep_duplicates`.
    """
    path = Path(path)
    report = report if report is not None else ReadReport()
    report.keep_duplicates = report.keep_duplicates or keep_duplicates
    if not path.exists():
        raise RecordError("no such file or folder", path=str(path))
    if path.is_dir():
        if not is_dataset_dir(path):
            raise RecordError("is a folder but not a `datasets` folder (no dataset_info.json or "
                              "state.json); give a file of traces, or a folder saved by `datasets`",
                              path=str(path))
        return from_dataset(_load_dataset_dir(path), path=str(path), report=report)
    if path.suffix == ".parquet":
        return from_dataset(_load_parquet(path), path=str(path), report=report)
    return list(read_records(path, Trace.from_dict, skip_invalid=skip_invalid, report=report))


def is_dataset_dir(path: str | os.PathLike) -> bool:
    """Whether a folder was written by `datasets` (`save_to_disk`)."""
    path = Path(path)
    return path.is_dir() and any((path / name).exists() for name in
                                 ("dataset_info.json", "state.json", "dataset_dict.json"))


def write_traces(path: str | os.PathLike, traces: Iterable[Trace]) -> int:
    """Write traces atomically: to JSONL, a `datasets` folder (no suffix) or Parquet.

    The file (or folder) appears complete or not at all: it is written under a temporary
    name beside it first, then renamed into place.
    """
    path = Path(path)
    traces = list(traces)
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix in (".jsonl", ".json"):
        with atomic_write(path) as handle:
            for trace in traces:
                handle.write(dumps(trace) + "\n")
    elif path.suffix == ".parquet":
        with atomic_path(path) as tmp:
            to_dataset(traces).to_parquet(str(tmp))
    else:
        with atomic_path(path, folder=True) as tmp:
            to_dataset(traces).save_to_disk(str(tmp))
    return len(traces)


def dumps(trace: Trace) -> str:
    """One trace as one line of JSON (non-ASCII kept as is). A NaN or infinite number is
    refused (`RecordError` naming the trace and field): it is not JSON."""
    data = trace.to_dict()
    try:
        return json.dumps(data, ensure_ascii=False, allow_nan=False)
    except ValueError:
        raise RecordError(f"trace {trace.id!r} holds {_non_finite(data)}, which JSON cannot hold",
                          field=_non_finite_field(data)) from None


def _non_finite_field(value: Any, where: str = "") -> str | None:
    """The dotted path of the first NaN/infinite number in a JSON-like value."""
    if isinstance(value, float) and not math.isfinite(value):
        return where or "(the record)"
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, item in items:
        found = _non_finite_field(item, f"{where}[{key}]" if isinstance(key, int) else
                                  f"{where}.{key}" if where else str(key))
        if found is not None:
            return found
    return None


def _non_finite(data: Any) -> str:
    field_name = _non_finite_field(data)
    return f"a NaN or infinite number at {field_name}" if field_name else "a NaN or infinite number"


def default_file_mode() -> int:
    """The mode a new file gets from the user's umask (0o666 & ~umask), as `open` would give."""
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no other way to read it; set back at once
    os.umask(mask)
    return 0o666 & ~mask


def _target_mode(path: Path) -> int:
    """The mode to give a file replacing `path`: its own if it exists, else the umask's."""
    try:
        return stat.S_IMODE(path.stat().st_mode)
    except OSError:
        return default_file_mode()


class atomic_write:
    """Context manager: write text to a temporary file beside `path`, then rename it into place.

    The file gets the mode `path` already had, or the user's default (umask) for a new one
    (not the 0600 of a temporary file). On an exception the temporary file is removed and
    `path` is left as it was.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)

    def __enter__(self):
        check_output(self.path, file=True)  # always a file, whatever its suffix (report.md, summary.json)
        fd, self.tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        os.fchmod(fd, _target_mode(self.path))
        self.handle = os.fdopen(fd, "w", encoding="utf-8")
        return self.handle

    def __exit__(self, exc_type, exc, tb):
        self.handle.flush()
        os.fsync(self.handle.fileno())
        self.handle.close()
        if exc_type is None:
            os.replace(self.tmp, self.path)
            sync_dir(self.path.parent)
        else:
            os.unlink(self.tmp)
        return False


# -- what an output may replace ------------------------------------------------------------------

# Written into every `datasets` folder this toolkit saves (`atomic_path(folder=True)`): only a
# folder holding it (and nothing but a saved dataset) may later be replaced by another one.
OUTPUT_MARKER = ".prm-output.json"
FILE_SUFFIXES = (".jsonl", ".json", ".parquet")


def is_folder_output(path: str | os.PathLike) -> bool:
    """Whether writing traces (or rows) to `path` makes a `datasets` folder: any path that
    is not `.jsonl`, `.json` or `.parquet`."""
    return Path(path).suffix not in FILE_SUFFIXES


def _is_saved_dataset_file(name: str) -> bool:
    return name in (OUTPUT_MARKER, "dataset_info.json", "state.json", "dataset_dict.json") or (
        name.startswith("data-") and name.endswith(".arrow"))


def check_output(path: str | os.PathLike, *, file: bool = False) -> None:
    """Refuse, before any work, an output whose writing would destroy something.

    A `datasets` folder (any path not `.jsonl`/`.json`/`.parquet`) replaces the folder at
    `path` as a whole, so it may only replace an empty folder or a dataset this toolkit saved
    there (it holds `OUTPUT_MARKER` and nothing but the files `save_to_disk` writes). Any other
    folder (one holding the user's files, the current folder, a folder holding the input) is
    refused with a `RecordError` and left untouched; so is a file output naming a folder, a
    folder output naming a file, and the current folder or one of its parents.
    """
    path = Path(path)
    resolved = path.resolve()
    cwd = Path.cwd().resolve()
    if resolved == cwd or resolved in cwd.parents:
        raise RecordError("is the current folder (or holds it); give a new file or folder name "
                          "for the output", path=str(path))
    if not path.exists():
        return
    if file or not is_folder_output(path):
        if path.is_dir():
            raise RecordError("is a folder; this output is a file: give a file name",
                              path=str(path))
        return
    if not path.is_dir():
        raise RecordError("is a file; a `datasets` folder (an output without a .jsonl, .json or "
                          ".parquet suffix) cannot replace it: choose another output", path=str(path))
    entries = sorted(entry.name for entry in path.iterdir())
    if not entries:
        return
    if OUTPUT_MARKER not in entries:
        raise RecordError(f"is a folder holding other files ({_listing(entries)}); a `datasets` "
                          "output replaces its whole folder, so it is written only to a new or "
                          "empty folder, or over a dataset prm wrote: choose another output",
                          path=str(path))
    foreign = [name for name in entries if not _is_saved_dataset_file(name)]
    if foreign:
        raise RecordError(f"is a dataset prm wrote, but it now also holds {_listing(foreign)}; "
                          "move those files away or choose another output", path=str(path))


def _listing(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def refuse_output_over_inputs(out: str | os.PathLike, inputs: Iterable[str | os.PathLike | None]) -> None:
    """Refuse, before any work, an output that is one of the command's inputs: writing it would
    destroy that input (`prm view in.jsonl --out in.jsonl`). The same file or folder under another
    name counts (a symlink either way, `..`, a hard link). Inputs that are None or do not exist
    on disk (a hub name, a scorer spec) cannot be lost and are skipped. One rule for every
    command that writes; raises a one-line `RecordError` naming the output."""
    target = Path(out).resolve()
    for given in inputs:
        if given is None or not os.path.exists(given):
            continue
        source = Path(given)
        same = source.resolve() == target or (os.path.exists(out) and os.path.samefile(source, out))
        if same:
            shown = str(given) if str(given) == str(out) else f"{given}, the same file or folder"
            raise RecordError(f"is also an input ({shown}); writing it would destroy that input: "
                              "choose another output", path=str(out))


@contextmanager
def atomic_path(path: str | os.PathLike, *, folder: bool = False) -> Iterator[Path]:
    """Context manager for writers that take a path (Parquet, `save_to_disk`): yields a
    temporary path beside `path`; when the block ends without error it is renamed into place,
    so `path` is complete or untouched even if the process is killed. `folder`: the writer
    makes a folder; it is marked as prm's (`OUTPUT_MARKER`), and it may replace only an
    empty folder or one prm wrote (`check_output`, checked again before and after writing)."""
    path = Path(path)
    check_output(path)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.")) / (path.name if not folder else "data")
    try:
        yield tmp
        if folder:
            (tmp / OUTPUT_MARKER).write_text(json.dumps(
                {"written_by": "prm-toolkit", "content": "a `datasets` folder (save_to_disk)"}) + "\n",
                encoding="utf-8")
            if path.exists():  # moved into the temporary folder, removed with it below
                check_output(path)
                os.replace(path, tmp.parent / "old")
            os.replace(tmp, path)
        else:
            with open(tmp, "rb") as handle:
                os.fsync(handle.fileno())
            os.chmod(tmp, _target_mode(path))
            os.replace(tmp, path)
        sync_dir(path.parent)
    finally:
        shutil.rmtree(tmp.parent, ignore_errors=True)


def sync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (fsync its directory entry), where the OS allows."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# -- one writer per output ----------------------------------------------------------------------

def lock_path(path: str | os.PathLike) -> Path:
    """The lock file of an output: `.NAME.lock` beside it."""
    path = Path(path)
    return path.parent / f".{path.name}.lock"


@contextmanager
def output_lock(path: str | os.PathLike, command: str = "another run") -> Iterator[Path]:
    """Hold an exclusive lock on the output `path` for the duration of the block.

    Two runs writing the same output would interleave or duplicate records; the second one
    is refused at once with a `RecordError` naming the output and the holder. The lock is an
    `fcntl.flock` on a lock file beside the output (`.NAME.lock`): the OS releases it when
    the process ends, however it ends (a lock file left by a killed run is simply taken
    over). The file is removed when the block ends.
    """
    import fcntl

    path = Path(path)
    lock = lock_path(path)
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        handle = open(lock, "a+")
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip()
            handle.close()
            raise RecordError(f"another process is writing this output ({holder or 'holder unknown'}; "
                              f"lock file {lock}); wait for it to finish or choose another output",
                              path=str(path)) from None
        try:  # the file may have been removed by the previous holder after we opened it
            same = os.fstat(handle.fileno()).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        handle.close()
    try:
        handle.seek(0)
        handle.truncate()
        handle.write(f"{command}, pid {os.getpid()}\n")
        handle.flush()
        yield lock
    finally:
        try:
            os.unlink(lock)  # while still holding it, so no one can take a removed file's lock
        except FileNotFoundError:
            pass
        handle.close()


# -- one resumable output ------------------------------------------------------------------------

SYNC_SECONDS = 1.0  # fsync a streamed output at most this often (and when it is closed)


def field_value(trace: Trace, path: str) -> Any:
    """The value of a dotted field of a trace: "id", "meta.problem_id" (None where missing)."""
    value: Any = trace
    for part in path.split("."):
        value = value.get(part) if isinstance(value, dict) else getattr(value, part, None)
    return value


def changed_settings(stored: dict | None, settings: dict) -> str:
    """The names of the settings that differ, comma-separated ("none recorded" for none)."""
    if not isinstance(stored, dict):
        return "none recorded"
    return ", ".join(sorted(k for k in settings if stored.get(k) != settings[k])) or "none recorded"


class ResumableOutput:
    """A JSONL output appended to one record at a time, which a killed run resumes exactly once.

    Every command that writes traces as it goes (`prm annotate`, `prm check`, `prm search`,
    `prm score`, `prm eval --benchmark`) writes through this class, which owns:

    - the lock: `output_lock(path, command)` for the whole run, so a second run on the same
      output is refused at once; the open file is also `flock`ed, so that a process holding
      the file itself (as `prm check` did before it took the output lock) is refused too;
    - torn-line repair: a last line without its newline (the process died while writing it)
      is cut off when the run resumes, and said on stderr;
    - the resume checks: every record already there must belong to this run's input (or
      shard), appear once, and have been made with the same settings (else a `RecordError`
      naming the file, line and field, and nothing is appended); with `in_order`, they must
      be the first records of the input, in input order (for commands that resume by position);
    - one fsync policy (below);
    - the partial file: with `partial`, records are streamed to that file and `finish(traces)`
      writes `path` at once (JSONL, Parquet or a `datasets` folder) and removes the partial one.

    fsync policy: every record is flushed to the OS as soon as it is appended, so a killed
    process (Ctrl-C, SIGKILL, out of memory) loses nothing appended, only the record it was
    working on. The file is fsynced at most once a second (`SYNC_SECONDS`) and when it is
    closed: an fsync costs milliseconds, far more than `prm check` needs to check a trace, so
    fsyncing every record would cost most of its throughput, while a command that takes
    seconds a record (annotation) is still fsynced after every record. What a power loss or
    an OS crash can lose: the records appended since the last fsync, those of at most one
    second of appending, and a torn last line, which the next run repairs.

    `key` is the dotted field that names a record ("id", or "meta.problem_id" when a result
    trace stands for a problem); `recorded(trace)` the settings a record was made with,
    stored at `settings_field`, compared with the run's settings by `resume`;
    `difference(stored, settings)` says what differs (default: the names of the changed
    settings); `remedy` ends each refusal. The output is opened (locked) before any slow work,
    so a second run is refused at once; the settings may be known only later:

        with ResumableOutput(out, "id", "prm annotate", recorded=..., settings_field=...) as output:
            done = output.resume([t.id for t in todo], settings)
            for trace in work(the traces of todo not in done):
                output.append(trace)
    """

    def __init__(self, path: str | os.PathLike, key: str, command: str, *,
                 recorded: Callable[[Trace], dict | None], settings_field: str,
                 partial: str | os.PathLike | None = None, in_order: bool = False,
                 difference: Callable[[dict | None, dict], str] = changed_settings,
                 remedy: str = "write to a new output"):
        self.path = Path(path)
        self.file = Path(partial) if partial is not None else self.path
        self.key, self.command = key, command
        self.recorded, self.settings_field = recorded, settings_field
        self.in_order, self.difference, self.remedy = in_order, difference, remedy
        self.handle = None

    def __enter__(self) -> "ResumableOutput":
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = output_lock(self.path, self.command)
        self._lock.__enter__()
        return self

    def __exit__(self, exc_type, exc, tb):
        try:
            if self.handle is not None and not self.handle.closed:
                self.handle.flush()
                os.fsync(self.handle.fileno())
                self.handle.close()
        finally:
            self._lock.__exit__(exc_type, exc, tb)
        return False

    def _open(self) -> None:
        """Open the file for appending (made only now: a run refused before any work leaves none)."""
        import fcntl

        if self.handle is not None:
            return
        self.file.parent.mkdir(parents=True, exist_ok=True)
        self.handle = open(self.file, "a", encoding="utf-8")
        sync_dir(self.file.parent)
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.close()
            raise RecordError(f"another `{self.command}` is writing this output right now",
                              path=str(self.file)) from None
        self.synced = time.monotonic()

    def start_over(self) -> None:
        """Discard what an earlier run left (`prm check --recheck`)."""
        self._open()
        self.handle.truncate(0)

    def resume(self, expected: list[str], settings: dict, *,
               unchanged: Callable[[Trace], bool] | None = None) -> list[Trace]:
        """The records already finished (a torn last line cut off and said on stderr), checked
        against this run: `expected` lists the keys of this run's input (or shard), in input
        order; `settings` are this run's; `unchanged(record)`, when given, says whether a
        record still matches its input (e.g. the same problem and steps)."""
        self._open()
        done, torn = read_finished(self.file, repair=True)
        if torn:
            print(f"{self.command}: dropped a torn last line ({torn} bytes) of {self.file}", file=sys.stderr)
        wanted, seen = set(expected), set()
        for number, trace in enumerate(done, start=1):
            where = {"path": str(self.file), "line": number}
            key = field_value(trace, self.key)
            if self.in_order and (number > len(expected) or key != expected[number - 1]):
                should = f"{expected[number - 1]!r}" if number <= len(expected) else "nothing (the input is shorter)"
                raise RecordError(f"does not belong to this input: record {number} is {self.key} {key!r}, "
                                  f"where this input has {should}; is this the output of another run? "
                                  f"Use the same input, or {self.remedy}", field=self.key, **where)
            if key not in wanted or (unchanged is not None and not unchanged(trace)):
                raise RecordError(f"{self.key} {key!r} is not in this input (not in this run's input or "
                                  f"shard, or changed since): is this the output of another run? Use the "
                                  f"same input, or {self.remedy}", field=self.key, **where)
            if key in seen:
                raise RecordError(f"{self.key} {key!r} appears twice; {self.remedy}", field=self.key, **where)
            seen.add(key)
            stored = self.recorded(trace)
            if stored != settings:
                raise RecordError(f"was written by `{self.command}` with other settings "
                                  f"({self.difference(stored, settings)}); re-run with the same "
                                  f"options, or {self.remedy}", field=self.settings_field, **where)
        return done

    def append(self, *traces: Trace) -> None:
        """Append finished records (one line each), flushed at once, fsynced at most once a second."""
        self._open()
        for trace in traces:
            self.handle.write(dumps(trace) + "\n")
        self.handle.flush()
        if time.monotonic() - self.synced >= SYNC_SECONDS:
            os.fsync(self.handle.fileno())
            self.synced = time.monotonic()

    def read_back(self) -> list[Trace]:
        """Every record the output holds now, in file order."""
        self._open()
        self.handle.flush()
        return read_finished(self.file)[0]

    def finish(self, traces: Iterable[Trace]) -> None:
        """Write the finished output `path` at once (`write_traces`) and remove the partial file."""
        if self.file == self.path:
            raise ValueError("finish() is for an output streamed to a partial file")
        write_traces(self.path, traces)
        if self.handle is not None:
            self.handle.close()
        self.file.unlink(missing_ok=True)


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
    review = {"reviewer": Value("string"), "hard_label": Value("int8"), "time": Value("string"),
              "tool": Value("string"), "comment": Value("string"), "label_source": Value("string")}
    step = {"text": Value("string"), "hard_label": Value("int8"), "soft_label": Value("float64"),
            "label_source": Value("string"), "verdicts": List(verdict), "rollouts": rollouts,
            "score": Value("float64"), "reviews": List(review)}
    critique = {"text": Value("string"), "answer": Value("string"), "index": Value("int64"),
                "parse_error": Value("string"), "tokens": Value("int64")}
    judgement = {"judge": Value("string"), "critiques": List(critique), "vote": Value("int64"),
                 "template": Value("string"), "temperature": Value("float64"), "top_p": Value("float64"),
                 "seed": Value("int64"), "seconds": Value("float64")}
    return Features({"id": Value("string"), "problem": Value("string"), "steps": List(step),
                     "final_answer": Value("string"), "reference_answer": Value("string"),
                     "outcome_label": Value("int8"), "meta": Value("string"), "judgement": judgement})


def to_dataset(traces: Iterable[Trace]):
    """Traces as a `datasets.Dataset` with the schema of `trace_features()`."""
    import datasets

    rows = []
    for trace in traces:
        row = trace.to_dict()
        row["meta"] = json.dumps(row["meta"], ensure_ascii=False, sort_keys=True)
        rows.append(row)
    return datasets.Dataset.from_list(rows, features=trace_features())


def from_dataset(dataset, *, path: str | None = None, report: ReadReport | None = None) -> list[Trace]:
    """Traces back from a `datasets.Dataset` made by `to_dataset` (errors name `path` and the
    1-based row; duplicate ids are refused as in `read_records`)."""
    report = report if report is not None else ReadReport()
    traces = []
    for number, row in enumerate(dataset, start=1):
        try:
            row = dict(row)
            row["meta"] = parse_json(row["meta"]) if row.get("meta") else {}
            for step in row.get("steps") or []:
                rollouts = step.get("rollouts")
                # Arrow stores a missing struct as a struct of nulls.
                if rollouts is not None and rollouts.get("total") is None:
                    step["rollouts"] = None
            judgement = row.get("judgement")
            if judgement is not None and judgement.get("judge") is None:
                row["judgement"] = None
            trace = Trace.from_dict(row)
        except RecordError as err:
            raise err.located(path=path, line=number) from None
        if report.accept(trace, path or "<dataset>", number, skip_invalid=False):
            traces.append(trace)
    return traces


def _load_parquet(path: Path):
    import datasets

    try:
        return datasets.Dataset.from_parquet(str(path))
    except Exception as err:  # noqa: BLE001 - pyarrow raises several kinds for a bad file
        raise RecordError(f"not a readable Parquet file ({type(err).__name__}: {err})", path=str(path)) from None


def _load_dataset_dir(path: Path):
    import datasets

    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        raise RecordError(f"holds several splits {list(loaded)}; pass one split's folder",
                          path=str(path))
    return loaded
