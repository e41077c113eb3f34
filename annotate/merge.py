"""Join the outputs of a sharded annotation run (`prm merge`).

Every trace of the input must be in exactly one shard: the merge counts the traces of each
shard and refuses (writing nothing) if any input trace is missing, appears twice, or a
shard holds a trace that is not in the input, or if the shards were made with different
settings. A shard whose process was killed mid-write has a torn last line; it is ignored
(and reported), so that trace shows up as missing until the shard is re-run.

The merged file lists the traces in input order, so it equals the output of one
unsharded run, and is written atomically (JSONL, a `datasets` folder or Parquet by OUT's
suffix).
"""

from __future__ import annotations

from collections import Counter

from annotate.runner import load_input, read_finished, stored_settings


class MergeError(Exception):
    """The shards do not add up to the input (the message has the counts)."""


def merge(output: str, shards: list[str], input_path: str, input_format: str = "auto",
          limit: int | None = None) -> str:
    """Check and join the shards; returns a one-paragraph report. Raises `MergeError`."""
    from prm.io import write_traces

    expected = [t.id for t in load_input(input_path, input_format, limit)]
    by_id = {}
    counts = Counter()
    lines = []
    settings = None
    for shard in shards:
        traces, torn = read_finished(shard)
        lines.append(f"  {shard}: {len(traces)} trace(s)" + (f" (+ a torn last line of {torn} bytes, ignored)"
                                                              if torn else ""))
        for trace in traces:
            counts[trace.id] += 1
            by_id.setdefault(trace.id, trace)
            stored = stored_settings(trace)
            if settings is None:
                settings = stored
            elif stored != settings:
                raise MergeError(f"{shard}: trace {trace.id!r} was annotated with other settings "
                                 f"({stored}) than the first shard ({settings})")
    expected_set = set(expected)
    missing = [i for i in expected if i not in counts]
    duplicated = sorted(i for i, c in counts.items() if c > 1)
    extra = sorted(i for i in counts if i not in expected_set)
    report = "\n".join([f"{len(shards)} shard(s), {sum(counts.values())} trace(s) for {len(expected)} input "
                        f"trace(s): {len(missing)} missing, {len(duplicated)} duplicated, "
                        f"{len(extra)} not in the input", *lines])
    problems = [(name, ids) for name, ids in (("missing", missing), ("duplicated", duplicated),
                                               ("not in the input", extra)) if ids]
    if problems:
        details = "; ".join(f"{name}: {', '.join(ids[:5])}{' ...' if len(ids) > 5 else ''}" for name, ids in problems)
        raise MergeError(f"{report}\n{details}\nnothing written")
    write_traces(output, [by_id[i] for i in expected])
    return f"{report}\nwrote {len(expected)} trace(s) to {output}"
