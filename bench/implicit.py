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
    python bench/implicit.py --demo demo_out --holdout 30 --rows ce-b05   # only traces_train.jsonl needed

`--holdout K` trains on all but the last K training problems and measures on those K (best-of
the demo's `train_samples`, step metrics at 0.5): a quick reading that needs no validation or
test sampling and no Monte Carlo labels.
    python bench/implicit.py --demo demo_out --rows all --extra-samples 12

Results are merged into bench/results/implicit.json under "ROW" (+ "/xK" with extra samples).
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import Stopwatch, cached_traces, machine, merge_results, parser, use_threads  # noqa: E402

# name -> RewardModelOptions (beyond head/template) and RewardTrainerConfig fields
ROWS: dict[str, dict] = {
    "ce-b05": {"model": {"beta": 0.5, "implicit_loss": "ce"},
               "training": {"learning_rate": 1e-3, "num_train_epochs": 2}},
    "ce-b01": {"model": {"beta": 0.1, "implicit_loss": "ce"},
               "training": {"learning_rate": 1e-3, "num_train_epochs": 2}},
    "ce-b005": {"model": {"beta": 0.05, "implicit_loss": "ce"},
                "training": {"learning_rate": 1e-3, "num_train_epochs": 2}},
    "ce-b01-lr3e-3": {"model": {"beta": 0.1, "implicit_loss": "ce"},
                      "training": {"learning_rate": 3e-3, "num_train_epochs": 2}},
    "ce-b1": {"model": {"beta": 1.0, "implicit_loss": "ce"},
              "training": {"learning_rate": 1e-3, "num_train_epochs": 2}},
    "ce-b05-4ep": {"model": {"beta": 0.5, "implicit_loss": "ce"},
                   "training": {"learning_rate": 1e-3, "num_train_epochs": 4}},
    "ce-b05-lr3e-4": {"model": {"beta": 0.5, "implicit_loss": "ce"},
                      "training": {"learning_rate": 3e-4, "num_train_epochs": 3}},
    "dpo-b05": {"model": {"beta": 0.5, "implicit_loss": "dpo"},
                "training": {"learning_rate": 1e-3, "num_train_epochs": 2}},
    "dpo-b01": {"model": {"beta": 0.1, "implicit_loss": "dpo"},
                "training": {"learning_rate": 1e-3, "num_train_epochs": 2}},
}


def train_implicit(traces, folder: Path, model: dict, training: dict, seed: int):
    """Train one implicit PRM on the traces' outcome labels; returns (model, CPU seconds)."""
    from completers.text import PLAIN_TEMPLATE
    from prm.reward.model import RewardModelOptions
    from prm.reward.training import RewardTrainer, RewardTrainerConfig

    options = RewardModelOptions(head="implicit", prompt_template=PLAIN_TEMPLATE, **model)
    settings = {"per_device_train_batch_size": 16, "logging_steps": 50, **training}
    args = RewardTrainerConfig.in_memory(folder, seed=seed, **settings)
    with Stopwatch() as watch:
        trainer = RewardTrainer("tiny-gsm", args, train_traces=traces, model_options=options)
        trainer.train()
    return trainer.model, watch.cpu_seconds


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


def measure_holdout(scored) -> dict:
    """Best-of-N over every held-out problem's traces and step metrics at 0.5, against gold."""
    from evals.best_of_n import best_of_n_curves
    from evals.first_error import first_error_metrics
    from evals.step_metrics import step_metrics

    curves = best_of_n_curves(scored, repeats=16)
    step = step_metrics(scored, 0.5, "meta")
    return {"best_of_n": {name: values[-1] for name, values in curves["methods"].items()}, "n": curves["n"][-1],
            "auroc": step.get("auroc"), "step_accuracy": step.get("accuracy"),
            "first_error_f1": first_error_metrics(scored, 0.5, "meta")["overall"]["f1"]}


def sample_more(demo: Path, k: int, seed: int):
    """K more solutions per training problem (tiny-gsm, the demo's temperature), cached in the demo folder."""
    def sample():
        from dataclasses import asdict

        from completers.base import SamplingParams
        from completers.transformers_completer import TransformersCompleter
        from completers.world import generate_problems, sample_traces
        from prm.app.demo import DemoConfig

        summary = demo / "summary.json"
        config = json.loads(summary.read_text())["config"] if summary.exists() else asdict(DemoConfig())
        total = config["train_problems"] + config["val_problems"] + config["test_problems"]
        problems = generate_problems(total, seed=config["seed"])[:config["train_problems"]]
        params = SamplingParams(n=k, temperature=config["temperature"], max_new_tokens=320, seed=seed + 77_000)
        extra = sample_traces(TransformersCompleter("tiny-gsm"), problems, k, params)
        for trace in extra:
            trace.id += f"-x{seed}"
        return extra

    return cached_traces(demo / f"traces_train_extra{k}_seed{seed}.jsonl", sample)


def sampled_tokens(traces) -> int:
    from transformers import AutoTokenizer

    from prm.model_names import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model("tiny-gsm"))
    texts = ["\n".join(t.step_texts) for t in traces]
    return sum(len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"])


def arguments():
    args = parser(__doc__, "implicit", threads=2, quick=None)
    args.add_argument("--demo", required=True, help="a finished `prm demo` output folder")
    args.add_argument("--rows", default="ce-b05", help=f"comma-separated from {', '.join(ROWS)}, or all")
    args.add_argument("--extra-samples", type=int, default=0, help="more solutions per training problem")
    args.add_argument("--set", action="append", default=[],
                      help="override a setting of every row: model.beta=0.2 or training.learning_rate=1e-4")
    args.add_argument("--holdout", type=int, default=0,
                      help="measure on the last K training problems instead of the demo's test split")
    args.add_argument("--keep", default=None, help="save each trained model under this folder")
    return args.parse_args()


def splits(args) -> tuple[list, list, list]:
    """(train, val, test): the demo's, or with --holdout the last K training problems as test."""
    from prm.io import read_traces

    demo = Path(args.demo)
    train = read_traces(demo / "traces_train.jsonl")
    extra = sample_more(demo, args.extra_samples, args.seed) if args.extra_samples else []
    if not args.holdout:
        return train + extra, read_traces(demo / "traces_val.jsonl"), read_traces(demo / "traces_test.jsonl")
    held = set(sorted({t.meta["problem_id"] for t in train})[-args.holdout:])
    test = [t for t in train if t.meta["problem_id"] in held]
    keep = [t for t in train + extra if t.meta["problem_id"] not in held]  # nothing of a held-out problem
    return keep, [], test


def demo_prm(args) -> dict | None:
    """The demo's PRM (MC labels + sympy) measured on the same test traces, when it has one."""
    from prm.io import read_traces

    demo = Path(args.demo)
    if args.holdout or not (demo / "scored_test.jsonl").exists():
        return None
    mc = measure(read_traces(demo / "scored_val.jsonl"), read_traces(demo / "scored_test.jsonl"))
    print(f"demo PRM (MC labels + sympy): best-of-{mc['n']} min {mc['best_of_n']['prm_min']:.3f}"
          f" majority {mc['best_of_n']['majority']:.3f} oracle {mc['best_of_n']['oracle']:.3f}; "
          f"AUROC {mc['auroc']:.3f}, first-error F1 {mc['first_error_f1']:.3f}")
    return mc


def row_settings(name: str, overrides: list[str]) -> dict:
    """A row of ROWS with the --set overrides applied."""
    row = json.loads(json.dumps(ROWS[name]))
    for override in overrides:
        key, value = override.split("=", 1)
        part, field = key.split(".", 1)
        row[part][field] = type(row[part].get(field, 0.0))(value) if field in row[part] else float(value)
    return row


def run_row(name: str, row: dict, args, train, val, test) -> tuple[dict, float]:
    """Train one row and measure it: (figures, CPU seconds)."""
    wall = time.perf_counter()
    model, cpu = train_implicit(outcome_only(train), args.out / name, row["model"],
                                row["training"], args.seed)
    if args.keep:
        model.save_pretrained(Path(args.keep) / name)
    scored_test = model.score_traces(outcome_only(test))
    if args.holdout:
        for scored, original in zip(scored_test, test):
            scored.meta = original.meta  # gold labels stay in meta
        figures = measure_holdout(scored_test)
    else:
        figures = measure(model.score_traces(outcome_only(val)), scored_test)
    best = figures["best_of_n"]
    print(f"{name} {row}: best-of-{figures['n']} " + " ".join(
        f"{k} {best[k]:.3f}" for k in ("prm_min", "prm_last", "prm_mean", "prm_prod", "weighted_last", "majority")
        if k in best) + f"; AUROC {figures['auroc']:.3f}, first-error F1 {figures['first_error_f1']:.3f}, "
          f"{cpu:.0f} CPU s, {time.perf_counter() - wall:.0f} s wall", flush=True)
    return figures, cpu


def main() -> int:
    args = arguments()
    import logging

    use_threads(args.threads)
    logging.getLogger("transformers").setLevel(logging.ERROR)
    machine_record = machine(args.threads)
    train, val, test = splits(args)
    mc = demo_prm(args)
    tokens = sampled_tokens(train)
    print(f"training: {len(train)} traces, {tokens} sampled tokens, 0 rollouts; "
          f"load average {machine_record['load_average_start']}")
    for name in list(ROWS) if args.rows == "all" else args.rows.split(","):
        row = row_settings(name, args.set)
        figures, cpu = run_row(name, row, args, train, val, test)
        key = name + (f"/x{args.extra_samples}" if args.extra_samples else "") + (
            f"/holdout{args.holdout}" if args.holdout else "") + ("/" + ",".join(args.set) if args.set else "")
        merge_results(args.results, key, {"settings": row, "seed": args.seed, "train_traces": len(train),
                                          "sampled_tokens": tokens, "rollouts": 0, "cpu_seconds": round(cpu, 1),
                                          **figures, "mc_prm": mc}, machine_record)
    return 0


if __name__ == "__main__":
    sys.exit(main())
