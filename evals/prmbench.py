"""PRMBench-style detection rates per error class.

PRMBench (Song et al., arXiv 2501.03124) inserts one kind of error into correct
solutions (circular reasoning, counterfactual, missing condition, ...) and asks how
often a PRM notices. For every trace with `meta["error_class"]`, and per class:

- `step_recall`: fraction of gold-bad steps scored below the threshold;
- `false_alarm`: fraction of gold-good steps scored below the threshold;
- `trace_detection`: fraction of traces with a gold error where some step is flagged;
- `first_error_accuracy`: fraction of those where the first flagged step is the first
  gold error (the ProcessBench criterion);
- `prm_score`: PRMBench's PRMScore, the mean of the F1 on good steps and the F1 on bad
  steps (scikit-learn's macro F1) over all steps of the class (only the F1 of the one
  kind of step when a class has only one, e.g. PRMBench's unmodified "correct" traces).
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import f1_score

from evals.first_error import predict_first_error
from evals.gold import DEFAULT_GOLD, gold_first_error, gold_step_labels
from prm.records import Trace


def per_class_detection(traces: list[Trace], threshold: float, gold: str = DEFAULT_GOLD) -> dict:
    """{class: row} for traces carrying `meta["error_class"]` and scores on every step."""
    by_class: dict[str, list[Trace]] = {}
    for trace in traces:
        name = trace.meta.get("error_class")
        if name is not None and all(s.score is not None for s in trace.steps):
            by_class.setdefault(str(name), []).append(trace)
    return {name: _detection(group, threshold, gold) for name, group in sorted(by_class.items())}


def _detection(traces: list[Trace], threshold: float, gold: str) -> dict:
    labels, flagged, detected, exact = [], [], [], []
    for trace in traces:
        scores = [s.score for s in trace.steps]
        for score, label in zip(scores, gold_step_labels(trace, gold)):
            if label is not None:
                labels.append(label)
                flagged.append(score < threshold)
        first = gold_first_error(trace, gold)
        if first is not None and first >= 0:
            predicted = predict_first_error(scores, threshold)
            detected.append(predicted != -1)
            exact.append(predicted == first)
    labels, flagged = np.array(labels, dtype=int), np.array(flagged, dtype=bool)
    bad, good = labels == 0, labels == 1
    return {
        "traces": len(traces),
        "bad_steps": int(bad.sum()),
        "step_recall": float(flagged[bad].mean()) if bad.any() else None,
        "false_alarm": float(flagged[good].mean()) if good.any() else None,
        "trace_detection": float(np.mean(detected)) if detected else None,
        "first_error_accuracy": float(np.mean(exact)) if exact else None,
        "prm_score": float(f1_score(labels, (~flagged).astype(int), average="macro",
                                    labels=sorted(set(labels.tolist())), zero_division=0))
        if labels.size else None,
    }
