"""`prm inspect PATH...`: what is in a data set, at a glance.

Reads any format `prm.formats` knows (guessed from the fields, or --format), then prints
counts (traces, steps, steps per trace), a text histogram of step lengths (words or
characters), label balance (hard 1/0/unknown, soft-label mean, label sources), outcome
balance, where the traces come from (meta source, error class), first-error positions,
Monte Carlo rollouts, checker verdicts by status, and reward-model scores when present.
`--json` prints the same summary as JSON (also `summarize()` for notebooks).

    prm inspect ../shared/data/gsm8k/test.jsonl
    prm inspect ../shared/data/prmbench-train --unit chars
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from collections import Counter
from typing import Any

from prm import formats
from prm.io import ReadReport
from prm.records import Trace

BAR_WIDTH = 40
BINS = 10


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("paths", metavar="PATH", nargs="+",
                        help="data file(s) or folder(s): JSONL/JSON/Parquet, a datasets folder, "
                             "or a folder of data files")
    parser.add_argument("--format", metavar="FORMAT", choices=list(formats.FORMATS),
                        help=f"input format (guessed if not given): {', '.join(formats.FORMATS)}")
    parser.add_argument("--unit", choices=("words", "chars"), default="words",
                        help="step length unit for the histogram (default: words)")
    parser.add_argument("--limit", type=int, metavar="N", help="read only the first N traces per path")
    parser.add_argument("--skip-invalid", action="store_true",
                        help="skip records that cannot be read, and report how many and why")
    parser.add_argument("--keep-duplicates", action="store_true",
                        help="keep records whose id was already read (default: an error naming the line)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")


def run(args: argparse.Namespace) -> int:
    traces: list[Trace] = []
    report = ReadReport()
    names = []
    for path in args.paths:
        name = args.format or formats.guess_format(path)
        names.append(name)
        traces += formats.read(path, name, skip_invalid=args.skip_invalid, report=report,
                               limit=args.limit, keep_duplicates=args.keep_duplicates)
    summary = summarize(traces, unit=args.unit)
    summary["paths"] = [f"{path} ({name})" for path, name in zip(args.paths, names)]
    summary["skipped"] = [str(err) for err in report.skipped]
    print(json.dumps(summary, indent=1, ensure_ascii=False) if args.json else render(summary))
    if report.skipped:
        print(f"skipped {len(report.skipped)} invalid record(s); first: {report.skipped[0]}",
              file=sys.stderr)
    return 0


def summarize(traces: list[Trace], unit: str = "words") -> dict[str, Any]:
    """Counts, step lengths, labels, outcomes, sources, rollouts, verdicts and scores."""
    steps = [step for trace in traces for step in trace.steps]
    per_trace = [len(trace.steps) for trace in traces]
    lengths = [len(s.text.split()) if unit == "words" else len(s.text) for s in steps]
    hard = Counter(s.hard_label for s in steps)
    soft = [s.soft_label for s in steps if s.soft_label is not None]
    verdicts = Counter(f"{v.checker}: {v.status}" for s in steps for v in s.verdicts)
    rollouts = [s.rollouts for s in steps if s.rollouts is not None]
    scores = [s.score for s in steps if s.score is not None]
    first_errors = Counter(_first_error_kind(t) for t in traces)
    return {
        "traces": len(traces),
        "steps": len(steps),
        "steps_per_trace": _stats(per_trace),
        "step_length": {"unit": unit, **_stats(lengths), "histogram": _histogram(lengths)},
        "hard_labels": {"1": hard.get(1, 0), "0": hard.get(0, 0), "unknown": hard.get(None, 0)},
        "soft_labels": {"count": len(soft), "mean": _mean(soft)},
        "label_sources": _named(Counter(s.label_source or "none" for s in steps)),
        "outcome_labels": _named(Counter({1: "1", 0: "0"}.get(t.outcome_label, "unknown")
                                         for t in traces)),
        "first_error": _named(first_errors),
        "sources": _named(Counter(str(t.meta.get("source", "unknown")) for t in traces)),
        "error_classes": _named(Counter(t.meta["error_class"] for t in traces
                                        if "error_class" in t.meta)),
        "rollouts": {"steps": len(rollouts),
                     "mean_total": _mean([r.total for r in rollouts]),
                     "mean_fraction_correct": _mean([r.fraction for r in rollouts
                                                     if r.fraction is not None])},
        "verdicts": _named(verdicts),
        "scores": {"count": len(scores), "mean": _mean(scores)},
    }


def _first_error_kind(trace: Trace) -> str:
    first = trace.first_error()
    if first is None:
        return "cannot tell (unknown labels)"
    return "no wrong step" if first == -1 else "has a wrong step"


def _stats(values: list[int]) -> dict[str, Any]:
    if not values:
        return {"mean": None, "median": None, "max": None}
    return {"mean": round(statistics.fmean(values), 2), "median": statistics.median(values),
            "max": max(values)}


def _mean(values: list[float]) -> float | None:
    return round(statistics.fmean(values), 4) if values else None


def _named(counter: Counter) -> dict[str, int]:
    return {str(key): count for key, count in counter.most_common()}


def _histogram(values: list[int]) -> list[dict[str, Any]]:
    """Equal-width bins up to the 99th percentile, plus one bin for the long tail."""
    if not values:
        return []
    ordered = sorted(values)
    top = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    width = max(1, -(-(top + 1) // BINS))  # ceil((top + 1) / BINS)
    count = -(-(top + 1) // width)  # bins up to the 99th percentile; one more for the tail
    counts = Counter(min(v // width, count) for v in values)
    bins = [{"from": i * width, "to": i * width + width - 1, "count": counts.get(i, 0)}
            for i in range(count)]
    if counts.get(count):
        bins.append({"from": count * width, "to": max(values), "count": counts[count]})
    return bins


def render(summary: dict[str, Any]) -> str:
    """The summary as readable text."""
    lines = []
    for path in summary.get("paths", []):
        lines.append(f"data: {path}")
    per = summary["steps_per_trace"]
    lines.append(f"traces: {summary['traces']}   steps: {summary['steps']}   "
                 f"steps per trace: mean {per['mean']}, median {per['median']}, max {per['max']}")
    length = summary["step_length"]
    lines.append(f"\nstep length ({length['unit']}): mean {length['mean']}, "
                 f"median {length['median']}, max {length['max']}")
    biggest = max((b["count"] for b in length["histogram"]), default=0)
    for b in length["histogram"]:
        bar = "#" * (round(BAR_WIDTH * b["count"] / biggest) if biggest else 0)
        lines.append(f"  {b['from']:>6}-{b['to']:<6} {b['count']:>8}  {bar}")
    hard = summary["hard_labels"]
    total = sum(hard.values()) or 1
    lines.append("\nstep labels: " + ", ".join(
        f"{name} {count} ({100 * count / total:.1f}%)" for name, count in hard.items()))
    soft = summary["soft_labels"]
    if soft["count"]:
        lines.append(f"soft labels: {soft['count']} steps, mean {soft['mean']}")
    lines.append("label sources: " + _pairs(summary["label_sources"]))
    lines.append("outcome labels: " + _pairs(summary["outcome_labels"]))
    lines.append("first wrong step: " + _pairs(summary["first_error"]))
    lines.append("sources: " + _pairs(summary["sources"]))
    if summary["error_classes"]:
        lines.append("error classes: " + _pairs(summary["error_classes"]))
    rollouts = summary["rollouts"]
    if rollouts["steps"]:
        lines.append(f"rollouts: {rollouts['steps']} steps, mean {rollouts['mean_total']} "
                     f"completions, mean fraction correct {rollouts['mean_fraction_correct']}")
    if summary["verdicts"]:
        lines.append("checker verdicts: " + _pairs(summary["verdicts"]))
    if summary["scores"]["count"]:
        lines.append(f"scores: {summary['scores']['count']} steps, mean {summary['scores']['mean']}")
    if summary.get("skipped"):
        lines.append(f"skipped invalid records: {len(summary['skipped'])}")
    return "\n".join(lines)


def _pairs(counts: dict[str, int]) -> str:
    return ", ".join(f"{name} {count}" for name, count in counts.items()) or "none"
