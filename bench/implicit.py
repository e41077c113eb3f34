"""Benchmark: an implicit PRM from outcome labels only (zero rollouts) against the demo's MC-labelled PRM.

Reads a finished `prm demo` folder (its sampled traces and its scored test traces), trains
implicit PRMs (`RewardModelOptions(head="implicit")`) on the training traces' outcome labels
only (step labels are removed first, no rollout is made), scores the validation and test
traces and prints, per configuration and next to the demo's PRM (Monte Carlo labels +
sympy overrides) on the same test traces: best-of-N at the demo's N for every aggregation,
step AUROC and ProcessBench first-error F1 against the world's gold labels, sampled tokens,
rollouts and training CPU seconds.

Every row is a named configuration in `ROWS`; `--extra-samples K` also samples K more
solutions per training problem (sampling is cheap; rollouts are what Monte Carlo labels cost)
and trains on those with the demo's.

    python bench/implicit.py --demo demo_out --rows ce-b05,dpo-b05
    python bench/implicit.py --demo demo_out --rows all --extra-samples 12

Results are merged into bench/results/implicit.json under "ROW" (+ "/xK" with extra samples).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "implicit.json"

# name -> RewardModelOptions (beyond head/template) and RewardTrainerConfig fields
ROWS: dict[str, dict] = {
    "ce-b05": {"model": {"beta": 0.5, "implicit_loss": "ce"},
               "training": {"learning_rate": 1e-3, "num_train_epochs": 2}},
    "ce-b01": {"model": {"beta": 0.1, "implicit_loss": "ce"},
               "training": {"learning_rate": 1e-3, "num_train_epochs": 2}},
    "ce-b1": {"model": {"beta": 1.0, "implicit_loss": "ce"},
              "training": {"learning_rate": 1e-3, "num_train_epochs": 2}},
    "ce-b05-lr3e-4": {"model": {"beta": 0.5, "implicit_loss": "ce"},
                      "training": {"learning_rate": 3e-4, "num_train_epochs": 3}},
    "dpo-b05": {"model": {"beta": 0.5, "implicit_loss": "dpo"},
                "training": {"learning_rate": 1e-3, "num_train_epochs": 2}},
    "dpo-b01": {"model": {"beta": 0.1, "implicit_loss": "dpo"},
                "training": {"learning_rate": 1e-3, "num_train_epochs": 2}},
}


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def train_implicit(traces, folder: Path, model: dict, training: dict, seed: int, threads: int):
    """Train one implicit PRM on the traces' outcome labels; returns (model, CPU seconds)."""
    from completers.text import PLAIN_TEMPLATE
    from prm.reward.model import RewardModelOptions
    from prm.reward.training import RewardTrainer, RewardTrainerConfig

    options = RewardModelOptions(head="implicit", prompt_template=PLAIN_TEMPLATE, **model)
    settings = {"per_device_train_batch_size": 16, **training}
    args = RewardTrainerConfig(output_dir=str(folder), save_strategy="no", eval_strategy="no", report_to=[],
                               logging_steps=50, disable_tqdm=True, seed=seed, **settings)
    start = cpu_seconds()
    trainer = RewardTrainer("tiny-gsm", args, train_traces=traces, model_options=options)
    trainer.train()
    return trainer.model, cpu_seconds() - start


def outcome_only(traces):
    """Copies of the traces with every step label removed: the implicit PRM sees outcomes only."""
    from prm.records import Trace

    copies = [Trace.from_dict(t.to_dict()) for t in traces]
    for trace in copies:
        for step in trace.steps:
            step.hard_label, step.soft_label, step.label_source = None, None, None
    return copies


def measure(val, test) -> dict:
    """Step metrics, first-error F1 and best-of-N of scored traces against the world's gold."""
    from evals.report import EvalConfig, evaluate

    metrics, _ = evaluate(test, EvalConfig(gold="meta"), val_traces=val)
    curves = metrics["best_of_n"]["methods"]
    first = metrics.get("first_error") or {}
    return {"best_of_n": {name: values[-1] for name, values in curves.items()},
            "n": metrics["best_of_n"]["n"][-1],
            "auroc": metrics["step"].get("auroc"), "step_accuracy": metrics["step"].get("accuracy"),
            "first_error_f1": (first.get("overall") or first).get("f1")}


def sample_more(demo: Path, traces, k: int, seed: int, threads: int):
    """K more solutions per training problem (tiny-gsm, the demo's temperature), cached in the demo folder."""
    from prm.io import read_traces, write_traces

    path = demo / f"traces_train_extra{k}_seed{seed}.jsonl"
    if path.exists():
        return read_traces(path)
    from completers.base import SamplingParams
    from completers.transformers_completer import TransformersCompleter
    from completers.world import generate_problems, sample_traces

    config = json.loads((demo / "summary.json").read_text())["config"]
    total = config["train_problems"] + config["val_problems"] + config["test_problems"]
    problems = generate_problems(total, seed=config["seed"])[:config["train_problems"]]
    params = SamplingParams(n=k, temperature=config["temperature"], max_new_tokens=320, seed=seed + 77_000)
    extra = sample_traces(TransformersCompleter("tiny-gsm"), problems, k, params)
    for trace in extra:
        trace.id += f"-x{seed}"
    write_traces(path, extra)
    return extra


def sampled_tokens(traces) -> int:
    from transformers import AutoTokenizer

    from prm.model_names import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("tiny-gsm"))
    texts = ["\n".join(t.step_texts) for t in traces]
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--demo", required=True, help="a finished `prm demo` output folder")
    parser.add_argument("--rows", default="ce-b05", help=f"comma-separated from {', '.join(ROWS)}, or all")
    parser.add_argument("--extra-samples", type=int, default=0, help="more solutions per training problem")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--set", action="append", default=[],
                        help="override a setting of every row: model.beta=0.2 or training.learning_rate=1e-4")
    parser.add_argument("--keep", default=None, help="save each trained model under this folder")
    args = parser.parse_args()

    import logging

    import torch

    torch.set_num_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    from prm.io import read_traces

    demo = Path(args.demo)
    train = read_traces(demo / "traces_train.jsonl")
    if args.extra_samples:
        train = train + sample_more(demo, train, args.extra_samples, args.seed, args.threads)
    val, test = read_traces(demo / "traces_val.jsonl"), read_traces(demo / "traces_test.jsonl")
    mc = None
    if (demo / "scored_test.jsonl").exists():
        mc = measure(read_traces(demo / "scored_val.jsonl"), read_traces(demo / "scored_test.jsonl"))
        print(f"demo PRM (MC labels + sympy): best-of-{mc['n']} min {mc['best_of_n']['prm_min']:.3f}"
              f" majority {mc['best_of_n']['majority']:.3f} oracle {mc['best_of_n']['oracle']:.3f}; "
              f"AUROC {mc['auroc']:.3f}, first-error F1 {mc['first_error_f1']:.3f}")
    tokens = sampled_tokens(train)
    print(f"training: {len(train)} traces, {tokens} sampled tokens, 0 rollouts; uptime: {os.getloadavg()}")

    results = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    names = list(ROWS) if args.rows == "all" else args.rows.split(",")
    for name in names:
        row = json.loads(json.dumps(ROWS[name]))
        for override in args.set:
            key, value = override.split("=", 1)
            part, field = key.split(".", 1)
            row[part][field] = type(row[part].get(field, 0.0))(value) if field in row[part] else float(value)
        wall = time.perf_counter()
        model, cpu = train_implicit(outcome_only(train), Path("/tmp") / f"implicit-{name}", row["model"],
                                    row["training"], args.seed, args.threads)
        if args.keep:
            model.save_pretrained(Path(args.keep) / name)
        scored_val = model.score_traces(outcome_only(val))
        scored_test = model.score_traces(outcome_only(test))
        figures = measure(scored_val, scored_test)
        best = figures["best_of_n"]
        print(f"{name} {row}: best-of-{figures['n']} " + " ".join(
            f"{k} {best[k]:.3f}" for k in ("prm_min", "prm_last", "prm_mean", "prm_prod", "weighted_last", "majority")
            if k in best) + f"; AUROC {figures['auroc']:.3f}, first-error F1 {figures['first_error_f1']:.3f}, "
              f"{cpu:.0f} CPU s, {time.perf_counter() - wall:.0f} s wall", flush=True)
        key = name + (f"/x{args.extra_samples}" if args.extra_samples else "") + (
            "/" + ",".join(args.set) if args.set else "")
        results[key] = {"settings": row, "seed": args.seed, "train_traces": len(train), "sampled_tokens": tokens,
                        "rollouts": 0, "cpu_seconds": round(cpu, 1), **figures, "mc_prm": mc,
                        "load": os.getloadavg()[0]}
        RESULTS.parent.mkdir(parents=True, exist_ok=True)
        RESULTS.write_text(json.dumps(results, indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
