"""Step-level metrics of reward-model scores against gold step labels.

A step is predicted bad when its score (the model's probability that the step is good)
is below a threshold. The threshold is chosen on validation traces
(`choose_threshold(val_traces)`) and then applied to test traces
(`step_metrics(test_traces, threshold)`), never chosen on the traces it is measured on.
When only one set of traces is given, `split_by_id` cuts it in two by a hash of the
trace id, so the split is the same on every run and every machine.

The positive class of precision, recall, F1 and average precision is a *bad* step: a
PRM's job is to find errors, and good steps are the majority. AUROC does not depend on
the choice. Metrics come from scikit-learn; only the calibration table is written here,
because scikit-learn's `calibration_curve` drops empty bins and gives no counts.
"""

from __future__ import annotations

import hashlib

import numpy as np

from evals.gold import DEFAULT_GOLD, gold_step_labels
from prm.errors import RecordError
from prm.records import Trace

OBJECTIVES = ("accuracy", "balanced_accuracy", "f1")


def step_pairs(traces: list[Trace], gold: str = DEFAULT_GOLD, values: str = "score"):
    """(values, gold labels) as two arrays over every step where both are known.

    `values` is the step attribute compared with gold: "score" (reward model) or
    "soft_label" (Monte Carlo estimate).
    """
    xs, ys = [], []
    for trace in traces:
        for step, label in zip(trace.steps, gold_step_labels(trace, gold)):
            value = getattr(step, values)
            if value is not None and label is not None:
                xs.append(float(value))
                ys.append(label)
    return np.asarray(xs, dtype=float), np.asarray(ys, dtype=int)


def split_by_id(traces: list[Trace], val_fraction: float = 0.5) -> tuple[list[Trace], list[Trace]]:
    """(validation, test): a trace goes to validation when the hash of its id falls in the
    first `val_fraction` of the hash range. Independent of order, seed-free, stable."""
    val, test = [], []
    for trace in traces:
        digest = hashlib.sha256(trace.id.encode("utf-8")).digest()
        position = int.from_bytes(digest[:8], "big") / 2 ** 64
        (val if position < val_fraction else test).append(trace)
    return val, test


def candidate_thresholds(values: np.ndarray) -> np.ndarray:
    """One threshold inside each interval on which "value < t" is constant.

    The rule `value < t` changes only when t passes a value, so the lowest value, the
    midpoints between neighbouring distinct values and a point just above the highest
    cover every distinct outcome.
    """
    unique = np.unique(values)
    if unique.size == 0:
        return np.array([0.5])
    mids = (unique[:-1] + unique[1:]) / 2
    return np.concatenate([[unique[0]], mids, [np.nextafter(unique[-1], np.inf)]])


def pick_best(candidates: np.ndarray, objective: np.ndarray) -> float:
    """The candidate with the best objective; among ties, the median one (the middle of a
    plateau, far from both edges)."""
    best = np.flatnonzero(objective >= objective.max() - 1e-12)
    return float(candidates[best[len(best) // 2]])


def choose_threshold(val_traces: list[Trace], gold: str = DEFAULT_GOLD, objective: str = "accuracy",
                     values: str = "score") -> float:
    """The threshold that maximises `objective` of step predictions on validation traces.

    objective: "accuracy", "balanced_accuracy", or "f1" (of finding bad steps).
    """
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {objective!r}")
    scores, labels = step_pairs(val_traces, gold, values)
    if scores.size == 0:
        raise RecordError("no validation step has both a score and a gold label")
    candidates = candidate_thresholds(scores)
    bad, good = np.sort(scores[labels == 0]), np.sort(scores[labels == 1])
    flagged_bad = np.searchsorted(bad, candidates, side="left")  # bad steps with score < t
    flagged_good = np.searchsorted(good, candidates, side="left")  # good steps with score < t
    n_bad, n_good = bad.size, good.size
    if objective == "accuracy":
        value = (flagged_bad + n_good - flagged_good) / (n_bad + n_good)
    elif objective == "balanced_accuracy":
        value = (_ratio(flagged_bad, n_bad) + _ratio(n_good - flagged_good, n_good)) / 2
    else:
        value = _ratio(2 * flagged_bad, flagged_bad + flagged_good + n_bad)
    return pick_best(candidates, np.asarray(value, dtype=float))


def _ratio(numerator, denominator):
    numerator = np.asarray(numerator, dtype=float)
    denominator = np.asarray(denominator, dtype=float)
    return np.divide(numerator, denominator, out=np.zeros_like(numerator), where=denominator > 0)


def step_metrics(traces: list[Trace], threshold: float, gold: str = DEFAULT_GOLD, bins: int = 10,
                 values: str = "score") -> dict:
    """Accuracy, precision/recall/F1 of finding bad steps, AUROC, average precision, Brier
    score, calibration table and expected calibration error, at `threshold`."""
    from sklearn import metrics as skm  # imported here: seconds that commands needing only OBJECTIVES skip

    scores, labels = step_pairs(traces, gold, values)
    if scores.size == 0:
        raise RecordError(f"no step has both a {values} and a gold label")
    predicted_bad = (scores < threshold).astype(int)
    is_bad = 1 - labels
    both_classes = 0 < labels.sum() < labels.size  # else AUROC and balanced accuracy are undefined
    table = calibration_table(scores, labels, bins)
    return {
        "threshold": float(threshold),
        "steps": int(labels.size),
        "bad_steps": int(is_bad.sum()),
        "accuracy": float(skm.accuracy_score(is_bad, predicted_bad)),
        "balanced_accuracy": (float(skm.balanced_accuracy_score(is_bad, predicted_bad))
                              if both_classes else None),
        "precision": float(skm.precision_score(is_bad, predicted_bad, zero_division=0)),
        "recall": float(skm.recall_score(is_bad, predicted_bad, zero_division=0)),
        "f1": float(skm.f1_score(is_bad, predicted_bad, zero_division=0)),
        "auroc": float(skm.roc_auc_score(labels, scores)) if both_classes else None,
        "average_precision": float(skm.average_precision_score(is_bad, 1 - scores)) if both_classes else None,
        "brier": float(skm.brier_score_loss(labels, scores)),
        "ece": expected_calibration_error(table),
        "calibration": table,
    }


def calibration_table(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict]:
    """Equal-width bins over [0, 1]: count, mean predicted probability and observed
    fraction of good steps in each (empty bins kept, with None)."""
    probabilities = np.asarray(probabilities, dtype=float)
    labels = np.asarray(labels, dtype=float)
    edges = np.linspace(0.0, 1.0, bins + 1)
    # Bin i holds [edge_i, edge_i+1); the last bin also holds 1.0.
    index = np.clip(np.searchsorted(edges, probabilities, side="right") - 1, 0, bins - 1)
    rows = []
    for i in range(bins):
        inside = index == i
        count = int(inside.sum())
        rows.append({"low": float(edges[i]), "high": float(edges[i + 1]), "count": count,
                     "mean_predicted": float(probabilities[inside].mean()) if count else None,
                     "fraction_good": float(labels[inside].mean()) if count else None})
    return rows


def expected_calibration_error(table: list[dict]) -> float:
    """Sum over bins of (bin share of steps) x |mean predicted - observed fraction|."""
    total = sum(row["count"] for row in table)
    if total == 0:
        return float("nan")
    return float(sum(row["count"] / total * abs(row["mean_predicted"] - row["fraction_good"])
                     for row in table if row["count"]))


def calibration_change(traces: list[Trace], gold: str = DEFAULT_GOLD, bins: int = 10) -> dict | None:
    """ECE and Brier of the steps' raw scores (meta["uncalibrated_scores"], kept by `prm eval` for
    a model calibrated with `prm calibrate`) and of their calibrated scores (`Step.score`), on the
    same steps; None when no trace keeps raw scores."""
    before, after, labels = [], [], []
    for trace in traces:
        raw = trace.meta.get("uncalibrated_scores")
        if not isinstance(raw, list) or len(raw) != len(trace.steps):
            continue
        for step, value, label in zip(trace.steps, raw, gold_step_labels(trace, gold)):
            if value is not None and step.score is not None and label is not None:
                before.append(float(value))
                after.append(step.score)
                labels.append(label)
    if not labels:
        return None
    from sklearn import metrics as skm

    labels_array = np.asarray(labels, dtype=int)

    def measured(values: list[float]) -> dict:
        values_array = np.asarray(values, dtype=float)
        return {"ece": expected_calibration_error(calibration_table(values_array, labels_array, bins)),
                "brier": float(skm.brier_score_loss(labels_array, values_array))}

    return {"steps": len(labels), "before": measured(before), "after": measured(after)}
