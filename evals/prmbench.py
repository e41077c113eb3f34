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


# ---------------------------------------------------------------------------------------------
# PRMBench's own evaluation (ssmisya/PRMBench, mr_eval/tasks/prmtest_classified/task.py)
# ---------------------------------------------------------------------------------------------

CORRECT = "correct"
SOURCE_OF_CORRECT = "redundency"  # PRMBench takes the unmodified solutions from this class's records


def load_prmbench_benchmark(path: str | None = None, classes: list[str] | None = None) -> list[Trace]:
    """The evaluation set as PRMBench builds it (`load_prmbench_release`, without the count
    of repeated records it dropped)."""
    return load_prmbench_release(path, classes)[0]


def load_prmbench_release(path: str | None = None,
                          classes: list[str] | None = None) -> tuple[list[Trace], int]:
    """The evaluation set as PRMBench's loader (`prmtest_classified/task.py`) builds it, and
    how many repeated records it dropped.

    Every modified solution once per (classification, idx): a repeat is dropped and the first
    record kept (the test release repeats some: `prm_test_p12_multi_solutions.jsonl` holds 165
    records for 160 idx), whatever its class, `multi_solutions` included. Plus the original
    solution of each `redundency` record as a `correct` sample (error-free), once per idx.

    path: a PRMBench file or a folder of them (default: the hub copy, `hitsmy/PRMBench_Preview`).
    classes: keep only these error classes (and `correct`, if named).
    """
    import os
    from pathlib import Path

    from prm.formats.prmbench import load_prmbench_hub, read_prmbench
    from prm.io import ReadReport

    if path is None:
        pairs = load_prmbench_hub(include_original=True)
    else:
        folder = Path(path)
        files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".jsonl")) if folder.is_dir() \
            else [folder]
        # repeated ids are expected here: the (classification, idx) filter below drops them
        pairs = [t for file in files for t in read_prmbench(
            os.fspath(file), include_original=True, report=ReadReport(keep_duplicates=True))]
    traces, seen, dropped = [], set(), 0
    for modified, original in zip(pairs[0::2], pairs[1::2]):
        name = modified.meta["error_class"]
        key = (name, str(modified.meta["idx"]))
        if key not in seen:
            seen.add(key)
            traces.append(modified)
        else:
            dropped += 1
        if name == SOURCE_OF_CORRECT and (CORRECT, key[1]) not in seen:
            seen.add((CORRECT, key[1]))
            original.meta["error_steps"] = []
            traces.append(original)
    if classes:
        traces = [t for t in traces if t.meta["error_class"] in classes]
    return traces, dropped


def step_validity(scores: list[float], threshold: float) -> list[bool]:
    """PRMBench's step labels: a step is valid when its score is above the threshold (strictly)."""
    return [score > threshold for score in scores]


def sample_counts(error_steps: list[int], valid: list[bool]) -> dict:
    """One sample's contribution (PRMBench's `eval_on_hallucination_step`): error_steps are
    1-based as released; positive = a correct step judged valid (TP), FP = an erroneous step
    judged valid, TN = an erroneous step judged invalid, FN = a correct step judged invalid."""
    wrong = {n - 1 for n in error_steps}
    first = min(wrong) if wrong else -1
    counts = {"TP": 0, "FP": 0, "TN": 0, "FN": 0, "correct_step": [], "wrong_step": [], "total_step": [],
              "first_error": []}
    for index, is_valid in enumerate(valid):
        if index == first:
            counts["first_error"].append(0 if is_valid else 1)
        if index in wrong:
            key = "FP" if is_valid else "TN"
            counts["wrong_step"].append(0 if is_valid else 1)
            counts["total_step"].append(0 if is_valid else 1)
        else:
            key = "TP" if is_valid else "FN"
            counts["correct_step"].append(1 if is_valid else 0)
            counts["total_step"].append(1 if is_valid else 0)
        counts[key] += 1
    counts["response_acc"] = sum(valid) / len(valid) if valid else None
    return counts


def _f1(a: int, b: int, c: int) -> tuple[float | None, float | None, float | None]:
    """precision = a/(a+b), recall = a/(a+c), their harmonic mean; None where undefined."""
    precision = a / (a + b) if a + b else None
    recall = a / (a + c) if a + c else None
    if precision is None or recall is None:
        return precision, recall, None
    return precision, recall, (2 * precision * recall / (precision + recall) if precision + recall else 0.0)


def _mean(values: list) -> float | None:
    return sum(values) / len(values) if values else None


def _summary(group: dict) -> dict:
    mean = _mean
    tp, fp, tn, fn = group["TP"], group["FP"], group["TN"], group["FN"]
    precision, recall, f1 = _f1(tp, fp, fn)
    negative_precision, negative_recall, negative_f1 = _f1(tn, fn, fp)
    return {"samples": group["samples"], "TP": tp, "FP": fp, "TN": tn, "FN": fn,
            "precision": precision, "recall": recall, "f1": f1,
            "negative_precision": negative_precision, "negative_recall": negative_recall,
            "negative_f1": negative_f1,
            "prm_score": None if f1 is None or negative_f1 is None else 0.5 * f1 + 0.5 * negative_f1,
            "correct_step_acc": mean(group["correct_step"]), "wrong_step_acc": mean(group["wrong_step"]),
            "total_step_acc": mean(group["total_step"]), "first_error_acc": mean(group["first_error"]),
            "similarity": mean(group["similarity"])}


def _empty() -> dict:
    return {"samples": 0, "TP": 0, "FP": 0, "TN": 0, "FN": 0, "correct_step": [], "wrong_step": [],
            "total_step": [], "first_error": [], "similarity": []}


def prmbench_metrics(traces: list[Trace], threshold: float = 0.5) -> dict:
    """PRMBench's metrics for scored traces (from `load_prmbench_benchmark` or a scored copy).

    Follows the release's evaluator: a step is valid when score > threshold; per error class
    and overall, TP/FP/TN/FN with "valid" as the positive class, F1 and negative F1 from them,
    PRMScore = 0.5 * F1 + 0.5 * negative F1, step accuracies on correct / erroneous / all
    steps, first-error accuracy (is the first erroneous step judged invalid), and similarity
    (|share of valid steps in a modified solution - that share in its unmodified solution|,
    skipped when the unmodified share is 0, as in the release). The overall row leaves out
    the `correct` samples, as the release does. Where the release writes -1 for an undefined
    value (no sample of a kind), this gives None. A trace with an unscored step is an invalid
    prediction and is left out (counted in `skipped`).
    """
    groups: dict[str, dict] = {}
    total = _empty()
    correct_acc: dict[str, float | None] = {}
    skipped = 0
    ordered = sorted(traces, key=lambda t: t.meta.get("error_class") != CORRECT)  # correct samples first
    for trace in ordered:
        scores = [s.score for s in trace.steps]
        if any(s is None for s in scores) or not scores:
            skipped += 1
            continue
        name = str(trace.meta.get("error_class"))
        counts = sample_counts(list(trace.meta.get("error_steps") or []), step_validity(scores, threshold))
        targets = [groups.setdefault(name, _empty())] + ([total] if name != CORRECT else [])
        idx = str(trace.meta.get("idx"))
        if name == CORRECT:
            correct_acc[idx] = counts["response_acc"]
        else:
            reference = correct_acc.get(idx)
            if reference and counts["response_acc"] is not None:
                for group in targets:
                    group["similarity"].append(abs(counts["response_acc"] - reference))
        for group in targets:
            group["samples"] += 1
            for key in ("TP", "FP", "TN", "FN"):
                group[key] += counts[key]
            for key in ("correct_step", "wrong_step", "total_step", "first_error"):
                group[key] += counts[key]
    return {"threshold": float(threshold), "skipped": skipped, "overall": _summary(total),
            "classes": {name: _summary(group) for name, group in sorted(groups.items())}}
