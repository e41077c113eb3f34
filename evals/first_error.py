"""First-error identification, as in ProcessBench (Zheng et al., arXiv 2412.06559).

The prediction for a trace is the earliest step whose score is below a threshold, or -1
when no step is; for a trace an LLM judge critiqued (`Trace.judgement`, ProcessBench's critic
evaluation) it is the judge's voted index, and a vote that could not be parsed (None) is wrong. It is right when it equals the gold first error exactly. ProcessBench
reports, per subset, the accuracy on traces that have an error, the accuracy on traces
that have none, and F1 = their harmonic mean; its headline number is the mean F1 over
subsets. A trace's subset is `meta["subset"]`, else `meta["source"]`, else "all".

`choose_first_error_threshold` picks the threshold that maximises the pooled F1 on
validation traces. It is exact, not a grid search: each trace is predicted right on one
interval of thresholds, so F1 only changes at interval ends (see `_right_intervals`).
"""

from __future__ import annotations

import numpy as np

from evals.gold import DEFAULT_GOLD, gold_first_error
from evals.step_metrics import candidate_thresholds, pick_best
from prm.errors import RecordError
from prm.records import Trace


def predict_first_error(scores: list[float], threshold: float) -> int:
    """Index of the first score below `threshold`, or -1 if none is."""
    for index, score in enumerate(scores):
        if score < threshold:
            return index
    return -1


def predicted_first_error(trace: Trace, threshold: float) -> int | None:
    """The judge's vote when the trace has a judgement, else the threshold rule on its scores."""
    if trace.judgement is not None:
        return trace.judgement.vote
    return predict_first_error([s.score for s in trace.steps], threshold)


def subset_of(trace: Trace) -> str:
    return str(trace.meta.get("subset") or trace.meta.get("source") or "all")


def harmonic_mean(a: float | None, b: float | None) -> float | None:
    if a is None or b is None:
        return None
    return 0.0 if a + b == 0 else 2 * a * b / (a + b)


def _evaluable(traces: list[Trace], gold: str) -> tuple[list[tuple[Trace, int]], int]:
    """(trace, gold first error) for traces fully scored with a known first error; and
    how many traces were left out."""
    kept = []
    for trace in traces:
        first = gold_first_error(trace, gold)
        if first is not None and all(s.score is not None for s in trace.steps):
            kept.append((trace, first))
    return kept, len(traces) - len(kept)


def first_error_metrics(traces: list[Trace], threshold: float, gold: str = DEFAULT_GOLD) -> dict:
    """ProcessBench metrics at `threshold`, per subset and pooled.

    Returns {"threshold", "skipped", "subsets": {name: row}, "overall": row,
    "average_f1"}, where a row is {"error_traces", "correct_traces", "error_accuracy",
    "correct_accuracy", "f1"} (accuracies in [0, 1]; None where a subset has no trace of
    that kind). `average_f1` is the mean F1 over subsets, ProcessBench's headline.
    """
    kept, skipped = _evaluable(traces, gold)
    if not kept:
        raise RecordError("no trace has both scores on every step and a known gold first error")
    groups: dict[str, list[tuple[int, int]]] = {}
    for trace, first in kept:
        predicted = predicted_first_error(trace, threshold)
        groups.setdefault(subset_of(trace), []).append((first, predicted))
    subsets = {name: _row(pairs) for name, pairs in sorted(groups.items())}
    f1s = [row["f1"] for row in subsets.values() if row["f1"] is not None]
    return {"threshold": float(threshold), "skipped": skipped, "subsets": subsets,
            "overall": _row([pair for pairs in groups.values() for pair in pairs]),
            "average_f1": float(np.mean(f1s)) if f1s else None}


def _row(pairs: list[tuple[int, int | None]]) -> dict:
    error = [gold == predicted for gold, predicted in pairs if gold != -1]
    correct = [gold == predicted for gold, predicted in pairs if gold == -1]
    error_accuracy = float(np.mean(error)) if error else None
    correct_accuracy = float(np.mean(correct)) if correct else None
    return {"error_traces": len(error), "correct_traces": len(correct),
            "error_accuracy": error_accuracy, "correct_accuracy": correct_accuracy,
            "f1": harmonic_mean(error_accuracy, correct_accuracy)}


def _right_intervals(kept: list[tuple[Trace, int]]):
    """For each trace, the thresholds t with lo < t <= hi at which its prediction is right.

    With gold first error k, the prediction is k iff step k scores below t (t > s_k) and
    every earlier step does not (t <= min of s_0..s_k-1). With no error (k = -1) it is
    right iff t <= min of all scores. Returns (is_error_trace, lo, hi) arrays.
    """
    is_error, lo, hi = [], [], []
    for trace, first in kept:
        scores = [s.score for s in trace.steps]
        if first == -1:
            is_error.append(False)
            lo.append(-np.inf)
            hi.append(min(scores))
        else:
            is_error.append(True)
            lo.append(scores[first])
            hi.append(min(scores[:first]) if first > 0 else np.inf)
    return np.array(is_error, dtype=bool), np.array(lo, dtype=float), np.array(hi, dtype=float)


def choose_first_error_threshold(val_traces: list[Trace], gold: str = DEFAULT_GOLD) -> float:
    """The threshold that maximises pooled ProcessBench F1 on validation traces."""
    kept, _ = _evaluable(val_traces, gold)
    if not kept:
        raise RecordError("no validation trace has both scores on every step and a known gold "
                          "first error")
    is_error, lo, hi = _right_intervals(kept)
    ends = np.concatenate([lo, hi])
    candidates = candidate_thresholds(ends[np.isfinite(ends)])
    accuracies = []
    for group in (is_error, ~is_error):
        if not group.any():
            continue
        possible = group & (lo < hi)  # lo >= hi: right at no threshold
        g_lo, g_hi = np.sort(lo[possible]), np.sort(hi[possible])
        # right at t: lo < t, minus those whose interval already ended (hi < t)
        right = np.searchsorted(g_lo, candidates, side="left") - np.searchsorted(g_hi, candidates,
                                                                                   side="left")
        accuracies.append(right / group.sum())
    if len(accuracies) == 1:
        objective = accuracies[0]
    else:
        a, b = accuracies
        objective = np.divide(2 * a * b, a + b, out=np.zeros_like(a), where=(a + b) > 0)
    return pick_best(candidates, objective)
