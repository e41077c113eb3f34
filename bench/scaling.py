"""Label scaling: does a verifier improve with more labelled traces, per label source, per
training recipe and per CPU-second of labelling? (issue 29)

    python bench/scaling.py                                    # the full grid (hours; resumable)
    python bench/scaling.py --points implicit:implicit-wide:9600   # one point (SOURCE:RECIPE:SIZE)
    python bench/scaling.py --sources gold --recipes head,lora,full --sizes 600,2400,9600
    python bench/scaling.py --report                           # table, plots and goals from what is measured
    python bench/scaling.py --quick                            # smoke run, tiny sizes (the test suite runs it)

The world and its splits (`bench/scaling_data.py`): fresh training problems of the embedded
world sampled by tiny-gsm (4 solutions per problem; a size of N traces is the first N of one
fixed pool, so 1,200 contains 600), 40 validation problems x 8 and, per test seed, 80 test
problems x 8 of their own world seed; none of them the demo's.

Label sources (`SOURCES`), each at its own cost:
- `mc-hard`, `mc-soft`: Monte Carlo (Math-Shepherd), N = 8 completions per step prefix,
  hard or soft labels (one labelling run serves both);
- `binary`: binary search for the first error (OmegaPRM), N = 8 per probe;
- `consensus`: the Monte Carlo labels of the traces on which sympy's first refutation and
  the Monte Carlo first error agree (`annotate.checkers.combine.consensus_filter`; Qwen's
  consensus filtering with the checker as the second source); fewer traces train;
- `implicit`, `orm`: the outcome label only (graded final answer; zero rollouts);
- `gold`: the world's exact step labels (a diagnostic ceiling no real data set has);
- `untrained` (size 0, recipe `head`): no label at all, the head as initialised reads tiny-gsm's
  token log-probabilities (weight 1): what any training adds is measured against it.

Recipes (`RECIPES`): `head` (the demo's: a head on frozen tiny-gsm reading its token
log-probabilities), `lora` (LoRA r=8 with the LM features read from the adapter-free LM),
`full` (every weight trains, no LM features); the implicit PRM has its own (`implicit`: tiny-gsm
fine-tuned against a frozen copy of itself, the demo's beta 0.1, CE; `implicit-wide`: the same on
a verifier backbone twice tiny-gsm's width, `WIDE_BACKBONE`, trained once by the bench). Every recipe evaluates
on the validation traces each epoch and keeps the best checkpoint by step AUROC against gold
(`load_best_model_at_end`), with early stopping, so nothing is reported from a memorised
model. Epochs shrink as the data grows (`epochs_for`).

Each point (source, recipe, size) is measured on every test seed: best-of-8 of the verifier
alone (min aggregation, no checker: what the goals read; beside it, best-of-8 with the
aggregation of step scores that is best on the validation traces), step AUROC against gold, ProcessBench first-error F1 on
all traces and on the checker-blind subset, false alarms on fully correct traces at the
first-error threshold chosen on validation; cost: rollouts, sampled tokens, CPU-seconds of
sampling, labelling and training. Reference rows: majority vote, the perfect verifier (gold)
and the oracle (pass@8). Each point's result is written to bench/results/scaling/ as soon as it
is measured (and with `--commit`, committed), so the bench runs in several sittings; labels,
traces and models are cached under --out and regenerated, never committed. `--report` (also
run at the end of every run) prints the table and the goal lines, writes
bench/results/scaling.json and the plot docs/images/label_scaling.png.
"""

from __future__ import annotations

import copy
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench import _harness as harness  # noqa: E402  (also drops bench/ from sys.path)

POINTS_DIR = harness.RESULTS / "scaling"
PLOT = harness.ROOT / "docs" / "images" / "label_scaling.png"
SIZES = [600, 1200, 2400, 4800, 9600]
OUTCOME_SIZES = SIZES + [19200, 38400, 76800]  # the implicit PRM's (outcome labels are nearly free)
# LoRA and full fine-tuning at two sizes only: each costs 1-2x the head's training and both stay far
# below the head recipe wherever measured (gold labels, 600 to 9,600 traces: docs/reward_models.md).
FINE_TUNE_SIZES = [600, 2400]
TEST_SEEDS = [0, 1, 2]
N = 8

SOURCES = {  # name: (annotation method or None, label type the PRM learns, head)
    "mc-hard": ("mc", "hard", "prm"),
    "mc-soft": ("mc", "soft", "prm"),
    "binary": ("binary", "hard", "prm"),
    "consensus": ("mc", "hard", "prm"),
    "implicit": (None, "hard", "implicit"),
    "orm": (None, "hard", "orm"),
    "gold": (None, "hard", "prm"),
    "untrained": (None, "hard", "prm"),  # zero labels: the head as initialised (size 0)
}
IMPLICIT = ({"lm_features": False, "beta": 0.1, "implicit_loss": "ce"}, {"learning_rate": 1e-3, "balance_classes": False})
RECIPES = {  # name: (RewardModelOptions changes, RewardTrainerConfig changes, base epochs at 600 traces, backbone)
    "head": ({"lm_features": True}, {"freeze_backbone": True, "learning_rate": 5e-3}, 8.0, None),
    "lora": ({"lm_features": True, "lora_r": 8, "lora_alpha": 16}, {"learning_rate": 2e-3}, 4.0, None),
    "full": ({"lm_features": False}, {"learning_rate": 1e-3}, 4.0, None),
    "implicit": (*IMPLICIT, 2.0, None),
    # the same recipe on a verifier backbone wider than the generator, at half the learning rate as in its
    # pre-training (at 1e-3 the loss rose from 0.79 to 0.91 in the first quarter epoch, gradient norms 2-4)
    "implicit-wide": (IMPLICIT[0], {**IMPLICIT[1], "learning_rate": 5e-4}, 2.0, "wide"),
}
# The wider verifier backbone (Cobbe et al.'s verifiers were larger than their generator): tiny-gsm's
# recipe (`completers.train_tiny`: same data, tokenizer, schedule and batch) at twice the width, 3.85M
# parameters instead of 1.08M, at half the learning rate (at tiny-gsm's 5e-3 it learned 2-3x slower per
# step: loss 0.91 at step 818 where tiny-gsm had 0.21) and 2,500 steps (what fitted the session that
# trained it). Built by the bench into --out when missing, or given with --wide-backbone.
WIDE_BACKBONE = {"n_embd": 256, "n_inner": 768, "lr": 2.5e-3, "steps": 2500, "batch_size": 32, "eval_problems": 100,
                 "threads": 1}


@dataclass
class Settings:
    """Everything one run decides; --quick shrinks it."""
    out: Path
    points_dir: Path = POINTS_DIR
    test_seeds: list[int] = field(default_factory=lambda: list(TEST_SEEDS))
    test_problems: int = 80
    val_problems: int = 40
    mc_n: int = 8
    min_epochs: float = 1.0
    patience: int = 2
    model: str = "tiny-gsm"
    commit: bool = False
    quick: bool = False
    wide_backbone: Path | None = None  # default: <out>/tiny_gsm_wide, trained when missing


def epochs_for(recipe: str, size: int, settings: Settings) -> float:
    """The recipe's epochs at 600 traces, scaled down as data grows (about the same number of
    optimiser steps from 600 to 2,400 traces, then at least `min_epochs`)."""
    base = RECIPES[recipe][2]
    if settings.quick:
        return 1.0
    return max(settings.min_epochs, min(base, base * 600 / size * 2) if size > 600 else base)


def recipes_for(source: str, recipes: list[str]) -> list[str]:
    """The recipes that apply to a source: the implicit PRM trains with its own (on tiny-gsm, or
    on the wider backbone when `implicit-wide` is asked for)."""
    if SOURCES[source][2] == "implicit":
        return [r for r in recipes if r.startswith("implicit")] or ["implicit"]
    if SOURCES[source][2] == "orm" or source == "untrained":
        return ["head"]
    return [r for r in recipes if not r.startswith("implicit")]


def backbone_of(recipe: str, settings: Settings) -> str:
    """The model a recipe trains from: tiny-gsm, or the wider backbone (trained here when missing)."""
    if RECIPES[recipe][3] != "wide":
        return settings.model
    folder = settings.wide_backbone or settings.out / "tiny_gsm_wide"
    if not (folder / "config.json").exists():
        from completers.train_tiny import TrainConfig
        from completers.train_tiny import train as train_backbone

        config = TrainConfig(**{**WIDE_BACKBONE, **({"steps": 20, "eval_problems": 4} if settings.quick else {})})
        print(f"training the wide verifier backbone into {folder} ({config.steps} steps; about 75 CPU-minutes at "
              "full size, once)", flush=True)
        train_backbone(config, folder)
    return str(folder)


# -- labels ---------------------------------------------------------------------------------------

def label_pool(method: str, pool: list, size: int, settings: Settings, completer) -> list:
    """The first `size` pool traces labelled by `method` ("mc" or "binary") through the project's
    runner (`annotate.runner.run`: streamed, resumed trace by trace); each trace's process CPU
    seconds are kept beside the labels (`<method>_cpu.json`)."""
    from annotate.config import AnnotateConfig
    from annotate.runner import run
    from prm.io import read_traces

    path = settings.out / "labels" / f"{method}.jsonl"
    cpu_path = settings.out / "labels" / f"{method}_cpu.json"
    cpu = json.loads(cpu_path.read_text()) if cpu_path.exists() else {}
    wanted = pool[:size]
    done = {t.id for t in read_traces(path)} if path.exists() else set()
    if any(t.id not in done for t in wanted):
        clock = [time.process_time()]

        def on_trace(trace):
            now = time.process_time()
            cpu[trace.id] = round(now - clock[0], 4)
            clock[0] = now
            if len(cpu) % 20 == 0:
                harness.write_json(cpu_path, cpu)

        config = AnnotateConfig(method=method, n=settings.mc_n, temperature=1.0, max_new_tokens=320, seed=0)
        print(f"labelling {len(wanted) - len(done & {t.id for t in wanted})} traces with {method}", flush=True)
        run([copy.deepcopy(t) for t in wanted], path, completer(), config, completer_spec=settings.model,
            progress=not settings.quick, on_trace=on_trace)
        harness.write_json(cpu_path, cpu)
    by_id = {t.id: t for t in read_traces(path)}
    out = [by_id[trace.id] for trace in wanted]
    # a run killed between two saves of the CPU record: those traces are costed at the mean CPU
    # seconds per rollout of the recorded ones
    recorded = [t for t in out if t.id in cpu]
    per_rollout = (sum(cpu[t.id] for t in recorded) / max(1, sum(_rollouts(t) for t in recorded))) if recorded else 0.0
    for trace in out:
        trace.meta["label_cpu_seconds"] = cpu.get(trace.id, per_rollout * _rollouts(trace))
    return out


def _rollouts(trace) -> int:
    return sum(s.rollouts.total for s in trace.steps if s.rollouts is not None)


def training_traces(source: str, pool: list, size: int, settings: Settings, completer) -> list:
    """The training traces of `source` at `size`, with the labels that source gives."""
    from prm.app.demo import outcome_only

    method = SOURCES[source][0]
    if source == "untrained":
        return []
    if source == "gold":
        return pool[:size]  # sampled traces carry the world's gold step labels
    if method is None:
        return outcome_only(pool[:size])
    traces = label_pool(method, pool, size, settings, completer)
    if source == "consensus":
        from annotate.checkers import get_checker
        from annotate.checkers.combine import add_verdicts, consensus_filter

        began = time.process_time()
        add_verdicts(traces, get_checker("sympy"))
        checker_cpu = (time.process_time() - began) / max(len(traces), 1)
        for trace in traces:
            trace.meta["label_cpu_seconds"] = (trace.meta.get("label_cpu_seconds") or 0.0) + checker_cpu
        kept, counts = consensus_filter(traces, ["sympy"])
        print(f"consensus: kept {counts.kept} of {len(traces)} traces", flush=True)
        for trace in kept:
            trace.meta["consensus_of"] = len(traces)
        # the cost of the filtered set is what was paid for every trace labelled
        kept_cost = sum(t.meta["label_cpu_seconds"] or 0.0 for t in traces)
        kept_rollouts = sum(s.rollouts.total for t in traces for s in t.steps if s.rollouts is not None)
        for trace in kept:
            trace.meta["pool_cost"] = {"label_cpu_seconds": kept_cost, "rollouts": kept_rollouts}
        return kept
    return traces


def label_cost(traces: list, pool: list, size: int, tokenizer) -> dict:
    """What the labelled set cost: traces sampled, rollouts, sampled tokens (the traces' own and
    the rollouts'), CPU-seconds of sampling the traces and of labelling them."""
    pool = pool[:size]
    own = sum(len(ids) for ids in tokenizer(["\n".join(t.step_texts) for t in pool],
                                            add_special_tokens=False)["input_ids"]) if pool else 0
    first = traces[0].meta.get("pool_cost") if traces else None
    if first:  # consensus: the whole labelled pool was paid for
        rollouts, label_cpu = first["rollouts"], first["label_cpu_seconds"]
        rollout_tokens = None
    else:
        rollouts = sum(s.rollouts.total for t in traces for s in t.steps if s.rollouts is not None)
        rollout_tokens = sum(s.rollouts.tokens for t in traces for s in t.steps if s.rollouts is not None)
        label_cpu = sum(t.meta.get("label_cpu_seconds") or 0.0 for t in traces)
    sample_cpu = sum(t.meta.get("sample_cpu_seconds") or 0.0 for t in pool)
    return {"traces_sampled": len(pool), "traces_trained": len(traces), "rollouts": rollouts,
            "sampled_tokens": own + (rollout_tokens or 0) if rollout_tokens is not None else None,
            "own_tokens": own, "sample_cpu_seconds": round(sample_cpu, 2), "label_cpu_seconds": round(label_cpu, 2),
            "labelling_cpu_seconds": round(sample_cpu + label_cpu, 2)}


# -- training -------------------------------------------------------------------------------------

def train(source: str, recipe: str, traces: list, val: list, folder: Path, size: int, settings: Settings) -> dict:
    """Train one verifier into `folder` (skipped when there); returns its training cost."""
    cost_path = folder / "cost.json"
    if (folder / "config.json").exists() and cost_path.exists():
        return json.loads(cost_path.read_text())
    import shutil

    from completers.text import PLAIN_TEMPLATE
    from prm.app.demo import outcome_only
    from prm.reward.model import RewardModelOptions
    from prm.reward.training import RewardTrainer, RewardTrainerConfig

    _, label_type, head = SOURCES[source]
    model_changes, training_changes, _, _ = RECIPES[recipe]
    options = RewardModelOptions(head=head, label_type=label_type if head == "prm" else "hard",
                                 prompt_template=PLAIN_TEMPLATE, **model_changes)
    eval_traces = outcome_only(val) if head == "implicit" else val
    if options.label_type == "soft":  # validation traces carry gold hard labels: read them as 0/1 soft labels
        eval_traces = copy.deepcopy(val)
        for step in (s for t in eval_traces for s in t.steps):
            step.soft_label = None if step.hard_label is None else float(step.hard_label)
    checkpoints = folder / "checkpoints"
    settings_dict = dict(num_train_epochs=epochs_for(recipe, size, settings), per_device_train_batch_size=16,
                         seed=0, balance_classes=True, freeze_backbone=False, eval_strategy="epoch",
                         metric_for_best_model="auroc", greater_is_better=True,
                         early_stopping_patience=settings.patience, save_total_limit=2, logging_steps=50)
    both = {label for t in val for label in t.meta["gold_labels"]} == {0, 1}
    if head != "prm" or not both:  # outcome-level heads (or a one-class validation set): by validation loss
        settings_dict.update(metric_for_best_model="loss", greater_is_better=False)
    settings_dict.update(training_changes)
    args = RewardTrainerConfig.in_memory(str(checkpoints), **settings_dict)
    backbone = backbone_of(recipe, settings)  # built once, outside the point's training cost
    print(f"training {source}/{recipe} on {len(traces)} traces ({args.num_train_epochs:g} epochs)", flush=True)
    with harness.Stopwatch() as watch:
        trainer = RewardTrainer(backbone, args, train_traces=traces or val[:1], eval_traces=eval_traces,
                                model_options=options)
        if traces:  # no training traces (`untrained`): the head as initialised
            trainer.train()
    history = [{k: v for k, v in entry.items() if k in ("epoch", "eval_auroc", "eval_loss")}
               for entry in trainer.state.log_history if "eval_loss" in entry]
    trainer.model.save_pretrained(str(folder))
    shutil.rmtree(checkpoints, ignore_errors=True)
    cost = {"train_cpu_seconds": round(watch.cpu_seconds, 1), "train_seconds": round(watch.seconds, 1),
            "epochs": args.num_train_epochs, "backbone": Path(backbone).name,
            "best_checkpoint": trainer.state.best_model_checkpoint,
            "best_metric": trainer.state.best_metric, "eval_history": history}
    cost["best_checkpoint"] = cost["best_checkpoint"] and Path(cost["best_checkpoint"]).name
    harness.write_json(cost_path, cost)
    return cost


# -- measuring ------------------------------------------------------------------------------------

def scored(traces: list, scores: list) -> list:
    out = []
    for trace, values in zip(traces, scores):
        trace = copy.deepcopy(trace)
        for step, value in zip(trace.steps, values):
            step.score = value
        out.append(trace)
    return out


def gold_scored(traces: list, answer_line: bool) -> list:
    """A perfect verifier (`bench/verifiers.py`'s): gold step labels, and with `answer_line`
    the last step also 0 when the steps are right and the answer is not."""
    from bench.verifiers import gold_scored as gold

    return gold(traces, answer_line)


def step_auroc(traces: list) -> float | None:
    """ROC AUC of the step scores against the world's gold step labels (good = positive)."""
    from sklearn.metrics import roc_auc_score

    pairs = [(s.score, label) for t in traces for s, label in zip(t.steps, t.meta["gold_labels"])
             if s.score is not None]
    labels = [label for _, label in pairs]
    if not pairs or len(set(labels)) < 2:
        return None
    return float(roc_auc_score(labels, [score for score, _ in pairs]))


def metrics(val: list, test: list) -> dict:
    """One seed's figures of a scored verifier (`bench/verifiers.py`'s `row`, plus step AUROC and
    best-of-8 under each aggregation of the step scores; the goals read `best_of_8`, min)."""
    from bench.verifiers import best_of_n_rates, row
    from prm.aggregate import AGGREGATIONS

    rates = best_of_n_rates(test)
    return {**row(val, test), "step_auroc": step_auroc(test),
            **{f"best_of_8_{how}": rates[f"prm_{how}"] for how in AGGREGATIONS}}


def aggregation_on_validation(val: list) -> str:
    """The aggregation with the best best-of-8 on the validation traces (ties: the order of
    `prm.aggregate.AGGREGATIONS`, min first)."""
    from bench.verifiers import best_of_n_rates
    from prm.aggregate import AGGREGATIONS

    rates = best_of_n_rates(val)
    return max(AGGREGATIONS, key=lambda how: (rates[f"prm_{how}"], -AGGREGATIONS.index(how)))


def reference_rows(tests: dict) -> dict:
    """Majority vote, the perfect verifier (gold) and the oracle, per seed: best-of-8."""
    from bench.verifiers import best_of_n

    out = {"majority vote": {}, "perfect verifier (gold)": {}, "oracle (pass@8)": {}}
    for seed, traces in tests.items():
        flat = scored(traces, [[1.0] * len(t.steps) for t in traces])
        out["majority vote"][str(seed)] = best_of_n(flat, "majority")
        out["oracle (pass@8)"][str(seed)] = best_of_n(flat, "oracle")
        out["perfect verifier (gold)"][str(seed)] = best_of_n(gold_scored(traces, answer_line=True))
    return out


def measure_point(source: str, recipe: str, size: int, splits: dict, settings: Settings, completer,
                  tokenizer) -> dict:
    """Label, train and measure one (source, recipe, size) point."""
    from prm.reward.model import RewardModel

    pool, val, tests = splits["train"], splits["val"], splits["test"]
    traces = training_traces(source, pool, size, settings, completer)
    cost = label_cost(traces, pool, size, tokenizer)
    folder = settings.out / "models" / f"{source}_{recipe}_{size}"
    cost.update(train(source, recipe, traces, val, folder, size, settings))
    model = RewardModel.from_pretrained(str(folder))
    with harness.Stopwatch() as watch:
        def score(split_traces):
            return scored(split_traces, model.score_many([(t.problem, t.step_texts) for t in split_traces]))

        scored_val = score(val)
        per_seed = {str(seed): metrics(scored_val, score(traces_)) for seed, traces_ in tests.items()}
    chosen = aggregation_on_validation(scored_val)
    for figures in per_seed.values():
        figures["best_of_8_chosen"] = figures[f"best_of_8_{chosen}"]
    return {"source": source, "recipe": recipe, "size": size, "per_seed": per_seed, "aggregation_chosen": chosen,
            "mean": mean_of(per_seed), "cost": cost, "score_cpu_seconds": round(watch.cpu_seconds, 1),
            "test": {"seeds": sorted(tests), "problems": settings.test_problems, "samples": N},
            "machine": harness.machine(1)}


def mean_of(per_seed: dict) -> dict:
    keys = next(iter(per_seed.values())).keys()
    out = {}
    for key in keys:
        values = [m[key] for m in per_seed.values() if isinstance(m.get(key), (int, float))]
        if values:
            out[key] = sum(values) / len(values)
    return out


# -- the grid -------------------------------------------------------------------------------------

def plan(sources: list[str], recipes: list[str], sizes: list[int], outcome_sizes: list[int],
         fine_tune_sizes: list[int] | None = None) -> list[tuple]:
    """(source, recipe, size) in the order to measure: the smallest sizes of every source first,
    so a bench stopped early still has every source's start. LoRA and full fine-tuning at
    `fine_tune_sizes` only (all `sizes` when None)."""
    points = [("untrained", "head", 0)] if "untrained" in sources else []
    for size in sorted(set(sizes) | set(outcome_sizes)):
        for source in sources:
            allowed = outcome_sizes if source == "implicit" else sizes
            if size in allowed and source != "untrained":
                points += [(source, recipe, size) for recipe in recipes_for(source, recipes)
                           if recipe not in ("lora", "full") or fine_tune_sizes is None or size in fine_tune_sizes]
    return points


def point_path(settings: Settings, source: str, recipe: str, size: int) -> Path:
    return settings.points_dir / f"{source}_{recipe}_{size}.json"


def commit(path: Path) -> None:
    """Commit one result file (and nothing else) to the current branch."""
    subprocess.run(["git", "add", str(path)], cwd=harness.ROOT, check=False)
    subprocess.run(["git", "commit", "-q", "-m", f"bench/scaling: {path.stem}", "--", str(path)],
                   cwd=harness.ROOT, check=False)


def run_points(points: list[tuple], settings: Settings, pool_traces: int) -> None:
    from bench.scaling_data import load_splits
    from completers.transformers_completer import TransformersCompleter
    from prm.model_names import resolve_model
    from transformers import AutoTokenizer

    holder = {}

    def completer():
        if "c" not in holder:
            holder["c"] = TransformersCompleter(settings.model)
        return holder["c"]

    todo = [p for p in points if not point_path(settings, *p).exists()]
    if not todo:
        return
    splits = load_splits(settings.out, completer, pool_traces, settings.test_seeds, settings.test_problems,
                         settings.val_problems)
    reference = settings.points_dir / "reference.json"
    harness.cached(reference, lambda: {"rows": reference_rows(splits["test"]), "test_seeds": settings.test_seeds})
    tokenizer = AutoTokenizer.from_pretrained(resolve_model(settings.model))
    for number, point in enumerate(todo, 1):
        path = point_path(settings, *point)
        print(f"\n== point {number}/{len(todo)}: {'/'.join(map(str, point))}", flush=True)
        result = measure_point(*point, splits, settings, completer, tokenizer)
        harness.write_json(path, result)
        m = result["mean"]
        print(f"{'/'.join(map(str, point))}: best-of-8 {m['best_of_8']:.3f}, step AUROC {m.get('step_auroc', 0):.3f}, "
              f"blind F1 {m['blind_f1']:.3f}, false alarms {m['false_alarms']:.3f}", flush=True)
        if settings.commit:
            commit(path)


# -- the report -----------------------------------------------------------------------------------

def load_points(points_dir: Path) -> tuple[list[dict], dict | None]:
    points = [json.loads(p.read_text()) for p in sorted(points_dir.glob("*.json")) if p.name != "reference.json"]
    reference = points_dir / "reference.json"
    return points, (json.loads(reference.read_text()) if reference.exists() else None)


def series(points: list[dict]) -> dict[tuple[str, str], list[dict]]:
    """{(source, recipe): points sorted by size}."""
    out: dict[tuple[str, str], list[dict]] = {}
    for point in points:
        out.setdefault((point["source"], point["recipe"]), []).append(point)
    return {key: sorted(value, key=lambda p: p["size"]) for key, value in sorted(out.items())}


def reference_means(reference: dict | None) -> dict[str, float]:
    if not reference:
        return {}
    return {name: sum(v.values()) / len(v) for name, v in reference["rows"].items()}


def table_lines(points: list[dict]) -> list[str]:
    from prm.markdown import table_lines as markdown

    header = ["source", "recipe", "traces", "best-of-8", "aggregation chosen on validation", "step AUROC",
              "first-error F1 (all)", "F1 (checker-blind)", "false alarms", "rollouts", "labelling CPU-s", "train CPU-s",
              "best epoch"]
    body = []
    for (source, recipe), items in series(points).items():
        for p in items:
            m, c = p["mean"], p["cost"]
            seeds = [s["best_of_8"] for s in p["per_seed"].values()]
            best_epoch = next((h["epoch"] for h in c.get("eval_history", [])
                               if h.get("eval_auroc" if SOURCES[source][2] == "prm" else "eval_loss") == c.get(
                                   "best_metric")), None)
            body.append([source, recipe, f"{p['size']}" + (f" ({c['traces_trained']} kept)"
                                                          if c["traces_trained"] != p["size"] else ""),
                         f"{100 * m['best_of_8']:.1f}% [{100 * min(seeds):.0f}-{100 * max(seeds):.0f}]",
                         f"{100 * m['best_of_8_chosen']:.1f}% ({p['aggregation_chosen']})" if "aggregation_chosen" in p
                         else "—",
                         _num(m.get("step_auroc")), _num(m.get("first_error_f1")), _num(m.get("blind_f1")),
                         f"{100 * m['false_alarms']:.1f}%", f"{c['rollouts']:,}", f"{c['labelling_cpu_seconds']:,.0f}",
                         f"{c['train_cpu_seconds']:,.0f}", "—" if best_epoch is None else f"{best_epoch:g}"])
    return markdown(header, body)


def _num(value) -> str:
    return "—" if value is None else f"{value:.3f}"


def equal_cost(points: list[dict], cheap: str, dear: str, key: str) -> list[dict]:
    """For each point of `dear` (same recipe as a `cheap` point), the best `cheap` point that cost at
    most as much in `key` ("labelling_cpu_seconds" or "rollouts"): the comparison at equal cost."""
    out = []
    by = series(points)
    for (source, recipe), items in by.items():
        if source != dear:
            continue
        cheap_recipe = "implicit" if cheap == "implicit" else recipe
        rivals = by.get((cheap, cheap_recipe), [])
        for point in items:
            budget = point["cost"][key]
            affordable = [r for r in rivals if r["cost"][key] <= budget]
            if affordable:
                rival = max(affordable, key=lambda r: r["size"])
                out.append({"budget": budget, dear: point, cheap: rival,
                            "difference": rival["mean"]["best_of_8"] - point["mean"]["best_of_8"]})
    return out


def goals(points: list[dict], reference: dict | None) -> tuple[list[harness.Goal], list[str]]:
    """The issue's goals as Goal lines, and notes saying which points they read."""
    notes, out = [], []
    learned = [p for p in points if p["source"] != "gold"]
    if not learned or not reference:
        return out, ["no learned verifier measured yet"]
    refs = reference_means(reference)
    perfect = refs["perfect verifier (gold)"]
    by = {key: items for key, items in series(learned).items() if key[0] != "untrained"}
    # the best source/recipe: the best best-of-8 at its largest size
    best_key = max(by, key=lambda k: (by[k][-1]["size"], by[k][-1]["mean"]["best_of_8"]))
    curve = by[best_key]
    rises = all(b["mean"]["best_of_8"] > a["mean"]["best_of_8"] for a, b in zip(curve, curve[1:]))
    notes.append(f"best source/recipe at its largest size: {best_key[0]}/{best_key[1]}: best-of-8 "
                 + ", ".join(f"{p['size']}: {100 * p['mean']['best_of_8']:.1f}%" for p in curve))
    out.append(harness.Goal(f"{best_key[0]}/{best_key[1]} improves at every larger size measured "
                            f"({', '.join(str(p['size']) for p in curve)})",
                            rises and len(curve) > 1, "==", True))
    out.append(harness.Goal(f"{best_key[0]}/{best_key[1]} at {curve[-1]['size']} traces: best-of-8 within 3 points "
                            "of the perfect verifier", round(100 * curve[-1]["mean"]["best_of_8"], 1), ">=",
                            round(100 * (perfect - 0.03), 1), "%"))

    def shortfall(p):
        return max(0.0, 0.90 - p["mean"]["blind_f1"]) + max(0.0, p["mean"]["false_alarms"] - 0.05)

    closest = min(learned, key=lambda p: (shortfall(p), -p["mean"]["blind_f1"]))
    name = f"{closest['source']}/{closest['recipe']}/{closest['size']}"
    out.append(harness.Goal(f"checker-blind first-error F1 ({name}, the closest point)",
                            round(closest["mean"]["blind_f1"], 3), ">=", 0.90))
    out.append(harness.Goal(f"false alarms on correct traces ({name})", round(100 * closest["mean"]["false_alarms"], 1),
                            "<=", 5.0, "%"))
    for cheap, dear, key, claim in (("implicit", "mc-hard", "labelling_cpu_seconds", "PRIME"),
                                    ("binary", "mc-hard", "rollouts", "OmegaPRM")):
        pairs = equal_cost(points, cheap, dear, key)
        if not pairs:
            notes.append(f"{claim}'s claim: no {cheap} point at or under an {dear} point's {key}")
            continue
        top = max(pairs, key=lambda q: q[dear]["size"])
        notes.append(f"{claim}: " + "; ".join(
            f"{dear}/{q[dear]['recipe']}/{q[dear]['size']} {100 * q[dear]['mean']['best_of_8']:.1f}% vs "
            f"{cheap}/{q[cheap]['recipe']}/{q[cheap]['size']} {100 * q[cheap]['mean']['best_of_8']:.1f}% "
            f"({key} {q[cheap]['cost'][key]:,.0f} <= {q[dear]['cost'][key]:,.0f})" for q in pairs))
        out.append(harness.Goal(f"{claim}'s claim: {cheap} >= {dear} best-of-8 at equal {key.replace('_', ' ')} "
                                f"({dear}/{top[dear]['recipe']} at {top[dear]['size']})",
                                round(100 * top[cheap]["mean"]["best_of_8"], 1), ">=",
                                round(100 * top[dear]["mean"]["best_of_8"], 1), "%"))
    return out, notes


def equal_cost_table(points: list[dict]) -> list[str]:
    """Which source gives the best verifier at each labelling budget (CPU-seconds): the best
    point of every source that cost at most the budget."""
    from prm.markdown import table_lines as markdown

    budgets = sorted({round(p["cost"]["labelling_cpu_seconds"]) for p in points if p["source"] != "gold"})
    sources = sorted({p["source"] for p in points if p["source"] != "gold"})
    body = []
    for budget in budgets:
        row = [f"{budget:,}"]
        for source in sources:
            fit = [p for p in points if p["source"] == source and p["cost"]["labelling_cpu_seconds"] <= budget + 0.5]
            best = max(fit, key=lambda p: p["mean"]["best_of_8"], default=None)
            row.append("—" if best is None else f"{100 * best['mean']['best_of_8']:.1f}% ({best['recipe']}, {best['size']})")
        body.append(row)
    return markdown(["labelling CPU-s budget"] + sources, body)


def plot(points: list[dict], reference: dict | None, path: Path) -> None:
    """Best-of-8 against labelled traces and against labelling CPU-seconds, one line per source
    (its best recipe at each size), with majority vote and the perfect verifier as lines."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    refs = reference_means(reference)
    figure, axes = plt.subplots(1, 2, figsize=(12, 4.6))
    by_source: dict[str, dict[int, dict]] = {}
    for point in points:  # a recipe on another backbone is a line of its own
        line = point["source"] + (" (wide backbone)" if RECIPES[point["recipe"]][3] == "wide" else "")
        best = by_source.setdefault(line, {}).get(point["size"])
        if best is None or point["mean"]["best_of_8"] > best["mean"]["best_of_8"]:
            by_source[line][point["size"]] = point
    untrained = by_source.pop("untrained", {}).get(0)
    for source, sized in sorted(by_source.items()):
        items = [sized[s] for s in sorted(sized)]
        y = [100 * p["mean"]["best_of_8"] for p in items]
        style = dict(marker="o", label=source, linestyle="--" if source == "gold" else "-")
        axes[0].plot([p["size"] for p in items], y, **style)
        axes[1].plot([max(p["cost"]["labelling_cpu_seconds"], 1.0) for p in items], y, **style)
    for ax, xlabel in zip(axes, ("labelled training traces", "CPU-seconds of sampling + labelling the training traces")):
        for name, colour in (("majority vote", "grey"), ("perfect verifier (gold)", "black")):
            if name in refs:
                ax.axhline(100 * refs[name], color=colour, linestyle=":", label=name)
        if untrained:
            ax.axhline(100 * untrained["mean"]["best_of_8"], color="tab:brown", linestyle="-.",
                       label="untrained head (0 labels)")
        ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("best-of-8 solve rate, verifier alone (%)")
        ax.grid(alpha=0.3)
    axes[0].set_title("Quality vs labelled traces (best recipe per point)")
    axes[1].set_title("Quality vs labelling cost")
    axes[1].legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=110)
    plt.close(figure)


def report(settings: Settings, results: Path, plot_path: Path, machine: dict) -> dict:
    points, reference = load_points(settings.points_dir)
    if not points:
        print("no point measured yet")
        return {}
    refs = reference_means(reference)
    print(f"\n{len(points)} points; test: seeds {reference and reference['test_seeds']}, "
          f"{settings.test_problems} problems x {N} each; mean of seeds [min-max]")
    lines = table_lines(points)
    for line in lines:
        print(line)
    print("\nreference rows (best-of-8, mean of seeds): " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in refs.items()))
    print("\nat equal labelling CPU-seconds (best point of each source within the budget):")
    cost_lines = equal_cost_table(points)
    for line in cost_lines:
        print(line)
    goal_list, notes = goals(points, reference)
    print()
    for note in notes:
        print(note)
    harness.print_goals(goal_list)
    plot(points, reference, plot_path)
    print(f"plot: {plot_path}")
    return harness.save_results(results, {"points": len(points), "reference": refs, "table": lines,
                                          "equal_cost": cost_lines, "notes": notes,
                                          "plot": str(plot_path.relative_to(harness.ROOT))
                                          if plot_path.is_relative_to(harness.ROOT) else str(plot_path)},
                                machine, goal_list)


# -- command line ---------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = harness.parser(__doc__, "scaling")
    parser.add_argument("--sources", default="all", help=f"comma-separated, of {', '.join(SOURCES)}")
    parser.add_argument("--recipes", default="head,lora,full", help=f"comma-separated, of {', '.join(RECIPES)}")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="training traces (step-label sources and the ORM; with the default, LoRA and full "
                             f"fine-tuning at {' and '.join(map(str, FINE_TUNE_SIZES))} only)")
    parser.add_argument("--outcome-sizes", default=",".join(map(str, OUTCOME_SIZES)),
                        help="training traces for the implicit PRM (outcome labels only)")
    parser.add_argument("--points", help="exactly these points, comma-separated SOURCE:RECIPE:SIZE (in this order), "
                        "instead of the grid of --sources x --recipes x --sizes")
    parser.add_argument("--points-dir", type=Path, default=POINTS_DIR, help="one result JSON per point")
    parser.add_argument("--plot", type=Path, default=PLOT)
    parser.add_argument("--report", action="store_true", help="only the table, plot and goals of what is measured")
    parser.add_argument("--commit", action="store_true", help="git-commit each point's result file when written")
    parser.add_argument("--wide-backbone", type=Path, help="the implicit-wide recipe's backbone folder (default: "
                        "<out>/tiny_gsm_wide, trained there when missing)")
    args = parser.parse_args(argv)
    harness.use_threads(args.threads)
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import logging

    logging.getLogger("transformers").setLevel(logging.ERROR)
    machine = harness.machine(args.threads)
    settings = Settings(out=args.out, points_dir=args.points_dir, commit=args.commit, wide_backbone=args.wide_backbone)
    sources = list(SOURCES) if args.sources == "all" else args.sources.split(",")
    recipes = args.recipes.split(",")
    sizes = [int(s) for s in args.sizes.split(",") if s]
    outcome_sizes = [int(s) for s in args.outcome_sizes.split(",") if s]
    unknown = [s for s in sources if s not in SOURCES] + [r for r in recipes if r not in RECIPES]
    if unknown:
        parser.error(f"unknown source(s) or recipe(s): {', '.join(unknown)}")
    if args.quick:
        settings = Settings(out=args.out / "quick" if args.out == harness.OUT / "scaling" else args.out,
                            points_dir=args.points_dir, test_seeds=[0], test_problems=4, val_problems=3, mc_n=2,
                            patience=1, quick=True, wide_backbone=args.wide_backbone)
        sizes, outcome_sizes = [4, 8], [4, 8]
        if args.points_dir == POINTS_DIR:  # a smoke run never touches the committed results
            settings.points_dir = settings.out / "points"
        if args.results == harness.RESULTS / "scaling.json":
            args.results = settings.out / "scaling.json"
        if args.plot == PLOT:
            args.plot = settings.out / "label_scaling.png"
        if args.sources == "all":
            sources = ["gold", "mc-hard", "implicit"]
        if args.recipes == "head,lora,full":
            recipes = ["head"]
    if not args.report:
        default_sizes = args.sizes == ",".join(map(str, SIZES)) and not args.quick
        fine_tune = FINE_TUNE_SIZES if default_sizes else None  # sizes given: all of them
        points = plan(sources, recipes, sizes, outcome_sizes, fine_tune)
        if args.points:
            points = [(s, r, int(n)) for s, r, n in (p.split(":") for p in args.points.split(","))]
            bad = [p for p in points if p[0] not in SOURCES or p[1] not in recipes_for(p[0], list(RECIPES))]
            if bad:
                parser.error(f"unknown point(s) {bad}: SOURCE:RECIPE:SIZE, a recipe that applies to the source")
        pool = max(p[2] for p in points)
        run_points(points, settings, pool)
    report(settings, args.results, args.plot, machine)
    return 0


if __name__ == "__main__":
    sys.exit(main())
