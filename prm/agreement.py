"""Where label sources put a trace's first error, and how often two sources agree on it.

Every label source tells, for a trace, the index of its first wrong step (-1: none; None:
it cannot tell). `first_error_of(trace, source)` reads it from a trace:

- "labels" (or any annotation method's name, e.g. "mc", "binary", "judge-labels"): the first
  step hard-labelled 0 (`Trace.first_error`);
- "checker" or "checker:sympy[,z3]": the first step a checker refutes (-1 if none is): a
  checker only sees arithmetic and algebra, so "none refuted" is its answer, not unknown;
- "judge": an LLM judge's voted index (`Trace.judgement`), None without a judgement or vote;
- "gold": `meta["gold_first_error"]`, else the first 0 of `meta["gold_labels"]`.

`agreement_matrix` compares the first errors of several sources over the traces both know:
Qwen's "Lessons of Developing PRMs" keeps a trace for training only when Monte Carlo and
an LLM judge agree on it (`annotate.consensus`), and the matrix says how often that happens
for each pair (`agreement_lines` renders it as a markdown table for reports).
"""

from __future__ import annotations

from itertools import combinations

from prm.markdown import table_lines
from prm.records import Trace, first_error

CHECKER = "checker"


def checker_first_error(trace: Trace, checkers: list[str] | None = None) -> int:
    """0-based index of the first step a checker (of `checkers`, all if None) refutes, -1 if none."""
    for index, step in enumerate(trace.steps):
        if any(v.status == "refuted" and (checkers is None or v.checker in checkers) for v in step.verdicts):
            return index
    return -1


def first_error_of(trace: Trace, source: str) -> int | None:
    """The first error `source` (see the module docstring) puts in `trace`."""
    if source == CHECKER or source.startswith(CHECKER + ":"):
        names = [n for n in source[len(CHECKER) + 1:].split(",") if n] or None
        return checker_first_error(trace, names)
    if source == "judge":
        return None if trace.judgement is None else trace.judgement.vote
    if source == "gold":
        value = trace.meta.get("gold_first_error")
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        labels = trace.meta.get("gold_labels")
        return first_error(labels) if isinstance(labels, list) and len(labels) == len(trace.steps) else None
    return trace.first_error()


def first_errors(traces: list[Trace], source: str) -> dict[str, int | None]:
    """trace id -> the first error `source` puts there."""
    return {trace.id: first_error_of(trace, source) for trace in traces}


def agreement_matrix(by_source: dict[str, dict[str, int | None]]) -> dict:
    """For every pair of sources, over the traces both have and both can tell: how many
    (`both`), how many put the first error at the same step (`agree`) and the rate.

    by_source: source name -> {trace id: first error}. Returns {"sources": [...],
    "pairs": {"a|b": {"both", "agree", "rate"}}} (rate None when `both` is 0)."""
    pairs = {}
    for a, b in combinations(by_source, 2):
        shared = [i for i, value in by_source[a].items()
                  if value is not None and by_source[b].get(i) is not None]
        agree = sum(by_source[a][i] == by_source[b][i] for i in shared)
        pairs[f"{a}|{b}"] = {"both": len(shared), "agree": agree,
                             "rate": agree / len(shared) if shared else None}
    return {"sources": list(by_source), "pairs": pairs}


def pair(matrix: dict, a: str, b: str) -> dict | None:
    """The entry of a pair, in either order."""
    return matrix["pairs"].get(f"{a}|{b}") or matrix["pairs"].get(f"{b}|{a}")


def agreement_lines(matrix: dict) -> list[str]:
    """The matrix as a markdown table: agreement rate (agreeing / traces both can tell)."""
    sources = matrix["sources"]
    rows = []
    for a in sources:
        row = [a]
        for b in sources:
            entry = None if a == b else pair(matrix, a, b)
            if a == b:
                row.append("–")
            elif entry is None or entry["rate"] is None:
                row.append("n/a")
            else:
                row.append(f"{100 * entry['rate']:.1f}% ({entry['agree']}/{entry['both']})")
        rows.append(row)
    return table_lines(["first error"] + sources, rows)
