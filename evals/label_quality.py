"""How good are automatic step labels? Monte Carlo, binary-search or checker labels
against gold labels, and what they cost.

`label_quality(traces)` compares each step's hard label (whatever its `label_source`)
with the gold label (see `evals.gold`), the soft labels' calibration, the first error the
labels imply with the gold first error, each checker's verdicts with gold, and counts
the Monte Carlo rollouts spent. Unknown labels are left out and reported as coverage.
"""

from __future__ import annotations

from collections import defaultdict

import numpy as np
from sklearn import metrics as skm

from evals.gold import DEFAULT_GOLD, gold_first_error, gold_step_labels
from evals.step_metrics import calibration_table, expected_calibration_error
from prm.records import Trace


def label_quality(traces: list[Trace], gold: str = DEFAULT_GOLD, bins: int = 10) -> dict:
    """Agreement, first-error accuracy, soft-label calibration, checker verdicts against
    gold, and rollouts spent. Every rate is in [0, 1], None when nothing was comparable."""
    hard, gold_hard, sources = [], [], []
    soft, gold_soft = [], []
    steps_total = 0
    for trace in traces:
        for step, truth in zip(trace.steps, gold_step_labels(trace, gold)):
            steps_total += 1
            if truth is None:
                continue
            if step.hard_label is not None:
                hard.append(step.hard_label)
                gold_hard.append(truth)
                sources.append(step.label_source or "unknown")
            if step.soft_label is not None:
                soft.append(step.soft_label)
                gold_soft.append(truth)
    hard, gold_hard = np.array(hard, dtype=int), np.array(gold_hard, dtype=int)
    result = {"traces": len(traces), "steps": steps_total, "compared_steps": int(hard.size),
              **_agreement(hard, gold_hard)}
    result["by_source"] = {}
    for source in sorted(set(sources)):
        mask = np.array([s == source for s in sources])
        result["by_source"][source] = {"steps": int(mask.sum()), **_agreement(hard[mask], gold_hard[mask])}
    result["first_error"] = _first_error_accuracy(traces, gold)
    result["soft"] = _soft_calibration(np.array(soft, dtype=float), np.array(gold_soft, dtype=int), bins)
    result["checkers"] = _checkers(traces, gold)
    result["rollouts"] = _rollouts(traces)
    return result


def _agreement(labels: np.ndarray, truth: np.ndarray) -> dict:
    """Agreement with gold, Cohen's kappa, and precision/recall of the label 0 (bad)."""
    if labels.size == 0:
        return {"agreement": None, "kappa": None, "bad_precision": None, "bad_recall": None}
    varied = len(set(labels.tolist()) | set(truth.tolist())) > 1
    return {"agreement": float((labels == truth).mean()),
            "kappa": float(skm.cohen_kappa_score(labels, truth)) if varied else None,
            "bad_precision": float((truth[labels == 0] == 0).mean()) if (labels == 0).any() else None,
            "bad_recall": float((labels[truth == 0] == 0).mean()) if (truth == 0).any() else None}


def _first_error_accuracy(traces: list[Trace], gold: str) -> dict:
    """How often the first error implied by the step labels is the gold first error."""
    pairs = [(t.first_error(), gold_first_error(t, gold)) for t in traces]
    pairs = [(mine, truth) for mine, truth in pairs if mine is not None and truth is not None]
    error = [mine == truth for mine, truth in pairs if truth != -1]
    correct = [mine == truth for mine, truth in pairs if truth == -1]
    return {"traces": len(pairs),
            "accuracy": float(np.mean([m == t for m, t in pairs])) if pairs else None,
            "error_accuracy": float(np.mean(error)) if error else None,
            "correct_accuracy": float(np.mean(correct)) if correct else None}


def _soft_calibration(soft: np.ndarray, truth: np.ndarray, bins: int) -> dict | None:
    if soft.size == 0:
        return None
    table = calibration_table(soft, truth, bins)
    return {"steps": int(soft.size), "ece": expected_calibration_error(table),
            "brier": float(skm.brier_score_loss(truth, soft)), "calibration": table}


def _checkers(traces: list[Trace], gold: str) -> dict:
    """Per checker: how many verdicts of each status, and how often verified steps are
    gold-good and refuted steps gold-bad."""
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for trace in traces:
        for step, truth in zip(trace.steps, gold_step_labels(trace, gold)):
            for verdict in step.verdicts:
                row = counts[verdict.checker]
                row[verdict.status] += 1
                if truth is not None and verdict.status in ("verified", "refuted"):
                    row[f"{verdict.status}_with_gold"] += 1
                    right = truth == (1 if verdict.status == "verified" else 0)
                    row[f"{verdict.status}_right"] += int(right)
    result = {}
    for name, row in sorted(counts.items()):
        result[name] = {status: row[status] for status in ("verified", "refuted", "unknown", "unavailable")}
        for status in ("verified", "refuted"):
            seen = row[f"{status}_with_gold"]
            result[name][f"{status}_precision"] = row[f"{status}_right"] / seen if seen else None
    return result


def _rollouts(traces: list[Trace]) -> dict | None:
    per_trace, tokens, probed_steps = [], 0, 0
    for trace in traces:
        spent = [s.rollouts for s in trace.steps if s.rollouts is not None]
        if spent:
            per_trace.append(sum(r.total for r in spent))
            tokens += sum(r.tokens for r in spent)
            probed_steps += len(spent)
    if not per_trace:
        return None
    return {"traces": len(per_trace), "total": int(sum(per_trace)),
            "per_trace_mean": float(np.mean(per_trace)), "per_trace_median": float(np.median(per_trace)),
            "per_trace_max": int(max(per_trace)), "probed_steps": probed_steps,
            "per_probed_step_mean": float(sum(per_trace) / probed_steps), "tokens": int(tokens)}
