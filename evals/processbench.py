"""ProcessBench data for `prm eval`: its released files, a folder of them, or a hub split.

The format itself (fields `id, generator, problem, steps, final_answer_correct, label`,
and how they become traces with gold labels) is `prm.formats.processbench`'s job; this
module only recognises ProcessBench input and tags each trace with its subset (the file
or split name: gsm8k, math, olympiadbench, omnimath), which is what ProcessBench reports
F1 per.
"""

from __future__ import annotations

import os
from pathlib import Path

from prm.errors import RecordError
from prm.records import Trace

SUBSETS = ("gsm8k", "math", "olympiadbench", "omnimath")


def is_processbench(path: str) -> bool:
    """True for a ProcessBench file, or a folder of them (told from the records' fields)."""
    from prm.formats import guess_format

    try:
        return Path(path).exists() and guess_format(path) == "processbench"
    except RecordError:
        return False


def load_processbench(dir_or_split: str) -> list[Trace]:
    """Traces from a folder of ProcessBench files, one file, or a split name of the hub
    data set `Qwen/ProcessBench` (gsm8k, math, olympiadbench, omnimath; needs internet).
    Each trace's `meta["subset"]` names its file or split."""
    from prm.formats import processbench

    path = Path(dir_or_split)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix in (".json", ".jsonl") and not p.name.startswith("."))
    elif path.exists():
        files = [path]
    elif dir_or_split in SUBSETS:
        return _tagged(processbench.load_processbench_hub(split=dir_or_split), dir_or_split)
    else:
        raise RecordError(f"no such file or folder, and not a ProcessBench split ({', '.join(SUBSETS)})",
                          path=dir_or_split)
    traces = []
    for file in files:
        traces += _tagged(processbench.read_processbench(os.fspath(file)), file.stem)
    return traces


def _tagged(traces: list[Trace], subset: str) -> list[Trace]:
    for trace in traces:
        trace.meta.setdefault("subset", subset)
    return traces
