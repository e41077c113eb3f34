"""Hard2Verify's three tasks (Pandit et al., arXiv 2510.13744) for scored traces.

The authors' evaluation code (github.com/SalesforceAIResearch/Hard2Verify) could not be
read here, so these follow the paper's definitions as they are described publicly:

- Step-Level: every step is judged correct or incorrect; here a step is judged correct when
  its score is at least the threshold. Pooled over all steps.
- Response-Level: a response is correct when every step is; judged correct when every step
  is judged correct.
- ErrorID: the predicted first error is the first step judged incorrect (-1 if none,
  `evals.first_error.predict_first_error`); it is right when it equals the human first error.
- Balanced accuracy = (TPR + TNR) / 2 and balanced F1 = their harmonic mean, with "correct"
  as the positive class. For ErrorID, TPR is the share of error-free responses predicted -1
  and TNR the share of erroneous responses whose first error is found exactly (the
  ProcessBench pairing); that pairing is our reading of the paper, not checked against
  the authors' code.

The paper chooses a PRM's threshold on a random 100-response subset; here the threshold is
fixed (`prm eval --threshold`). A trace with an unscored step is left out (`skipped`).
"""

from __future__ import annotations

from evals.first_error import harmonic_mean, predict_first_error
from prm.records import Trace


def load_hard2verify_benchmark(path: str | None = None, subsets: list[str] | None = None) -> list[Trace]:
    """Decrypted Hard2Verify records from a file or a folder of them. There is no hub path:
    the hub copy is encrypted (decrypt it first with the authors' utility)."""
    from evals.benchmark_files import release_files
    from prm.errors import RecordError
    from prm.formats.hard2verify import read_hard2verify

    if path is None:
        raise RecordError("Hard2Verify needs --data: a file or folder of decrypted records (the hub copy "
                          "Salesforce/Hard2Verify is encrypted; decrypt it with the authors' decrypt_sample)")
    if subsets:
        raise RecordError("Hard2Verify has no subsets")
    return [t for file in release_files(path) for t in read_hard2verify(file)]


def balanced(positive_right: list[bool], negative_right: list[bool]) -> dict:
    """TPR, TNR, balanced accuracy and balanced F1 (None where a class is empty)."""
    tpr = sum(positive_right) / len(positive_right) if positive_right else None
    tnr = sum(negative_right) / len(negative_right) if negative_right else None
    return {"positives": len(positive_right), "negatives": len(negative_right), "tpr": tpr, "tnr": tnr,
            "balanced_accuracy": None if tpr is None or tnr is None else (tpr + tnr) / 2,
            "balanced_f1": harmonic_mean(tpr, tnr)}


def hard2verify_metrics(traces: list[Trace], threshold: float = 0.5) -> dict:
    """The step, response and first-error tasks' balanced accuracy and F1 (see above)."""
    step_pos, step_neg, resp_pos, resp_neg, err_pos, err_neg = [], [], [], [], [], []
    skipped = 0
    for trace in traces:
        scores = [s.score for s in trace.steps]
        labels = trace.meta.get("gold_labels") or [s.hard_label for s in trace.steps]
        if not scores or any(s is None for s in scores) or any(lab is None for lab in labels):
            skipped += 1
            continue
        judged = [score >= threshold for score in scores]
        for label, ok in zip(labels, judged):
            (step_pos if label == 1 else step_neg).append(ok == (label == 1))
        correct = all(lab == 1 for lab in labels)
        (resp_pos if correct else resp_neg).append(all(judged) == correct)
        first = labels.index(0) if 0 in labels else -1
        (err_pos if first == -1 else err_neg).append(predict_first_error(scores, threshold) == first)
    return {"threshold": float(threshold), "threshold_rule": f"fixed at {threshold}", "skipped": skipped,
            "tasks": {"step": balanced(step_pos, step_neg), "response": balanced(resp_pos, resp_neg),
                      "first_error": balanced(err_pos, err_neg)}}


def hard2verify_report(metrics: dict) -> list[str]:
    from prm.markdown import percent

    lines = ["| task | correct | incorrect | TPR | TNR | balanced acc. | balanced F1 |", "|---|---|---|---|---|---|---|"]
    for name, row in metrics["tasks"].items():
        lines.append(f"| {name} | {row['positives']} | {row['negatives']} | {percent(row['tpr'])} | {percent(row['tnr'])} "
                     f"| {percent(row['balanced_accuracy'])} | {percent(row['balanced_f1'])} |")
    return lines


def hard2verify_summary(metrics: dict) -> str:
    from prm.markdown import percent

    return ", ".join(f"{name} balanced F1 {percent(row['balanced_f1'])}" for name, row in metrics["tasks"].items())
