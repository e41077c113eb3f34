"""Finding a benchmark's release files and keeping the asked subsets (shared by the loaders
of `evals.newer_benchmarks`)."""

from __future__ import annotations

from pathlib import Path

from prm.errors import RecordError


def release_files(path: str, suffixes: tuple[str, ...] = (".json", ".jsonl")) -> list[Path]:
    """`path` itself, or the files of the folder `path` with these suffixes, sorted."""
    folder = Path(path)
    return sorted(p for p in folder.iterdir() if p.suffix in suffixes) if folder.is_dir() else [folder]


def keep_subsets(traces: list, key: str, wanted: list[str] | None, path: str | None, what: str) -> list:
    """The traces whose meta[key] is one of `wanted` (all if none is wanted); an error naming
    what was found when none is left."""
    if not wanted:
        return traces
    kept = [t for t in traces if t.meta.get(key) in wanted]
    if traces and not kept:
        found = sorted({str(t.meta.get(key)) for t in traces})
        raise RecordError(f"no trace of the {what} {', '.join(wanted)} (found: {', '.join(found)})", path=path)
    return kept
