"""Every verifier on the demo's split, measured where it matters: best-of-8, first-error F1 on
all test traces and on the checker-blind subset, false alarms on correct traces, label cost.

    prm demo --out demo_out                              # once (labels and split)
    python bench/verifiers.py --demo demo_out            # 3 seeds, every verifier
    python bench/verifiers.py --demo demo_out --quick    # 1 seed, 16 test problems

One completer (tiny-gsm) and the embedded world, the demo's train / validation / test split.
Stages, each cached under --out so that a re-run only does what is missing:

1. Test traces per seed: seed 0 is the demo's own test sample (8 solutions per problem);
   seeds 1, 2 sample 8 new solutions per test problem (`completers.world.sample_traces`, gold
   labels from the world). Sympy verdicts on every step of the validation and test traces.
2. Verifiers (`VERIFIERS`), each trained on the demo's 600 training traces and labels with
   its recipe; training CPU-seconds measured here (one torch thread), and label cost per
   training trace: Monte Carlo rollouts and sampled tokens (the trace's own tokens plus its
   rollouts' tokens).
3. Scores of every validation and test trace (cached per verifier), and each PRM also with
   the sympy fusion (a refuted step scores 0, `annotate.checkers.scorer.CheckerAwareScorer`).
4. Per seed and verifier: best-of-8 solve rate (min aggregation, ties at random,
   `evals.best_of_n`); ProcessBench first-error F1 at the threshold that maximises it on the
   validation traces, on all test traces and on the checker-blind subset
   (`evals.checker_blind.checker_blind_subset`: flawed traces sympy refutes nowhere, plus
   every clean trace); the false-alarm rate at that threshold
   (`evals.checker_blind.false_alarm_rate`). Rows also for majority vote, the oracle
   (pass@8) and a perfect verifier (the world's gold step labels, and the answer line scored
   right exactly when the steps are right and the answer is, as `bench/search.py`'s
   `GoldScorer`).

Prints the table (mean of the seeds, min-max in brackets) and the issue's goal lines, each
met or missed by how much; writes bench/results/verifiers.json.
"""

from __future__ import annotations

import functools
import json
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import (Goal, Stopwatch, cached, cached_traces, machine, parser, print_goals,  # noqa: E402
                            quiet_transformers, save_results, use_threads)

N = 8  # best-of-N (the demo's eval_samples when it has fewer: a quick demo has 4)


# -- stage 1: the traces --------------------------------------------------------------------------

def demo_config(demo: Path):
    from prm.app.demo import DemoConfig

    summary = demo / "summary.json"
    config = DemoConfig(**json.loads(summary.read_text())["config"]) if summary.exists() else DemoConfig()
    config.threads = 1
    return config


def with_sympy(traces):
    """`traces` with a sympy verdict on every step."""
    from annotate.checkers import get_checker
    from annotate.checkers.combine import add_verdicts

    return add_verdicts(traces, get_checker("sympy"))


def test_traces(config, demo: Path, work: Path, seed: int, completer, problems: int | None):
    """The test traces of one seed, with sympy verdicts: seed 0 the demo's own sample."""
    def make():
        from prm.io import read_traces

        if seed == 0:
            traces = read_traces(demo / "traces_test.jsonl")
        else:
            from completers.base import SamplingParams
            from completers.world import generate_problems, sample_traces

            total = config.train_problems + config.val_problems + config.test_problems
            chosen = generate_problems(total, seed=config.seed)[config.train_problems + config.val_problems:]
            params = SamplingParams(n=config.eval_samples, temperature=config.temperature, max_new_tokens=320,
                                    seed=config.seed + 3000 + 7919 * seed)
            print(f"sampling {config.eval_samples} solutions for {len(chosen)} test problems (seed {seed})",
                  flush=True)
            traces = sample_traces(completer(), chosen, config.eval_samples, params)
        if problems is not None:
            keep = set(list(dict.fromkeys(t.meta["problem_id"] for t in traces))[:problems])
            traces = [t for t in traces if t.meta["problem_id"] in keep]
        return with_sympy(traces)

    return cached_traces(work / "traces" / f"test_seed{seed}.jsonl", make)


# -- stage 2: the verifiers -----------------------------------------------------------------------

def train_reward_model(config, traces, folder: Path, head: str, options: dict | None = None,
                       training: dict | None = None) -> dict:
    """A reward model trained the demo's way (`prm.app.demo.train`'s settings), with `options`
    (RewardModelOptions fields) and `training` (RewardTrainerConfig fields) changed, saved in
    `folder`; its training cost (CPU and wall seconds) is cached in `folder/cost.json`."""
    def train() -> dict:
        from completers.text import PLAIN_TEMPLATE
        from prm.reward.model import RewardModelOptions
        from prm.reward.training import RewardTrainer, RewardTrainerConfig

        model_options = RewardModelOptions(head=head, label_type=config.labels if head == "prm" else "hard",
                                           prompt_template=PLAIN_TEMPLATE, lm_features=config.lm_features)
        model_options = replace(model_options, **(options or {}))
        settings = dict(num_train_epochs=config.epochs, per_device_train_batch_size=config.batch_size,
                        learning_rate=config.learning_rate, seed=config.seed, logging_steps=20,
                        balance_classes=True, freeze_backbone=model_options.lm_features)
        settings.update(training or {})
        print(f"training {folder.name} on {len(traces)} traces", flush=True)
        with Stopwatch() as watch:
            trainer = RewardTrainer(config.model, RewardTrainerConfig.in_memory(folder / "checkpoints", **settings),
                                    train_traces=traces, model_options=model_options)
            if settings["num_train_epochs"] > 0:
                trainer.train()
        trainer.model.save_pretrained(str(folder))
        return {"train_cpu_seconds": round(watch.cpu_seconds, 1), "train_wall_seconds": round(watch.seconds, 1)}

    return cached(folder / "cost.json", train)


def label_cost(traces, tokenizer) -> dict:
    """Monte Carlo rollouts and sampled tokens (each trace's own tokens plus its rollouts')
    per training trace."""
    rollouts = sum(s.rollouts.total for t in traces for s in t.steps if s.rollouts is not None)
    rollout_tokens = sum(s.rollouts.tokens for t in traces for s in t.steps if s.rollouts is not None)
    own = sum(len(tokenizer("\n".join(t.step_texts))["input_ids"]) for t in traces)
    return {"traces": len(traces), "rollouts_per_trace": rollouts / len(traces),
            "sampled_tokens_per_trace": (own + rollout_tokens) / len(traces)}


def verifiers(config, demo: Path, work: Path, only: list[str] | None = None) -> dict[str, dict]:
    """Each learned verifier: {name: {"folder", "head", "cost"}} (trained once, cached).

    The rows (see docs/reward_models.md, "Recipe"):
    - MC PRM (demo): the demo's recipe, a head on frozen tiny-gsm with LM features, trained on
      Monte Carlo labels with the sympy override;
    - MC PRM, LoRA r=8: the same labels; LoRA adapters on tiny-gsm train with the head, the LM
      features read from the backbone with its adapters off;
    - MC PRM, LoRA r=8, demo schedule: the same with the demo head's learning rate and epochs;
    - MC PRM, full fine-tune: the same labels; every weight trains, no LM features (fine-tuning
      would move the log-probabilities they are read from);
    - LM features, untrained head: no labels at all, the head as initialised (it reads the LM's
      lowest token log-probabilities with weight 1): what the training adds;
    - gold-label PRM (diagnostic): the demo's recipe on the world's exact step labels, which no
      real data set has: how much better labels alone would give;
    - implicit PRM (outcome labels): the demo's implicit PRM recipe (`head="implicit"`, tiny-gsm
      fine-tuned against a frozen copy of itself on the outcome labels; no rollouts);
    - ORM: the same backbone and recipe, one outcome label per training trace (no rollouts).
    """
    from prm.app.demo import IMPLICIT_BETA, IMPLICIT_EPOCHS, IMPLICIT_LOSS, IMPLICIT_LR, outcome_only
    from prm.io import read_traces

    checked = read_traces(demo / "labels_checked.jsonl")
    plain = read_traces(demo / "traces_train.jsonl")
    backbone = {"freeze_backbone": False, "num_train_epochs": min(config.epochs, 4.0)}
    plan = {
        "MC PRM (demo)": (checked, "prm", None, None),
        "MC PRM, LoRA r=8": (checked, "prm", {"lora_r": 8, "lora_alpha": 16}, {**backbone, "learning_rate": 2e-3}),
        "MC PRM, LoRA r=8, demo schedule": (checked, "prm", {"lora_r": 8, "lora_alpha": 16},
                                            {"freeze_backbone": False}),
        "MC PRM, full fine-tune": (checked, "prm", {"lm_features": False}, {**backbone, "learning_rate": 1e-3}),
        "LM features, untrained head": (plain, "prm", None, {"num_train_epochs": 0.0}),
        "gold-label PRM (diagnostic)": (plain, "prm", None, None),
        "implicit PRM (outcome labels)": (outcome_only(plain), "implicit",
                                          {"lm_features": False, "beta": IMPLICIT_BETA, "implicit_loss": IMPLICIT_LOSS},
                                          {"freeze_backbone": False, "balance_classes": False,
                                           "learning_rate": IMPLICIT_LR, "num_train_epochs": IMPLICIT_EPOCHS}),
        "ORM": (plain, "orm", None, None),
    }
    if only:
        plan = {name: recipe for name, recipe in plan.items() if name in only or name == "ORM"}
    out = {}
    for name, (traces, head, options, training) in plan.items():
        folder = work / "models" / slug(name)
        cost = train_reward_model(config, traces, folder, head, options, training)
        out[name] = {"folder": folder, "head": head, "traces": traces, "cost": cost}
    return out


def slug(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name).strip("_")


# -- stage 3: scores ------------------------------------------------------------------------------

def cached_scores(model, name: str, split: str, traces, work: Path) -> dict[str, list[float | None]]:
    """{trace id: step scores} of `model` on `traces` (cached in work/scores/NAME/SPLIT.json)."""
    def score():
        items = [(t.problem, t.step_texts) for t in traces]
        return {t.id: s for t, s in zip(traces, model.score_many(items))}

    return cached(work / "scores" / slug(name) / f"{split}.json", score)


def scored(traces, scores: dict, fuse: bool):
    """Copies of `traces` carrying `scores` (a sympy-refuted step scores 0 when `fuse`)."""
    import copy

    out = []
    for trace in traces:
        trace = copy.deepcopy(trace)
        for step, value in zip(trace.steps, scores[trace.id]):
            refuted = any(v.checker == "sympy" and v.status == "refuted" for v in step.verdicts)
            step.score = 0.0 if fuse and refuted else value
        out.append(trace)
    return out


def gold_scored(traces, answer_line: bool):
    """Copies of `traces` scored by their gold step labels; with `answer_line`, the last step
    also scores 0 when the steps are right but the answer is not (a perfect verifier that reads
    the answer line too)."""
    import copy

    out = []
    for trace in traces:
        trace = copy.deepcopy(trace)
        labels = trace.meta["gold_labels"]
        for step, label in zip(trace.steps, labels):
            step.score = float(label)
        if answer_line and trace.steps and all(labels) and trace.outcome_label != 1:
            trace.steps[-1].score = 0.0
        out.append(trace)
    return out


# -- stage 4: metrics -----------------------------------------------------------------------------

def best_of_n_rates(traces) -> dict[str, float]:
    """Best-of-N solve rate of every method (`evals.best_of_n`), N = 8 or the smallest group."""
    from evals.best_of_n import best_of_n_curves, group_by_problem

    n = min(N, min(len(group) for group in group_by_problem(traces).values()))
    return {method: rates[0] for method, rates in best_of_n_curves(traces, ns=[n])["methods"].items()}


def best_of_n(traces, method: str = "prm_min") -> float:
    return best_of_n_rates(traces)[method]


def row(val, test) -> dict:
    """Best-of-8, first-error F1 (all, checker-blind), false alarms of scored val/test traces."""
    from evals.checker_blind import checker_blind_subset, false_alarm_rate
    from evals.first_error import choose_first_error_threshold, first_error_metrics

    threshold = choose_first_error_threshold(val)
    blind = checker_blind_subset(test, "sympy")
    return {"best_of_8": best_of_n(test), "threshold": threshold,
            "first_error_f1": first_error_metrics(test, threshold)["overall"]["f1"],
            "blind_f1": first_error_metrics(blind, threshold)["overall"]["f1"],
            "false_alarms": false_alarm_rate(test, threshold)["rate"],
            "blind_traces": sum(t.meta["gold_first_error"] >= 0 for t in blind)}


def measure(models: dict, val, tests: dict[int, list], work: Path) -> dict[str, dict[int, dict]]:
    """{row name: {seed: metrics}} for every verifier, with and without the sympy fusion, and
    the reference rows."""
    from prm.reward.model import RewardModel

    rows: dict[str, dict[int, dict]] = {}
    for name, info in models.items():
        model = RewardModel.from_pretrained(str(info["folder"]))
        val_scores = cached_scores(model, name, "val", val, work)
        test_scores = {seed: cached_scores(model, name, f"test_seed{seed}", traces, work)
                       for seed, traces in tests.items()}
        for fuse in (False, True):
            label = name + (" + sympy" if fuse else "")
            rows[label] = {seed: row(scored(val, val_scores, fuse), scored(traces, test_scores[seed], fuse))
                           for seed, traces in tests.items()}
    gold_val = gold_scored(val, answer_line=False)
    rows["perfect verifier (gold)"] = {}
    for seed, traces in tests.items():
        metrics = row(gold_val, gold_scored(traces, answer_line=False))
        metrics["best_of_8"] = best_of_n(gold_scored(traces, answer_line=True))
        rows["perfect verifier (gold)"][seed] = metrics
    for name, method in (("majority vote", "majority"), ("oracle (pass@8)", "oracle")):
        rows[name] = {seed: {"best_of_8": best_of_n(scored(traces, {t.id: [1.0] * len(t.steps) for t in traces},
                                                           False), method)} for seed, traces in tests.items()}
    return rows


def mean_rows(rows: dict[str, dict[int, dict]]) -> dict[str, dict]:
    """Mean, min and max over seeds of every metric of every row."""
    out = {}
    for name, seeds in rows.items():
        keys = next(iter(seeds.values())).keys()
        out[name] = {}
        for key in keys:
            values = [s[key] for s in seeds.values() if s.get(key) is not None]
            if values:
                out[name][key] = {"mean": sum(values) / len(values), "min": min(values), "max": max(values)}
    return out


# -- reporting ------------------------------------------------------------------------------------

def _pct(cell: dict | None) -> str:
    if not cell:
        return "—"
    return f"{100 * cell['mean']:.1f}% [{100 * cell['min']:.0f}-{100 * cell['max']:.0f}]"


def _f1(cell: dict | None) -> str:
    return "—" if not cell else f"{cell['mean']:.3f} [{cell['min']:.2f}-{cell['max']:.2f}]"


def table_lines(table: dict, costs: dict) -> list[str]:
    from prm.markdown import table_lines as markdown

    header = ["verifier", "best-of-8", "first-error F1 (all)", "F1 (checker-blind)", "false alarms",
              "rollouts / trace", "sampled tokens / trace", "train CPU-s"]
    body = []
    for name, cells in table.items():
        cost = costs.get(name.removesuffix(" + sympy"))
        body.append([name, _pct(cells.get("best_of_8")), _f1(cells.get("first_error_f1")),
                     _f1(cells.get("blind_f1")), _pct(cells.get("false_alarms")),
                     "—" if cost is None else f"{cost['rollouts_per_trace']:.1f}",
                     "—" if cost is None else f"{cost['sampled_tokens_per_trace']:.0f}",
                     "—" if cost is None else f"{cost['train_cpu_seconds']:.0f}"])
    return markdown(header, body)


def goals(table: dict, learned: list[str]) -> list[Goal]:
    """The issue's goals (mean of the seeds), in points and F1 as the table shows them."""
    def mean(name, key):
        return table[name][key]["mean"]

    def points(value):
        return round(100 * value, 1)

    alone = [n for n in learned if n in table and "diagnostic" not in n]
    best = max(alone, key=lambda n: mean(n, "best_of_8"))

    def shortfall(n):  # how far a verifier is from both the blind-F1 and the false-alarm goal
        return max(0.0, 0.80 - mean(n, "blind_f1")) + max(0.0, mean(n, "false_alarms") - 0.10)

    blind = min(alone, key=lambda n: (shortfall(n), -mean(n, "blind_f1")))
    majority, perfect = mean("majority vote", "best_of_8"), mean("perfect verifier (gold)", "best_of_8")
    print(f"goals (mean of seeds; learned verifiers without the checker: {', '.join(alone)}; first-error F1 on "
          f"the checker-blind subset and false alarms for one verifier, the closest to both: {blind}):")
    out = [Goal(f"PRM alone best-of-8 ({best}) above majority vote", points(mean(best, "best_of_8") - majority),
                ">=", 8, "points"),
           Goal(f"first-error F1 on the checker-blind subset ({blind})", round(mean(blind, "blind_f1"), 3), ">=", 0.8),
           Goal(f"false alarms on correct traces ({blind})", points(mean(blind, "false_alarms")), "<=", 10, "%")]
    implicit = [n for n in alone if "implicit" in n.lower()]
    if implicit and "MC PRM (demo)" in table:
        out.append(Goal(f"implicit PRM best-of-8 ({implicit[0]}) above MC PRM's",
                        points(mean(implicit[0], "best_of_8") - mean("MC PRM (demo)", "best_of_8")), ">=", 0,
                        "points"))
    else:
        print("(implicit PRM best-of-8 >= MC PRM's: no implicit PRM row)")
    out.append(Goal(f"best verifier without the checker ({best}) behind the perfect verifier, best-of-8",
                    points(perfect - mean(best, "best_of_8")), "<=", 2, "points"))
    print("(... and in beam search at 8x: python bench/search.py --scorer '<verifier>', not run here)")
    return out


def arguments(argv):
    args = parser(__doc__, "verifiers", quick="seed 0 only, the first 16 test problems")
    args.add_argument("--demo", default="demo_out", help="a `prm demo` output folder")
    args.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args.add_argument("--verifiers", nargs="+", help="only these learned verifiers (names as in the table; "
                      "the ORM always)")
    return args.parse_args(argv)


def main(argv=None) -> int:
    args = arguments(argv)
    use_threads(args.threads)
    quiet_transformers()
    from prm.io import read_traces

    machine_record = machine(args.threads)
    demo, work = Path(args.demo), args.out / "quick" if args.quick else args.out
    seeds, problems = ([args.seeds[0]], 16) if args.quick else (args.seeds, None)
    config = demo_config(demo)

    @functools.cache
    def completer():  # loaded only when a seed's traces must be sampled
        from completers.transformers_completer import TransformersCompleter

        return TransformersCompleter(config.model)

    with Stopwatch() as watch:
        tests = {seed: test_traces(config, demo, work, seed, completer, problems) for seed in seeds}
        val = cached_traces(work / "traces" / "val.jsonl", lambda: with_sympy(read_traces(demo / "traces_val.jsonl")))
        models = verifiers(config, demo, work, args.verifiers)
        costs = label_costs(config, models)
        rows = measure(models, val, tests, work)
    table = mean_rows(rows)
    print(f"\n{sum(len(t) for t in tests.values()) // len(tests)} test traces per seed "
          f"({len({t.meta['problem_id'] for t in tests[seeds[0]]})} problems x {config.eval_samples}), seeds {seeds}; "
          f"thresholds chosen on {len(val)} validation traces; mean [min-max] over seeds")
    print("\n".join(table_lines(table, costs)) + "\n")
    goal_list = goals(table, [name for name in models if models[name]["head"] != "orm"] + ["ORM"])
    print_goals(goal_list)
    save_results(args.results, {"seeds": seeds, "quick": args.quick, "table": table, "per_seed": rows,
                                "costs": costs, "seconds": round(watch.seconds, 1)}, machine_record, goal_list)
    return 0


def label_costs(config, models: dict) -> dict:
    """Label cost (`label_cost`) and training cost of every verifier."""
    from transformers import AutoTokenizer

    from prm.model_names import resolve_model

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(config.model))
    return {name: {**label_cost(info["traces"], tokenizer), **info["cost"]} for name, info in models.items()}


if __name__ == "__main__":
    sys.exit(main())
