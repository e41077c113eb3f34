"""DeltaBench's metric for scored traces, as the authors' evaluator computes it.

Written from github.com/OpenStellarTeam/DeltaBench `evaluation.py` (commit 6b67c64:
`parse_output`, `calculate_accuracies_v2`, `get_metrics`); no code copied. That script
judges a critic's list of erroneous section numbers:

- gold = the union of `reason_error_section_numbers` and `reason_unuseful_section_numbers`;
- predicted section numbers past the last gold section are dropped;
- per sample: TP, FP, FN over the sets of section numbers, precision, recall and F1 (0 where
  a denominator is 0, as there);
- macro = the mean over samples of precision / recall / F1; micro = precision / recall / F1
  from the summed TP, FP, FN; reported overall and per `task_l1`.

For a PRM (one score per section, `prm.formats.deltabench`), the predicted sections are
those scoring below the threshold. The release's evaluator has no PRM path: it parses a
critic's text. DeltaBench's paper also evaluates PRMs, but how it turned their step scores
into section predictions is not in the released code, so this threshold rule is ours. A
trace with an unscored step is left out (counted in `skipped`).
"""

from __future__ import annotations

from prm.records import Trace


def load_deltabench_benchmark(path: str | None = None, subsets: list[str] | None = None) -> list[Trace]:
    """DeltaBench traces from a release file or a folder of them (default: the hub copy,
    `OpenStellarTeam/DeltaBench`); subsets: keep only these task_l1 values."""
    from evals.benchmark_files import keep_subsets, release_files
    from prm.formats.deltabench import load_deltabench_hub, read_deltabench

    if path is None:
        traces = load_deltabench_hub()
    else:
        traces = [t for file in release_files(path, (".json", ".jsonl", ".csv")) for t in read_deltabench(file)]
    return keep_subsets(traces, "subset", subsets, path, "DeltaBench tasks")


def section_counts(gold: list[int], predicted: list[int]) -> dict:
    """One sample as the authors' `parse_output` scores it (section numbers are 1-based)."""
    last = max(gold)
    guessed = {n for n in predicted if n <= last}
    wanted = set(gold)
    tp, fp, fn = len(guessed & wanted), len(guessed - wanted), len(wanted - guessed)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"tp": tp, "fp": fp, "fn": fn, "precision": precision, "recall": recall, "f1": f1}


def _summary(rows: list[dict]) -> dict:
    """Macro and micro precision / recall / F1 over samples (`calculate_accuracies_v2`)."""
    if not rows:
        return {"samples": 0}
    mean = lambda key: sum(r[key] for r in rows) / len(rows)  # noqa: E731
    tp, fp, fn = (sum(r[k] for r in rows) for k in ("tp", "fp", "fn"))
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"samples": len(rows), "precision_macro": mean("precision"), "recall_macro": mean("recall"),
            "f1_macro": mean("f1"), "precision_micro": precision, "recall_micro": recall, "f1_micro": f1}


def deltabench_metrics(traces: list[Trace], threshold: float = 0.5) -> dict:
    """DeltaBench's macro and micro section-level metrics, overall and per task (see above)."""
    rows: dict[str, list[dict]] = {}
    everything, skipped = [], 0
    for trace in traces:
        scores = [s.score for s in trace.steps]
        gold = list(trace.meta.get("error_sections") or [])
        if not scores or any(s is None for s in scores) or not gold:
            skipped += 1
            continue
        predicted = [i + 1 for i, score in enumerate(scores) if score < threshold]
        row = section_counts(gold, predicted)
        rows.setdefault(str(trace.meta.get("subset")), []).append(row)
        everything.append(row)
    return {"threshold": float(threshold), "threshold_rule": f"fixed at {threshold}", "skipped": skipped,
            "overall": _summary(everything), "subsets": {name: _summary(r) for name, r in sorted(rows.items())}}


def deltabench_report(metrics: dict) -> list[str]:
    """The report's table (markdown lines)."""
    from prm.markdown import percent

    lines = ["| task | samples | F1 macro | P macro | R macro | F1 micro | P micro | R micro |",
             "|---|---|---|---|---|---|---|---|"]
    for name, row in [("overall", metrics["overall"])] + list(metrics["subsets"].items()):
        if not row["samples"]:
            continue
        lines.append(f"| {name} | {row['samples']} | {percent(row['f1_macro'])} | {percent(row['precision_macro'])} "
                     f"| {percent(row['recall_macro'])} | {percent(row['f1_micro'])} | {percent(row['precision_micro'])} "
                     f"| {percent(row['recall_micro'])} |")
    return lines


def deltabench_summary(metrics: dict) -> str:
    from prm.markdown import percent

    return f"F1 macro {percent(metrics['overall'].get('f1_macro'))}, F1 micro {percent(metrics['overall'].get('f1_micro'))}"
