"""Socratic-PRMBench (Li et al., 2025): PRMBench-style records over 20 error types of six
reasoning patterns (transformation, decomposition, regather, deduction, verification,
integration).

What the release holds (github.com/Xiang-Li-oss/Socratic-PRMBench, commit 730dbfa): only
`data/test_<error type>.jsonl`, 20 files, 2,995 records, and an empty README; **no
evaluation code**. The records have exactly PRMBench's fields (`original_question`,
`original_process`, `modified_question`, `modified_process`, `modified_steps`,
`error_steps`, `classification`, `reason`, `idx`, plus `question`), so they are read with
`prm.formats.prmbench` (checked on all 2,995: error_steps never 0, 1,323 records name step
len(modified_process), so they are 1-based; 80 name steps past the end, left out as for
PRMBench; no (classification, idx) repeats; 1,086 records are in Chinese).

The paper's metric is PRM-Score = 0.5 * F1 + 0.5 * negative F1, PRMBench's PRMScore, so the
scoring is `evals.prmbench.prmbench_metrics` per classification (the 20 error types) and
overall. Unlike PRMBench's evaluator, no unmodified "correct" samples are added: the
authors' loader is not released, so whether they add them is unknown (it only changes the
`correct` row and `similarity`, never the PRM-Score of an error type). The file names'
prefixes (premise_, conclusion_, repeat_, ...) are not mapped to the paper's six pattern
names, since the release does not state that mapping.
"""

from __future__ import annotations

from prm.errors import RecordError
from prm.records import Trace

SOURCE = "socratic-prmbench"


def load_socratic_prmbench_benchmark(path: str | None = None, classes: list[str] | None = None) -> list[Trace]:
    """Socratic-PRMBench traces from a release file or its `data/` folder; classes: keep only
    these error types (e.g. premise_redundancy). There is no hub copy to fall back on."""
    from evals.benchmark_files import keep_subsets, release_files
    from prm.formats.prmbench import read_prmbench

    if path is None:
        raise RecordError("Socratic-PRMBench needs --data: the release's data/ folder of test_*.jsonl files "
                          "(github.com/Xiang-Li-oss/Socratic-PRMBench)")
    traces = [t for file in release_files(path) for t in read_prmbench(file)]
    for trace in traces:
        trace.id = f"socratic-{trace.meta['error_class']}-{trace.meta['idx']}"
        trace.meta["source"] = SOURCE
    return keep_subsets(traces, "error_class", classes, path, "error types")


def socratic_prmbench_metrics(traces: list[Trace], threshold: float = 0.5) -> dict:
    """PRM-Score and PRMBench's other figures per error type and overall."""
    from evals.prmbench import prmbench_metrics

    return prmbench_metrics(traces, threshold)
