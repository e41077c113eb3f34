"""The benchmarks `prm eval --benchmark` runs besides ProcessBench and PRMBench, each as the
same five parts: how to load it, which meta field marks its traces (and names their
subset, for --subsets on a scored file), its metrics, its report table and its summary.

deltabench: `evals.deltabench`; socratic-prmbench: `evals.socratic_prmbench` (PRMBench's
table); hard2verify: `evals.hard2verify`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Benchmark:
    title: str
    load: Callable            # (path or None, subsets or None) -> traces
    marker: str               # meta field every trace of this benchmark has
    subset_key: str | None    # meta field --subsets filters on
    metrics: Callable         # (traces, threshold) -> dict
    report: Callable          # metrics -> markdown table lines
    summary: Callable         # metrics -> short text


def _prmbench_table(metrics: dict) -> list[str]:
    from prm.markdown import percent

    lines = ["| error type | samples | PRM-Score | F1 | negative F1 | first-error acc. |", "|---|---|---|---|---|---|"]
    for name, row in list(metrics["classes"].items()) + [("overall", metrics["overall"])]:
        lines.append(f"| {name} | {row['samples']} | {percent(row['prm_score'])} | {percent(row['f1'])} "
                     f"| {percent(row['negative_f1'])} | {percent(row['first_error_acc'])} |")
    return lines


def _prm_score(metrics: dict) -> str:
    from prm.markdown import percent

    return f"PRM-Score {percent(metrics['overall']['prm_score'])}"


def newer_benchmarks() -> dict[str, Benchmark]:
    from evals import deltabench, hard2verify, socratic_prmbench

    return {
        "deltabench": Benchmark("DeltaBench", deltabench.load_deltabench_benchmark, "error_sections", "subset",
                                deltabench.deltabench_metrics, deltabench.deltabench_report,
                                deltabench.deltabench_summary),
        "socratic-prmbench": Benchmark("Socratic-PRMBench", socratic_prmbench.load_socratic_prmbench_benchmark,
                                       "error_class", "error_class", socratic_prmbench.socratic_prmbench_metrics,
                                       _prmbench_table, _prm_score),
        "hard2verify": Benchmark("Hard2Verify", hard2verify.load_hard2verify_benchmark, "gold_labels", None,
                                 hard2verify.hard2verify_metrics, hard2verify.hard2verify_report,
                                 hard2verify.hard2verify_summary),
    }


NAMES = ("deltabench", "socratic-prmbench", "hard2verify")
