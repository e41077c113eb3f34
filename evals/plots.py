"""The report's figures, each readable on its own: title, labelled axes with units, legend.

Figures are built with matplotlib's object API (`matplotlib.figure.Figure`), never
pyplot, so nothing here touches global state or needs a display: they render with Agg
when saved, and a notebook can show the returned `Figure` as it is.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.figure import Figure
from matplotlib.patches import Patch, Rectangle
from sklearn.metrics import roc_curve

from evals.first_error import predict_first_error
from evals.gold import DEFAULT_GOLD, gold_first_error, gold_step_labels
from prm.records import Trace

METHOD_STYLE = {  # name -> (legend label, colour, line style)
    "oracle": ("oracle (pass@N)", "0.55", "--"),
    "majority": ("majority vote", "black", "-"),
    "orm": ("ORM best-of-N", "tab:purple", "-."),
    "prm_min": ("PRM best-of-N (min)", "tab:blue", "-"),
    "prm_prod": ("PRM best-of-N (prod)", "tab:orange", "-"),
    "prm_last": ("PRM best-of-N (last)", "tab:green", "-"),
    "prm_mean": ("PRM best-of-N (mean)", "tab:red", "-"),
    "weighted_min": ("PRM-weighted vote (min)", "tab:blue", ":"),
    "weighted_prod": ("PRM-weighted vote (prod)", "tab:orange", ":"),
    "weighted_last": ("PRM-weighted vote (last)", "tab:green", ":"),
    "weighted_mean": ("PRM-weighted vote (mean)", "tab:red", ":"),
}


def save(figure: Figure, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110, bbox_inches="tight")
    return path


def calibration_figure(table: list[dict], ece: float, what: str = "step score") -> Figure:
    """Reliability diagram: observed fraction of good steps against mean predicted
    probability per bin, with the number of steps per bin as grey bars."""
    figure = Figure(figsize=(6, 5))
    ax = figure.add_subplot()
    counts = ax.twinx()
    lows = [row["low"] for row in table]
    width = table[0]["high"] - table[0]["low"] if table else 0.1
    counts.bar(lows, [row["count"] for row in table], width=width, align="edge", color="0.85",
               edgecolor="0.6", label="steps in bin (right axis)")
    counts.set_ylabel("steps in bin (count)")
    ax.set_zorder(counts.get_zorder() + 1)
    ax.patch.set_visible(False)
    filled = [row for row in table if row["count"]]
    ax.plot([0, 1], [0, 1], ls="--", color="0.4", label="perfect calibration")
    ax.plot([row["mean_predicted"] for row in filled], [row["fraction_good"] for row in filled],
            marker="o", color="tab:blue", label=f"{what}s")
    ax.set_xlim(0, 1)
    ax.set_ylim(-0.02, 1.02)
    ax.set_xlabel(f"mean {what} in bin (predicted probability that a step is good)")
    ax.set_ylabel("observed fraction of gold-good steps")
    ax.set_title(f"Calibration of {what}s against gold (ECE = {ece:.3f})")
    handles = ax.get_legend_handles_labels()[0] + counts.get_legend_handles_labels()[0]
    ax.legend(handles=handles, loc="upper left")
    return figure


def roc_figure(scores: np.ndarray, labels: np.ndarray, threshold: float, auroc: float | None) -> Figure:
    """ROC of step scores: accepting a step when its score >= t, for every t."""
    figure = Figure(figsize=(5.5, 5))
    ax = figure.add_subplot()
    fpr, tpr, _ = roc_curve(labels, scores)
    ax.plot(fpr, tpr, color="tab:blue", label=f"step scores (AUROC = {auroc:.3f})" if auroc is not None
            else "step scores")
    ax.plot([0, 1], [0, 1], ls="--", color="0.5", label="chance")
    accepted = scores >= threshold
    bad, good = labels == 0, labels == 1
    if bad.any() and good.any():
        ax.plot(accepted[bad].mean(), accepted[good].mean(), "o", color="tab:red", ms=8,
                label=f"chosen threshold {threshold:.3f}")
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel("false positive rate (fraction of gold-bad steps accepted)")
    ax.set_ylabel("true positive rate (fraction of gold-good steps accepted)")
    ax.set_title("ROC of step scores against gold labels")
    ax.legend(loc="lower right")
    return figure


def best_of_n_figure(curves: dict) -> Figure:
    """Solve rate against the number of sampled solutions N, one line per method."""
    figure = Figure(figsize=(8, 5))
    ax = figure.add_subplot()
    ns = curves["n"]
    for name, rates in curves["methods"].items():
        label, colour, style = METHOD_STYLE.get(name, (name, None, "-"))
        if name == "orm" and curves.get("orm_source"):
            label += f" ({curves['orm_source']})"
        ax.plot(ns, [100 * r for r in rates], ls=style, color=colour, marker="o", ms=4, label=label,
                lw=2.5 if name == "orm" else 1.5, zorder=3 if name == "orm" else 2)
    ax.set_xscale("log", base=2)
    ax.set_xticks(ns, [str(n) for n in ns])
    ax.set_xlabel("N, solutions sampled per problem (log scale)")
    ax.set_ylabel("solve rate (% of problems)")
    ax.set_title(f"Best-of-N on {curves['problems']} problems "
                 f"(mean over {curves['repeats']} random subsets, seed {curves['seed']})")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return figure


def pick_heatmap_traces(traces: list[Trace], gold: str = DEFAULT_GOLD, count: int = 8) -> list[Trace]:
    """A few scored traces, half with a gold error and half without where possible, in id
    order (the same traces on every run)."""
    scored = sorted((t for t in traces if all(s.score is not None for s in t.steps)), key=lambda t: t.id)
    firsts = {t.id: gold_first_error(t, gold) for t in scored}
    wrong = [t for t in scored if firsts[t.id] is not None and firsts[t.id] >= 0]
    right = [t for t in scored if firsts[t.id] == -1]
    chosen = wrong[:count // 2] + right[:count // 2]
    taken = {t.id for t in chosen}
    rest = [t for t in scored if t.id not in taken]
    return (chosen + rest)[:count]


def step_heatmap_figure(traces: list[Trace], threshold: float, gold: str = DEFAULT_GOLD) -> Figure:
    """One row per trace, one cell per step coloured by its score; gold-bad steps boxed
    in black, the predicted first error (first score below threshold) marked with x."""
    width = max(len(t.steps) for t in traces)
    grid = np.full((len(traces), width), np.nan)
    for row, trace in enumerate(traces):
        grid[row, :len(trace.steps)] = [s.score for s in trace.steps]
    figure = Figure(figsize=(min(2 + 0.7 * width, 16), 1.2 + 0.55 * len(traces)))
    ax = figure.add_subplot()
    cmap = colormaps["RdYlGn"].with_extremes(bad="white")
    image = ax.imshow(np.ma.masked_invalid(grid), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for row, trace in enumerate(traces):
        labels = gold_step_labels(trace, gold)
        for col, step in enumerate(trace.steps):
            if width <= 20:
                ax.text(col, row, f"{step.score:.2f}", ha="center", va="center", fontsize=7)
            if labels[col] == 0:
                ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, lw=2.2, ec="black"))
        predicted = predict_first_error([s.score for s in trace.steps], threshold)
        if predicted >= 0:
            ax.plot(predicted, row - 0.32, marker="x", color="navy", ms=7, mew=2)
    ax.set_yticks(range(len(traces)), [_row_label(t, gold) for t in traces], fontsize=8)
    ax.set_xticks(range(width), [str(i) for i in range(width)])
    ax.set_xlabel("step index (0-based)")
    ax.set_title(f"Step scores of {len(traces)} traces (threshold {threshold:.2f})")
    colorbar = figure.colorbar(image, ax=ax, pad=0.02)
    colorbar.set_label("step score (P(step is good))")
    ax.legend(handles=[Patch(fill=False, ec="black", lw=2.2, label="gold: bad step"),
                       ax.plot([], [], "x", color="navy", mew=2, label="predicted first error")[0]],
              loc="upper center", bbox_to_anchor=(0.5, -0.12 - 0.3 / len(traces)), ncol=2, fontsize=8)
    return figure


def _row_label(trace: Trace, gold: str) -> str:
    name = trace.id if len(trace.id) <= 24 else trace.id[:21] + "..."
    first = gold_first_error(trace, gold)
    return f"{name} (gold first error {'?' if first is None else first})"
