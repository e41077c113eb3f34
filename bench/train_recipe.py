"""Benchmark: what makes a small PRM learn real errors on a 2-core CPU (the recipe and its ablation).

Data (`--data gsm8k`, the trainer benchmark's data, `bench/train.py` `build_data`): real GSM8K
train problems, each reference solution plus, for about half the problems, a copy with one
calculator result changed by +-1..10 (that step and every later one bad), split by problem.
`--data prmbench`: the PRMBench training part (`../shared/data/prmbench-train`, PRM800K
problems with inserted errors of eight classes), split by problem; metrics also per class.

Every row of the ablation is one named configuration in `ROWS` (backbone, learning rate,
epochs, class balance, step marker, LM features, head-only, checker verdicts as inputs, the
notes-only view of the steps). Each trains with `RewardTrainer` and is scored on the same
held-out records with `prm.reward.training.step_metrics`, plus:

- `recall_at_good90` / `recall_at_good95`: the share of bad steps found at the score threshold
  that keeps 90% / 95% of good steps good (a point of the ROC curve: it ranks, like AUROC, and
  the threshold is read off the held-out scores, so it is optimistic for a fixed threshold;
  `bad_step_recall` and `accuracy` are at the fixed threshold 0.5).
- `first_error_f1`: ProcessBench's F1, the harmonic mean of the accuracy on traces with an
  error (first predicted-bad step = the first bad step) and on traces without one (no step
  predicted bad), at 0.5 and at the good90 threshold.

Checker verdicts (rows with `step_features`) come from the sympy checker, run on every step
before training and scoring (what `prm check --checkers sympy` writes into the records).

    python bench/train_recipe.py --rows recipe,hybrid          # the documented recipe, ~600 train records
    python bench/train_recipe.py --rows all --train-records 600 --eval-records 200   # the ablation
    python bench/train_recipe.py --data prmbench --rows recipe

Timing: wall and process CPU seconds per row; the machine is shared, so CPU seconds are the
budget figure (30 minutes on 2 cores = 3,600 CPU seconds). Results are merged into
bench/results/train_recipe.json under "DATA/ROW".
"""

from __future__ import annotations

import copy
import os
import random
import re
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import ROOT, Goal, Stopwatch, machine, merge_results, parser, print_goals  # noqa: E402

PRMBENCH = ROOT.parent / "shared" / "data" / "prmbench-train"
TINY_TEMPLATE = "Question: {problem}\nAnswer:\n"  # tiny-gsm's own prompt (completers.text.PLAIN_TEMPLATE)

# name -> settings: backbone, model options (RewardModelOptions), training (RewardTrainerConfig), view
ROWS: dict[str, dict] = {
    "baseline": {"backbone": "minilm-l6", "training": {"learning_rate": 5e-5, "num_train_epochs": 1}},
    "minilm-lr2e-4-3ep-balanced": {"backbone": "minilm-l6", "training": {
        "learning_rate": 2e-4, "num_train_epochs": 3, "balance_classes": True, "warmup_steps": 20}},
    "minilm-more-data": {"backbone": "minilm-l6", "training": {
        "learning_rate": 5e-5, "num_train_epochs": 1, "balance_classes": True, "warmup_steps": 20}},
    "minilm-head-only": {"backbone": "minilm-l6", "training": {
        "learning_rate": 1e-3, "num_train_epochs": 3, "balance_classes": True, "freeze_backbone": True}},
    "tiny-gsm-full": {"backbone": "tiny-gsm", "options": {"prompt_template": TINY_TEMPLATE}, "training": {
        "learning_rate": 1e-3, "num_train_epochs": 5, "balance_classes": True, "warmup_steps": 20}},
    "tiny-gsm-full-special-token": {"backbone": "tiny-gsm", "options": {"prompt_template": TINY_TEMPLATE,
                                                                     "step_marker": "special-token"},
                                    "training": {"learning_rate": 1e-3, "num_train_epochs": 5, "balance_classes": True,
                                                 "warmup_steps": 20}},
    "tiny-gsm-full-notes-view": {"backbone": "tiny-gsm", "view": "notes", "options": {"prompt_template": TINY_TEMPLATE},
                                 "training": {"learning_rate": 1e-3, "num_train_epochs": 5, "balance_classes": True,
                                              "warmup_steps": 20}},
    "hybrid-tiny-gsm-head-only": {"backbone": "tiny-gsm", "options": {
        "prompt_template": TINY_TEMPLATE, "step_features": "refuted,refuted_so_far"}, "checker": "sympy",
        "training": {"learning_rate": 1e-2, "num_train_epochs": 3, "balance_classes": True, "freeze_backbone": True}},
    "hybrid-minilm-head-only": {"backbone": "minilm-l6", "options": {"step_features": "refuted,refuted_so_far"},
                                "checker": "sympy", "training": {"learning_rate": 1e-2, "num_train_epochs": 3,
                                                                 "balance_classes": True, "freeze_backbone": True}},
}
ALIASES = {"recipe": "tiny-gsm-full", "hybrid": "hybrid-tiny-gsm-head-only"}


# -- data ---------------------------------------------------------------------------------

def gsm8k_data(n_train: int, n_eval: int, seed: int = 0):
    from bench.train import build_data

    return build_data(n_train, n_eval, seed)


def prmbench_data(n_train: int, n_eval: int, seed: int = 0):
    """PRMBench training records, split by problem: whole problems go to one side."""
    from prm import formats

    by_problem = defaultdict(list)
    for path in sorted(PRMBENCH.glob("*.jsonl")):
        for trace in formats.read(str(path)):
            by_problem[trace.problem].append(trace)
    problems = sorted(by_problem)
    random.Random(seed).shuffle(problems)
    train, held_out = [], []
    for problem in problems:
        side = held_out if len(held_out) < n_eval else train
        if side is train and len(train) >= n_train:
            break
        side.extend(by_problem[problem])
    return train[:n_train], held_out


NOTE = re.compile(r"<<[^<>]*>>[0-9.,]*")


def notes_view(traces):
    """Each step replaced by its calculator notes and the number written after them
    (` <<a+b=c>>c`, tiny-gsm's own note format); a step without a note keeps its text."""
    out = []
    for trace in traces:
        trace = copy.deepcopy(trace)
        for step in trace.steps:
            notes = NOTE.findall(step.text)
            step.text = " ".join(notes) if notes else step.text
        out.append(trace)
    return out


# -- metrics ------------------------------------------------------------------------------

def evaluate(traces) -> dict:
    """Metrics of the scored traces (`Step.score`): step_metrics at 0.5, recall at 90%/95%
    good-step accuracy, and ProcessBench's first-error F1 (`evals.first_error`)."""
    import numpy as np
    from sklearn.metrics import roc_curve

    from evals.first_error import first_error_metrics
    from prm.reward.training import step_metrics

    probabilities = [[s.score for s in t.steps] for t in traces]
    labels = [t.hard_labels for t in traces]
    kept_p = [[p for p in probs if p is not None] for probs in probabilities]
    kept_t = [[t for p, t in zip(probs, tags) if p is not None] for probs, tags in zip(probabilities, labels)]
    complete = [all(p is not None for p in probs) for probs in probabilities]
    metrics = step_metrics(kept_p, kept_t, 0.5, complete)
    metrics["unscored_steps"] = sum(p is None for probs in probabilities for p in probs)
    pairs = [(x, t) for row_p, row_t in zip(kept_p, kept_t) for x, t in zip(row_p, row_t) if t is not None]
    p, y = np.array([x for x, _ in pairs]), np.array([t for _, t in pairs])
    metrics["first_error_f1"] = first_error_metrics(traces, 0.5, gold="labels")["overall"]
    if 0 < y.sum() < len(y):
        fpr, tpr, thresholds = roc_curve(1 - y, -p)  # bad steps are the positives
        for accuracy in (0.90, 0.95):
            ok = np.where(fpr <= 1 - accuracy + 1e-9)[0]  # 1 - 0.9 is 0.0999...: keep fpr = 0.1 itself
            best = ok[np.argmax(tpr[ok])]
            metrics[f"recall_at_good{round(accuracy * 100)}"] = float(tpr[best])
            metrics[f"threshold_at_good{round(accuracy * 100)}"] = float(min(1.0, -thresholds[best]))
        # a step is predicted bad when its score is at most the threshold: first errors use "< t"
        threshold = float(np.nextafter(metrics["threshold_at_good90"], 2.0))
        metrics["first_error_f1_at_good90"] = first_error_metrics(traces, threshold, gold="labels")["overall"]
    return metrics


def by_class(traces) -> dict:
    """PRMBench: metrics per error class (meta["error_class"])."""
    groups = defaultdict(list)
    for trace in traces:
        groups[trace.meta.get("error_class", "unknown")].append(trace)
    return {name: evaluate(group) for name, group in sorted(groups.items())}


# -- one row ------------------------------------------------------------------------------

def run_row(name: str, row: dict, train, held_out, settings: dict) -> dict:
    import torch

    from prm.reward.model import RewardModelOptions
    from prm.reward.training import RewardTrainer, RewardTrainerConfig

    if row.get("view") == "notes":
        train, held_out = notes_view(train), notes_view(held_out)
    else:
        train, held_out = copy.deepcopy(train), copy.deepcopy(held_out)
    checker_seconds = 0.0
    if row.get("checker"):  # the checker's verdict on every step, as `prm check` writes it
        from annotate.checkers import get_checker
        from annotate.checkers.combine import add_verdicts

        start = time.perf_counter()
        add_verdicts(train + held_out, get_checker(row["checker"]))
        checker_seconds = time.perf_counter() - start
    torch.set_num_threads(settings["threads"])
    training = {"per_device_train_batch_size": 8, "lr_scheduler_type": "linear", **row.get("training", {})}
    args = RewardTrainerConfig.in_memory(Path(settings["out"]) / name, logging_steps=25, use_cpu=True,
                                         seed=settings["seed"], **training)
    with Stopwatch() as watch:
        trainer = RewardTrainer(row["backbone"], args, train_traces=train,
                                model_options=RewardModelOptions(**row.get("options", {})))
        trainer.train()
    model = trainer.model.eval()
    model.score_traces(held_out, batch_size=32)
    result = {"row": name, **row, "train_records": len(train), "eval_records": len(held_out),
              "train_report": vars(trainer.train_report), "train_seconds": watch.seconds,
              "train_cpu_seconds": watch.cpu_seconds, "checker_seconds": checker_seconds,
              "metrics": evaluate(held_out)}
    if settings["data"] == "prmbench":
        result["per_class"] = by_class(held_out)
    return result


def arguments():
    args = parser(__doc__, "train_recipe", threads=2, quick="100 train and 40 held-out records")
    args.add_argument("--rows", default="recipe,hybrid", help=f"comma-separated: all, {', '.join(ROWS)}, "
                                                               f"or {', '.join(ALIASES)}")
    args.add_argument("--data", choices=("gsm8k", "prmbench"), default="gsm8k")
    args.add_argument("--train-records", type=int, default=600)
    args.add_argument("--eval-records", type=int, default=200)
    options = args.parse_args()
    options.names = list(ROWS) if options.rows == "all" else [ALIASES.get(n, n) for n in options.rows.split(",")]
    unknown = [n for n in options.names if n not in ROWS]
    if unknown:
        args.error(f"unknown row(s) {unknown}; choose from {list(ROWS)} or {list(ALIASES)}")
    if options.quick:
        options.train_records, options.eval_records = min(options.train_records, 100), min(options.eval_records, 40)
    return options


def goals(name: str, result: dict) -> list[Goal]:
    """Issue 14's goals for the row: trained within 30 minutes on 2 cores (3,600 CPU-s); without
    checker inputs AUROC >= 0.80 and bad-step recall >= 50% at 90% good-step accuracy; with
    checker verdicts as inputs bad-step recall >= 90% at 95% good-step accuracy."""
    m = result["metrics"]
    out = [Goal(f"{name}: training CPU seconds", round(result["train_cpu_seconds"]), "<=", 3600, "s")]
    if result.get("checker"):
        return out + [Goal(f"{name}: bad-step recall at 95% good-step accuracy",
                           round(100 * m.get("recall_at_good95", 0), 1), ">=", 90, "%")]
    return out + [Goal(f"{name}: AUROC", round(m.get("auroc", 0), 3), ">=", 0.8),
                  Goal(f"{name}: bad-step recall at 90% good-step accuracy",
                       round(100 * m.get("recall_at_good90", 0), 1), ">=", 50, "%")]


def main() -> int:
    options = arguments()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    machine_record = machine(options.threads)
    load = prmbench_data if options.data == "prmbench" else gsm8k_data
    train, held_out = load(options.train_records, options.eval_records, options.seed)
    print(f"{options.data}: {len(train)} train records, {len(held_out)} held-out records "
          f"({sum(len(t.steps) for t in held_out)} steps, "
          f"{sum(s.hard_label == 0 for t in held_out for s in t.steps)} bad)", flush=True)
    settings = {**vars(options)}
    for name in options.names:
        result = run_row(name, ROWS[name], train, held_out, settings)
        m = result["metrics"]
        print(f"{name}: AUROC {m.get('auroc', float('nan')):.3f}, recall@good90 {m.get('recall_at_good90', 0):.3f}, "
              f"recall@good95 {m.get('recall_at_good95', 0):.3f}, accuracy {m['accuracy']:.3f}, "
              f"bad recall@0.5 {m['bad_step_recall']:.3f}, first-error F1 {m['first_error_f1']['f1'] or 0:.3f}, "
              f"train {result['train_seconds']:.0f} s ({result['train_cpu_seconds']:.0f} CPU s)", flush=True)
        print_goals(goal_list := goals(name, result))
        # merged just before writing: other runs may have added their rows meanwhile
        merge_results(options.results, f"{options.data}/{name}",
                      {**result, "seed": options.seed, "goals": [g.to_dict() for g in goal_list]}, machine_record)
    print(f"results: {options.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
