"""ProcessBench data for `prm eval`: its released files, a folder of them, or a hub split.

The format itself (fields `id, generator, problem, steps, final_answer_correct, label`,
and how they become traces with gold labels) is `prm.formats.processbench`'s job; this
module only recognises ProcessBench input and tags each trace with its subset (the file
or split name: gsm8k, math, olympiadbench, omnimath), which is what ProcessBench reports
F1 per.
"""

from __future__ import annotations

import os
from pathlib import Path

from prm.errors import RecordError
from prm.records import Trace

SUBSETS = ("gsm8k", "math", "olympiadbench", "omnimath")


def is_processbench(path: str) -> bool:
    """True for a ProcessBench file, or a folder of them (told from the records' fields)."""
    from prm.formats import guess_format

    try:
        return Path(path).exists() and guess_format(path) == "processbench"
    except RecordError:
        return False


def load_processbench(dir_or_split: str) -> list[Trace]:
    """Traces from a folder of ProcessBench files, one file, or a split name of the hub
    data set `Qwen/ProcessBench` (gsm8k, math, olympiadbench, omnimath; needs internet).
    Each trace's `meta["subset"]` names its file or split."""
    from prm.formats import processbench

    path = Path(dir_or_split)
    if path.is_dir():
        files = sorted(p for p in path.iterdir()
                       if p.suffix in (".json", ".jsonl") and not p.name.startswith("."))
    elif path.exists():
        files = [path]
    elif dir_or_split in SUBSETS:
        return _tagged(processbench.load_processbench_hub(split=dir_or_split), dir_or_split)
    else:
        raise RecordError(f"no such file or folder, and not a ProcessBench split ({', '.join(SUBSETS)})",
                          path=dir_or_split)
    traces = []
    for file in files:
        traces += _tagged(processbench.read_processbench(os.fspath(file)), file.stem)
    return traces


def _tagged(traces: list[Trace], subset: str) -> list[Trace]:
    for trace in traces:
        trace.meta.setdefault("subset", subset)
    return traces


def load_processbench_benchmark(path: str | None = None, subsets: list[str] | None = None) -> list[Trace]:
    """ProcessBench traces tagged with their subset: from a folder of release files (one JSON
    array per subset, named after it), one file, or the hub (`Qwen/ProcessBench`) when path
    is None. subsets: keep only these (default: all four)."""
    wanted = list(subsets or SUBSETS)
    if path is None:  # the hub, never a local folder that happens to be named like a subset
        from prm.formats.processbench import load_processbench_hub

        return [t for subset in wanted for t in _tagged(load_processbench_hub(split=subset), subset)]
    traces = load_processbench(path)
    kept = [t for t in traces if t.meta["subset"] in wanted]
    if traces and not kept:
        found = sorted({t.meta["subset"] for t in traces})
        raise RecordError(f"no trace of the subsets {', '.join(wanted)} (found: {', '.join(found)})", path=path)
    return kept


def processbench_metrics(traces: list[Trace], threshold: float = 0.5, threshold_from: str | None = None) -> dict:
    """ProcessBench's metrics per subset (`evals.first_error.first_error_metrics`): the
    predicted first error is the first step scoring below the threshold (-1 if none); accuracy
    on erroneous samples, on correct samples, and F1 = their harmonic mean, as in
    QwenLM/ProcessBench's run_eval.py (which prints them in percent).

    threshold_from: choose the threshold on this subset (the one maximising its F1) and
    report only the other subsets, so that no reported subset was used for tuning.
    """
    from evals.first_error import choose_first_error_threshold, first_error_metrics

    rule = f"fixed at {threshold}"
    if threshold_from is not None:
        tuning = [t for t in traces if t.meta.get("subset") == threshold_from]
        if not tuning:
            raise RecordError(f"no trace of subset {threshold_from!r} to choose the threshold on")
        threshold = choose_first_error_threshold(tuning)
        traces = [t for t in traces if t.meta.get("subset") != threshold_from]
        rule = f"chosen on {threshold_from} (max F1 there), which is not reported"
    metrics = first_error_metrics(traces, threshold)
    metrics["threshold_rule"] = rule
    return metrics


def read_predictions(path: str) -> dict[str, list[tuple[int, int | None]]]:
    """(label, prediction) pairs per subset from a file or folder of first-error predictions,
    as QwenLM/ProcessBench's run_eval.py writes them (`{subset}_error.jsonl`,
    `{subset}_correct.jsonl`, rows with `label` and `prediction`; a prediction that could not
    be parsed is null and counts as wrong). A row's subset is its `subset` field, else the file
    name without `_error` / `_correct`."""
    import json

    folder = Path(path)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".jsonl")) if folder.is_dir() else [folder]
    pairs: dict[str, list[tuple[int, int | None]]] = {}
    for file in files:
        text = file.read_text(encoding="utf-8")
        rows = json.loads(text) if file.suffix == ".json" else \
            [json.loads(line) for line in text.splitlines() if line.strip()]
        default = file.stem.removesuffix("_error").removesuffix("_correct")
        for number, row in enumerate(rows, start=1):
            label, prediction = row.get("label"), row.get("prediction")
            if not isinstance(label, int) or (prediction is not None and not isinstance(prediction, int)):
                raise RecordError("needs an integer label and an integer or null prediction",
                                  path=str(file), line=number, field="prediction")
            pairs.setdefault(str(row.get("subset") or default), []).append((label, prediction))
    return pairs


def is_predictions(path: str) -> bool:
    """True when the first record of the file (or of the folder's first file) has `prediction`."""
    import json

    folder = Path(path)
    files = sorted(p for p in folder.iterdir() if p.suffix in (".json", ".jsonl")) if folder.is_dir() else [folder]
    if not files:
        return False
    text = files[0].read_text(encoding="utf-8").lstrip()
    try:
        first = json.loads(text)[0] if text.startswith("[") else json.loads(text.splitlines()[0])
    except (ValueError, IndexError):
        return False
    return isinstance(first, dict) and "prediction" in first and "label" in first


def prediction_metrics(pairs: dict[str, list[tuple[int, int | None]]]) -> dict:
    """ProcessBench's metrics from predicted first errors: per subset the accuracy on erroneous
    samples (label != -1) and on correct ones, F1 = their harmonic mean, and the mean F1."""
    import numpy as np

    from evals.first_error import harmonic_mean

    def row(items):
        error = [label == prediction for label, prediction in items if label != -1]
        correct = [label == prediction for label, prediction in items if label == -1]
        a = float(np.mean(error)) if error else None
        b = float(np.mean(correct)) if correct else None
        return {"error_traces": len(error), "correct_traces": len(correct), "error_accuracy": a,
                "correct_accuracy": b, "f1": harmonic_mean(a, b)}

    subsets = {name: row(items) for name, items in sorted(pairs.items())}
    f1s = [r["f1"] for r in subsets.values() if r["f1"] is not None]
    return {"threshold": None, "threshold_rule": "predictions given", "skipped": 0, "subsets": subsets,
            "overall": row([p for items in pairs.values() for p in items]),
            "average_f1": float(np.mean(f1s)) if f1s else None}
