"""Solve rate against compute for test-time search results (`prm search` output).

Each result trace carries `meta.search`: its strategy, budget, settings (seed), compute
(generated tokens) and its sampled candidates (answer, correct, tokens). This module
groups results into one point per (method, budget): the solve rate and the mean generated
tokens per problem, averaged over seeds with the spread (min, max) across seeds. From
best-of-N style runs it also derives the two references, for every N up to the run's:
majority vote and oracle pass@N over the first N samples (sample j is the same whatever
N is, so the first N of a 16-sample run are an N-sample run).

`search_metrics(traces)` -> dict; `search_figure(metrics)` -> the PNG's figure;
`search_section(metrics, plot_name)` -> the report's markdown.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from matplotlib.figure import Figure

from prm.markdown import table
from prm.records import Trace

SAMPLED = ("best-of-n", "weighted-vote", "majority")
REFERENCE_STYLE = {"oracle (pass@N)": ("0.55", "--"), "majority vote": ("black", "-")}


def is_search_result(trace: Trace) -> bool:
    return isinstance(trace.meta.get("search"), dict) and "compute" in trace.meta["search"]


def method_label(trace: Trace) -> str:
    """`meta.search.label` if the run named itself, else its strategy."""
    search = trace.meta["search"]
    return str(search.get("label") or search["strategy"])


def _budget_solutions(budget: str) -> float | None:
    return float(budget[:-1]) if str(budget).endswith("x") else None


def search_metrics(traces: list[Trace]) -> dict:
    """{"methods": {label: [point, ...]}, "references": {...}, "problems", "seeds"}; a point is
    {"budget", "tokens" (mean per problem), "solve_rate" (mean over seeds), "min", "max",
    "seeds", "problems"}, sorted by tokens."""
    runs: dict[tuple, list[Trace]] = defaultdict(list)
    for trace in traces:
        if is_search_result(trace) and trace.outcome_label is not None:
            search = trace.meta["search"]
            runs[(method_label(trace), search["budget"], search.get("settings", {}).get("seed"))].append(trace)
    per_seed: dict[tuple, list[tuple[float, float, int]]] = defaultdict(list)
    references: dict[tuple, list[tuple[float, float, int]]] = defaultdict(list)
    for (label, budget, seed), group in runs.items():
        rate = float(np.mean([t.outcome_label for t in group]))
        tokens = float(np.mean([t.meta["search"]["compute"]["generated_tokens"] for t in group]))
        per_seed[(label, budget)].append((rate, tokens, len(group)))
        if group[0].meta["search"]["strategy"] in SAMPLED:
            for name, n, point in _reference_points(group):
                references[(name, f"{n}x")].append(point)
    result = {"methods": _points(per_seed), "references": _points(references),
              "problems": max((len(g) for g in runs.values()), default=0),
              "seeds": sorted({seed for (_, _, seed) in runs if seed is not None})}
    return result


def _reference_points(group: list[Trace]):
    """Majority vote and pass@n over the first n samples of each problem, n = 1, 2, 4, ..."""
    counts = [len(t.meta["search"].get("candidates") or []) for t in group]
    if not counts or min(counts) == 0:
        return
    top = min(counts)
    for n in [2 ** k for k in range(12) if 2 ** k <= top]:
        solved_vote, solved_any, tokens = [], [], []
        for trace in group:
            first = trace.meta["search"]["candidates"][:n]
            solved_any.append(any(c.get("correct") for c in first))
            solved_vote.append(_majority_correct(first))
            tokens.append(sum(c.get("tokens", 0) for c in first))
        spent = float(np.mean(tokens))
        yield "oracle (pass@N)", n, (float(np.mean(solved_any)), spent, len(group))
        yield "majority vote", n, (float(np.mean(solved_vote)), spent, len(group))


def _majority_correct(candidates: list[dict]) -> bool:
    """Whether the most frequent answer (ties: the one given first) is correct."""
    votes: dict[str, list] = {}
    for c in candidates:
        if c.get("answer") is None:
            continue
        key = str(c["answer"]).strip()
        votes.setdefault(key, []).append(bool(c.get("correct")))
    if not votes:
        return False
    winner = max(votes, key=lambda key: len(votes[key]))  # dicts keep first-given order; max keeps the first
    return any(votes[winner])


def _points(groups: dict[tuple, list[tuple[float, float, int]]]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = defaultdict(list)
    for (label, budget), runs in groups.items():
        rates = [r for r, _, _ in runs]
        out[label].append({"budget": budget, "tokens": float(np.mean([t for _, t, _ in runs])),
                           "solve_rate": float(np.mean(rates)), "min": float(min(rates)),
                           "max": float(max(rates)), "seeds": len(runs), "problems": runs[0][2]})
    for points in out.values():
        points.sort(key=lambda p: (p["tokens"], str(p["budget"])))
    return dict(out)


def search_figure(metrics: dict, title: str | None = None) -> Figure:
    """Solve rate (%) against mean generated tokens per problem (log scale), one line per
    method, references dashed; bars show the min-max over seeds."""
    figure = Figure(figsize=(8, 5))
    ax = figure.add_subplot()
    for label, points in metrics["references"].items():
        colour, style = REFERENCE_STYLE.get(label, (None, ":"))
        _line(ax, points, label, colour, style)
    for label, points in metrics["methods"].items():
        _line(ax, points, label, None, "-")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("generated tokens per problem (log scale)")
    ax.set_ylabel("solve rate (% of problems)")
    seeds = len(metrics.get("seeds") or []) or 1
    ax.set_title(title or f"Test-time search on {metrics['problems']} problems ({seeds} seed(s))")
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    return figure


def _line(ax, points, label, colour, style):
    x = [p["tokens"] for p in points]
    y = [100 * p["solve_rate"] for p in points]
    low = [100 * (p["solve_rate"] - p["min"]) for p in points]
    high = [100 * (p["max"] - p["solve_rate"]) for p in points]
    ax.errorbar(x, y, yerr=[low, high], ls=style, color=colour, marker="o", ms=4, capsize=2, label=label)


def search_section(metrics: dict, plot_name: str | None = None) -> str:
    """The report's markdown: one row per method and budget."""
    lines = ["## Test-time search: solve rate against compute\n",
             (f"{metrics['problems']} problems; seeds {metrics.get('seeds') or ['?']}. Tokens are the mean "
              "generated tokens per problem; the solve rate is the mean over seeds (min-max in brackets). "
              "References come from the sampled solutions of best-of-N style runs (first N samples).\n")]
    rows = []
    for kind in ("references", "methods"):
        for label, points in metrics[kind].items():
            for p in points:
                spread = f" ({100 * p['min']:.1f}-{100 * p['max']:.1f})" if p["seeds"] > 1 else ""
                rows.append([label, p["budget"], f"{p['tokens']:.0f}", f"{100 * p['solve_rate']:.1f}%{spread}"])
    lines.append(table(["method", "budget", "tokens per problem", "solve rate"], rows))
    if plot_name:
        lines.append(f"\n![Solve rate against compute]({plot_name})\n")
    return "\n".join(lines) + "\n"
