"""One evaluation, end to end: metrics of scored (or labelled) traces against gold, written
as `metrics.json`, PNG plots and a `report.md` that embeds them.

`evaluate` computes every metric that the traces allow: step level and first error where
steps have scores, PRMBench classes where traces have `meta["error_class"]`, best-of-N
where problems have several traces with outcome labels, label quality where steps have
automatic (Monte Carlo, binary-search or checker) labels. `write_report` adds the files.
Thresholds follow the rule of `evals.step_metrics`: given, or chosen on validation traces,
else on a hash split of the input by trace id (and then measured on the other half only);
the report says which.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from evals import plots
from evals.best_of_n import best_of_n_curves
from evals.first_error import choose_first_error_threshold, first_error_metrics
from evals.gold import DEFAULT_GOLD, has_gold
from evals.label_quality import label_quality
from evals.prmbench import per_class_detection
from evals.search_curve import is_search_result, search_figure, search_metrics, search_section
from evals.step_metrics import calibration_change, choose_threshold, split_by_id, step_metrics, step_pairs
from prm.errors import RecordError
from prm.io import atomic_write
from prm.markdown import number, percent, table
from prm.records import Trace


@dataclass
class EvalConfig:
    """Everything an evaluation can be told; the defaults suit the demo."""

    gold: str = DEFAULT_GOLD  # where gold labels live: "meta", "labels" or a label source
    threshold: float | None = None  # fixed threshold; None: choose on validation traces
    objective: str = "accuracy"  # what the step threshold maximises (accuracy, balanced_accuracy, f1)
    val_fraction: float = 0.5  # share of traces used to choose thresholds when no validation set
    bins: int = 10  # calibration bins
    ns: list[int] | None = None  # best-of-N sizes; None: 1, 2, 4, ... up to traces per problem
    repeats: int = 64  # random subsets per problem and N
    seed: int = 0
    heatmap_traces: int = 8


def _scored(traces: list[Trace]) -> bool:
    return any(s.score is not None for t in traces for s in t.steps)


def _labelled(traces: list[Trace]) -> bool:
    """Some steps carry automatic labels (Monte Carlo, binary search, a checker), worth
    comparing with gold; imported or human labels are usually the gold itself."""
    return any((s.hard_label is not None or s.soft_label is not None) and s.label_source is not None
               and (s.label_source in ("monte-carlo", "binary-search", "judge")
                    or s.label_source.startswith("checker:"))
               for t in traces for s in t.steps)


def evaluate(traces: list[Trace], config: EvalConfig | None = None,
             val_traces: list[Trace] | None = None) -> tuple[dict, list[Trace]]:
    """(metrics, the traces threshold-based metrics were measured on)."""
    config = config or EvalConfig()
    if not traces:
        raise RecordError("no traces to evaluate")
    metrics: dict = {"config": asdict(config), "traces": len(traces)}
    test = traces
    gold_known = has_gold(traces, config.gold)
    if _scored(traces) and gold_known:
        thresholds, test = _thresholds(traces, val_traces, config)
        metrics["threshold"] = thresholds
        metrics["step"] = step_metrics(test, thresholds["step"], config.gold, config.bins)
        change = calibration_change(test, config.gold, config.bins)
        if change is not None:
            metrics["calibration_change"] = change
        try:
            metrics["first_error"] = first_error_metrics(test, thresholds["first_error"], config.gold)
        except RecordError as err:
            metrics["first_error"] = {"skipped": str(err)}
        classes = per_class_detection(test, thresholds["step"], config.gold)
        if classes:
            metrics["prmbench"] = classes
    if any(is_search_result(t) for t in traces):  # `prm search` results: solve rate against tokens
        metrics["search"] = search_metrics([t for t in traces if is_search_result(t)])
    curves = best_of_n_curves([t for t in traces if not is_search_result(t)], config.ns, config.repeats, config.seed)
    if curves["problems"]:
        metrics["best_of_n"] = curves
    if gold_known and _labelled(traces):
        metrics["label_quality"] = label_quality(traces, config.gold, config.bins)
    agreement = source_agreement(traces, config.gold)
    if agreement is not None:
        metrics["agreement"] = agreement
    if not any(key in metrics for key in ("step", "best_of_n", "label_quality", "search")):
        raise RecordError("nothing to evaluate: the traces need step scores or automatic labels "
                          f"(Monte Carlo, binary search, checkers) and gold labels (gold={config.gold!r}), "
                          "or several traces per problem with outcome labels")
    return metrics, test


def source_agreement(traces: list[Trace], gold: str = DEFAULT_GOLD) -> dict | None:
    """The first-error agreement matrix (`prm.agreement`) of the label sources the traces carry:
    automatic step labels, checker verdicts, an LLM judge's vote, gold (meta); None with fewer than two."""
    from prm.agreement import agreement_matrix, first_errors

    present = {"labels": _labelled(traces),
               "checker": any(s.verdicts for t in traces for s in t.steps),
               "judge": any(t.judgement is not None for t in traces),
               "gold": gold == "meta" and has_gold(traces, gold)}
    names = [name for name, found in present.items() if found]
    if len(names) < 2:
        return None
    return agreement_matrix({name: first_errors(traces, name) for name in names})


def _thresholds(traces, val_traces, config: EvalConfig) -> tuple[dict, list[Trace]]:
    if config.threshold is not None:
        return {"step": config.threshold, "first_error": config.threshold,
                "chosen_on": "given", "test_traces": len(traces)}, traces
    if val_traces is not None:
        val, test, where = val_traces, traces, "validation set"
    else:
        val, test = split_by_id(traces, config.val_fraction)
        where = "split by trace id"
    info = {"chosen_on": where, "objective": config.objective, "validation_traces": len(val),
            "test_traces": len(test)}
    if step_pairs(val, config.gold)[0].size == 0 or not test:
        # Too few traces to hold any out: measure on everything at the conventional 0.5.
        return {"step": 0.5, "first_error": 0.5, "chosen_on": "default 0.5 (too few traces to "
                "hold out a validation split)", "test_traces": len(traces)}, traces
    info["step"] = choose_threshold(val, config.gold, config.objective)
    try:
        info["first_error"] = choose_first_error_threshold(val, config.gold)
    except RecordError:
        info["first_error"] = info["step"]
    return info, test


def write_report(out_dir: str | Path, traces: list[Trace], config: EvalConfig | None = None,
                 val_traces: list[Trace] | None = None, inputs: dict | None = None) -> dict:
    """Evaluate and write `metrics.json`, the PNG plots and `report.md` into `out_dir`."""
    config = config or EvalConfig()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    metrics, test = evaluate(traces, config, val_traces)
    if inputs:
        metrics["inputs"] = inputs
    metrics["plots"] = _write_plots(out, metrics, test, config)
    with atomic_write(out / "metrics.json") as handle:
        json.dump(_clean(metrics), handle, indent=2)
        handle.write("\n")
    with atomic_write(out / "report.md") as handle:
        handle.write(render_markdown(metrics))
    return metrics


def _write_plots(out: Path, metrics: dict, test: list[Trace], config: EvalConfig) -> dict[str, str]:
    written = {}
    if "step" in metrics:
        step = metrics["step"]
        written["calibration"] = plots.save(
            plots.calibration_figure(step["calibration"], step["ece"]), out / "calibration.png").name
        scores, labels = step_pairs(test, config.gold)
        if step["auroc"] is not None:
            written["roc"] = plots.save(plots.roc_figure(scores, labels, step["threshold"], step["auroc"]),
                                        out / "roc.png").name
        chosen = plots.pick_heatmap_traces(test, config.gold, config.heatmap_traces)
        if chosen:
            figure = plots.step_heatmap_figure(chosen, metrics["threshold"]["first_error"], config.gold)
            written["heatmap"] = plots.save(figure, out / "step_scores.png").name
    if "search" in metrics:
        written["search"] = plots.save(search_figure(metrics["search"]), out / "search.png").name
    if "best_of_n" in metrics:
        written["best_of_n"] = plots.save(plots.best_of_n_figure(metrics["best_of_n"]),
                                          out / "best_of_n.png").name
    soft = (metrics.get("label_quality") or {}).get("soft")
    if soft:
        figure = plots.calibration_figure(soft["calibration"], soft["ece"], what="soft label")
        written["label_calibration"] = plots.save(figure, out / "label_calibration.png").name
    return written


def _clean(value):
    """JSON-safe: numpy numbers to Python, NaN to null."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


# -- report.md ------------------------------------------------------------------------------


def render_markdown(metrics: dict) -> str:
    config = metrics["config"]
    parts = ["# Evaluation report\n"]
    inputs = metrics.get("inputs") or {}
    lines = [f"- {name}: `{value}`" for name, value in inputs.items()]
    lines.append(f"- traces: {metrics['traces']}; gold labels: `{config['gold']}`")
    if "threshold" in metrics:
        t = metrics["threshold"]
        held = f" ({t['validation_traces']} validation / {t['test_traces']} test traces; metrics below " \
               f"use the test traces only)" if "validation_traces" in t else ""
        lines.append(f"- thresholds chosen on: **{t['chosen_on']}**{held}; step threshold "
                     f"{number(t['step'])}" + (f" (maximises {t['objective']})" if "objective" in t else "")
                     + f", first-error threshold {number(t['first_error'])}"
                     + (" (maximises ProcessBench F1)" if "objective" in t else ""))
    parts.append("\n".join(lines) + "\n")
    plot_names = metrics.get("plots", {})
    if "step" in metrics:
        parts.append(_step_section(metrics["step"], plot_names))
    if "calibration_change" in metrics:
        change = metrics["calibration_change"]
        parts.append("\n".join([
            "## Calibration (`prm calibrate`)\n",
            f"The model's scores are calibrated; on the same {change['steps']} test steps:\n",
            table(["scores", "ECE", "Brier"],
                  [[name, number(change[key]["ece"]), number(change[key]["brier"])]
                   for name, key in (("raw (before)", "before"), ("calibrated (after)", "after"))])]) + "\n")
    if "first_error" in metrics:
        parts.append(_first_error_section(metrics["first_error"], plot_names))
    if "prmbench" in metrics:
        parts.append(_prmbench_section(metrics["prmbench"]))
    if "best_of_n" in metrics:
        parts.append(_best_of_n_section(metrics["best_of_n"], plot_names))
    if "search" in metrics:
        parts.append(search_section(metrics["search"], plot_names.get("search")))
    if "label_quality" in metrics:
        parts.append(_label_section(metrics["label_quality"], plot_names))
    if "agreement" in metrics:
        from prm.agreement import agreement_lines

        parts.append("\n".join(["## First-error agreement between label sources\n",
                                 "Share of the traces (both sources can tell) on which two sources put the "
                                 "first wrong step at the same place (-1: none); `prm consensus` keeps only "
                                 "those.\n", *agreement_lines(metrics["agreement"])]) + "\n")
    return "\n".join(parts)


def _step_section(step: dict, plot_names: dict) -> str:
    text = ["## Step level\n",
            f"{step['steps']} steps with a score and a gold label, {step['bad_steps']} of them bad. "
            "A step is predicted bad when its score is below the threshold; precision, recall and F1 "
            "are for finding bad steps.\n",
            table(["accuracy", "balanced acc.", "precision", "recall", "F1", "AUROC", "avg. precision",
                    "Brier", "ECE"],
                   [[percent(step["accuracy"]), percent(step["balanced_accuracy"]), percent(step["precision"]),
                     percent(step["recall"]), percent(step["f1"]), number(step["auroc"]),
                     number(step["average_precision"]), number(step["brier"]), number(step["ece"])]]),
            "\nCalibration (equal-width bins of the step score):\n",
            table(["score bin", "steps", "mean score", "fraction good"],
                   [[f"{row['low']:.1f}–{row['high']:.1f}", row["count"], number(row["mean_predicted"]),
                     number(row["fraction_good"])] for row in step["calibration"]])]
    for key, caption in (("calibration", "Calibration curve"), ("roc", "ROC curve"),
                         ("heatmap", "Step scores of a few traces")):
        if key in plot_names:
            text.append(f"\n![{caption}]({plot_names[key]})\n")
    return "\n".join(text)


def _first_error_section(first: dict, plot_names: dict) -> str:
    if "subsets" not in first:
        return f"## First error (ProcessBench)\n\nNot measured: {first.get('skipped')}\n"
    rows = [[name, row["error_traces"], row["correct_traces"], percent(row["error_accuracy"]),
             percent(row["correct_accuracy"]), percent(row["f1"])] for name, row in first["subsets"].items()]
    overall = first["overall"]
    rows.append(["**all (pooled)**", overall["error_traces"], overall["correct_traces"],
                 percent(overall["error_accuracy"]), percent(overall["correct_accuracy"]), percent(overall["f1"])])
    text = ["## First error (ProcessBench)\n",
            "Predicted first error = the first step scored below the threshold "
            f"({number(first['threshold'])}), or none. Error acc.: exact first step on traces with an "
            "error; correct acc.: no step flagged on traces without one; F1: their harmonic mean.\n",
            table(["subset", "traces with error", "traces without", "error acc.", "correct acc.", "F1"], rows),
            f"\nMean F1 over subsets (ProcessBench's headline): **{percent(first['average_f1'])}**"
            + (f"; {first['skipped']} trace(s) left out (unscored or unknown gold first error)"
               if first["skipped"] else "") + "\n"]
    return "\n".join(text)


def _prmbench_section(classes: dict) -> str:
    rows = [[name, row["traces"], row["bad_steps"], percent(row["step_recall"]), percent(row["false_alarm"]),
             percent(row["trace_detection"]), percent(row["first_error_accuracy"]), percent(row["prm_score"])]
            for name, row in classes.items()]
    return "\n".join(["## Detection per error class (PRMBench)\n",
                      table(["error class", "traces", "bad steps", "bad steps flagged", "good steps flagged",
                              "traces detected", "first error exact", "PRMScore"], rows)])


def _best_of_n_section(curves: dict, plot_names: dict) -> str:
    names = list(curves["methods"])
    labels = [plots.METHOD_STYLE.get(name, (name,))[0] for name in names]
    rows = [[n] + [percent(curves["methods"][name][i]) for name in names] for i, n in enumerate(curves["n"])]
    text = ["## Best-of-N (solve rate)\n",
            f"{curves['problems']} problems, {curves['traces']} traces; each point is the mean over "
            f"{curves['repeats']} random subsets of N traces per problem (seed {curves['seed']}). ORM = the "
            "trace-level score `meta.orm_score`, or the last step's score when absent. These use every "
            "input trace: no threshold is involved.\n",
            table(["N"] + labels, rows)]
    if "best_of_n" in plot_names:
        text.append(f"\n![Best-of-N curve]({plot_names['best_of_n']})\n")
    return "\n".join(text)


def _label_section(quality: dict, plot_names: dict) -> str:
    rows = [[source, row["steps"], percent(row["agreement"]), number(row["kappa"]), percent(row["bad_precision"]),
             percent(row["bad_recall"])] for source, row in quality["by_source"].items()]
    rows.append(["**all**", quality["compared_steps"], percent(quality["agreement"]), number(quality["kappa"]),
                 percent(quality["bad_precision"]), percent(quality["bad_recall"])])
    first = quality["first_error"]
    text = ["## Label quality against gold\n",
            table(["label source", "steps", "agreement", "Cohen's κ", "bad: precision", "bad: recall"], rows),
            f"\nFirst error implied by the labels = gold first error on {percent(first['accuracy'])} of "
            f"{first['traces']} traces (with an error: {percent(first['error_accuracy'])}; without: "
            f"{percent(first['correct_accuracy'])}).\n"]
    soft = quality.get("soft")
    if soft:
        text.append(f"Soft labels on {soft['steps']} steps: ECE {number(soft['ece'])}, "
                    f"Brier {number(soft['brier'])}.\n")
    rollouts = quality.get("rollouts")
    if rollouts:
        text.append(f"Rollouts spent: {rollouts['total']} on {rollouts['traces']} traces (mean "
                    f"{number(rollouts['per_trace_mean'], 1)} per trace, median {number(rollouts['per_trace_median'], 1)}, "
                    f"max {rollouts['per_trace_max']}; {number(rollouts['per_probed_step_mean'], 1)} per probed step; "
                    f"{rollouts['tokens']} tokens).\n")
    if quality.get("checkers"):
        text.append(table(["checker", "verified", "refuted", "unknown", "unavailable", "verified & gold good",
                            "refuted & gold bad"],
                           [[name, row["verified"], row["refuted"], row["unknown"], row["unavailable"],
                             percent(row["verified_precision"]), percent(row["refuted_precision"])]
                            for name, row in quality["checkers"].items()]))
    if "label_calibration" in plot_names:
        text.append(f"\n![Calibration of soft labels]({plot_names['label_calibration']})\n")
    return "\n".join(text)
