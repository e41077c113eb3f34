"""Active learning vs random selection: PRM quality against rollouts spent, on the embedded world.

    nice -n 10 python bench/active.py                 # about 10-15 minutes on 2 loaded CPU cores
    python bench/active.py --quick                    # a smoke run: 12 pool problems, 2 rounds, seed 0

The demo's pieces (`prm.app.demo`): world problems, solutions sampled from tiny-gsm (gold step
labels from the world's program), Monte Carlo labels (`prm annotate`), a PRM head trained on
tiny-gsm's features (`prm.app.demo.train`), evaluated on held-out test problems.

1. A pool of unlabelled training traces and a test set (8 solutions per problem) are sampled
   once; every pool trace is labelled once with Monte Carlo (cached under --out; each trace's
   samples depend only on (seed, trace id), so labelling a trace when it is selected would give
   exactly these labels and spend exactly these rollouts: the loop reads them from the cache
   instead of sampling again, and counts their rollouts as spent).
2. The reference: a PRM trained on the whole labelled pool (100% of the rollouts).
3. For each seed and strategy, rounds of select -> label -> retrain (`annotate.select`):
   round 0 is a random set worth `--start` of the pool's rollouts (the same for both
   strategies); each later round adds `--step` of them, chosen by the current PRM's
   uncertainty (active) or at random (baseline).
4. Each PRM is measured on the test traces: step accuracy against gold (fixed threshold 0.5:
   the heads are trained with balanced classes) and best-of-8 solve rate (min aggregation).

Writes bench/results/active.json and the curve docs/images/active_learning.png (rollouts
spent vs step accuracy, active vs random, mean and range over seeds, the full PRM as a line).
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import (ROOT, Goal, Stopwatch, cached_traces, machine, parser, print_goals,  # noqa: E402
                            save_results, use_threads)

PLOT = ROOT / "docs" / "images" / "active_learning.png"


def sample(completer, problems, k, seed, path):
    from completers.base import SamplingParams
    from completers.world import sample_traces

    return cached_traces(path, lambda: sample_traces(completer, problems, k,
                                                     SamplingParams(n=k, max_new_tokens=320, seed=seed)))


def label_pool(completer, pool, args, path):
    from annotate.config import AnnotateConfig
    from annotate.runner import run
    from prm.io import read_traces

    config = AnnotateConfig(method="mc", n=args.n, max_new_tokens=320, seed=args.seed)
    run(pool, path, completer, config, completer_spec="tiny-gsm", progress=False)
    by_id = {t.id: t for t in read_traces(path)}
    return [by_id[t.id] for t in pool]


def train_and_measure(traces, folder, test, args, seed):
    """A PRM trained on `traces` (cached in `folder`), and its test step accuracy and best-of-8."""
    import copy

    from evals.report import EvalConfig, evaluate
    from prm.app.demo import DemoConfig, train
    from prm.reward.model import RewardModel

    config = DemoConfig(epochs=args.epochs, seed=seed, model="tiny-gsm")
    train(config, traces, [], folder, head="prm")
    model = RewardModel.from_pretrained(str(folder))
    scored = model.score_traces(copy.deepcopy(test))
    metrics, _ = evaluate(scored, EvalConfig(threshold=0.5, ns=[1, 8], repeats=16, seed=seed))
    best = metrics["best_of_n"]["methods"]
    return model, {"step_accuracy": metrics["step"]["accuracy"], "best_of_8": best["prm_min"][-1],
                   "oracle_8": best["oracle"][-1], "majority_8": best["majority"][-1]}


def run_strategy(strategy, seed, pool, test, args, out, total):
    import copy

    from annotate.select import select

    cost = {t.id: t.meta["annotation"]["rollouts"] for t in pool}
    labelled: list = []
    points = []
    model = None
    for round_number in range(args.rounds + 1):
        budget = round((args.start + args.step * round_number) * total) - sum(cost[t.id] for t in labelled)
        remaining = [copy.deepcopy(t) for t in pool if t.id not in {x.id for x in labelled}]
        for trace in remaining:  # unlabelled to the selector: only the current PRM's scores count
            for step in trace.steps:
                step.score = None
        how = "random" if round_number == 0 or strategy == "random" else "uncertain"
        if how == "uncertain":
            model.score_traces(remaining)
        chosen = select(remaining, budget, strategy=how, cost=lambda t: cost[t.id], seed=seed * 1000 + round_number)
        by_id = {t.id: t for t in pool}
        labelled += [by_id[t.id] for t in chosen.traces]  # their cached Monte Carlo labels
        spent = sum(cost[t.id] for t in labelled)
        folder = out / "models" / f"{strategy}-seed{seed}-round{round_number}"
        model, measured = train_and_measure(labelled, folder, test, args, seed)
        points.append({"round": round_number, "traces": len(labelled), "rollouts": spent,
                       "rollout_share": spent / total, **measured})
        print(f"  {strategy} seed {seed} round {round_number}: {len(labelled)} traces, {spent} rollouts "
              f"({spent / total:.0%}), step accuracy {measured['step_accuracy']:.3f}, "
              f"best-of-8 {measured['best_of_8']:.3f}", file=sys.stderr, flush=True)
    return points


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    fig, ax = plt.subplots(figsize=(6, 4))
    for strategy, color in (("active", "tab:blue"), ("random", "tab:orange")):
        runs = report["runs"][strategy]
        x = np.mean([[p["rollout_share"] for p in run] for run in runs], axis=0) * 100
        y = np.array([[p["step_accuracy"] for p in run] for run in runs]) * 100
        ax.plot(x, y.mean(axis=0), marker="o", color=color, label=f"{strategy} (mean of {len(runs)} seeds)")
        ax.fill_between(x, y.min(axis=0), y.max(axis=0), color=color, alpha=0.2)
    full = report["full"]["step_accuracy"] * 100
    ax.axhline(full, color="black", linestyle="--", label="all traces labelled (100% of rollouts)")
    ax.axhline(full - 1, color="grey", linestyle=":", label="goal: within 1 point")
    ax.set_xlabel("rollouts spent (% of labelling the whole pool)")
    ax.set_ylabel("test step accuracy vs gold (%)")
    ax.set_title("Active vs random selection (tiny-gsm world)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def arguments(argv):
    args = parser(__doc__, "active", quick="12 pool problems, 2 rounds, seed 0")
    args.add_argument("--pool-problems", type=int, default=30, help="training problems in the pool")
    args.add_argument("--pool-samples", type=int, default=2, help="solutions per pool problem")
    args.add_argument("--test-problems", type=int, default=12, help="test problems (8 solutions each)")
    args.add_argument("--n", type=int, default=4, help="Monte Carlo completions per step")
    args.add_argument("--start", type=float, default=0.1, help="round 0: random traces worth this share of rollouts")
    args.add_argument("--step", type=float, default=0.1, help="each later round adds this share")
    args.add_argument("--rounds", type=int, default=3, help="rounds after round 0")
    args.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="seeds of the selection rounds")
    args.add_argument("--epochs", type=float, default=8.0)
    args.add_argument("--plot", type=Path, default=PLOT)
    args = args.parse_args(argv)  # --seed: of the problems, samples and labels
    if args.quick:
        args.pool_problems, args.rounds, args.seeds = min(args.pool_problems, 12), min(args.rounds, 2), args.seeds[:1]
    return args


def pool_and_test(args, out: Path) -> tuple[list, list]:
    """The labelled pool (Monte Carlo, cached) and the test traces (gold in meta only)."""
    from completers.transformers_completer import TransformersCompleter
    from completers.world import generate_problems

    completer = TransformersCompleter("tiny-gsm")
    problems = generate_problems(args.pool_problems + args.test_problems, seed=args.seed)
    pool = sample(completer, problems[:args.pool_problems], args.pool_samples, args.seed + 1, out / "pool.jsonl")
    test = sample(completer, problems[args.pool_problems:], 8, args.seed + 2, out / "test.jsonl")
    for trace in test:  # gold stays in meta; the step labels must not look like model output
        for step in trace.steps:
            step.hard_label = step.label_source = None
    labelled = label_pool(completer, pool, args, out / "pool_labelled.jsonl")
    completer.close()
    return labelled, test


def at_most(runs: dict, share: float) -> dict:
    """Per strategy: the mean over seeds of the last round within `share` of the rollouts."""
    table = {}
    for strategy, seed_runs in runs.items():
        best = [max((p for p in run if p["rollout_share"] <= share + 1e-9), key=lambda p: p["rollouts"])
                for run in seed_runs]
        table[strategy] = {k: sum(p[k] for p in best) / len(best) for k in ("rollout_share", "step_accuracy",
                                                                             "best_of_8")}
    return table


def main(argv=None) -> int:
    args = arguments(argv)
    use_threads(args.threads)
    machine_record = machine(args.threads)
    with Stopwatch() as watch:
        labelled, test = pool_and_test(args, args.out)
        total = sum(t.meta["annotation"]["rollouts"] for t in labelled)
        print(f"pool: {len(labelled)} traces, {total} rollouts to label them all; test: {len(test)} traces",
              file=sys.stderr, flush=True)
        _, full = train_and_measure(labelled, args.out / "models" / "full", test, args, args.seeds[0])
        print(f"  all traces: step accuracy {full['step_accuracy']:.3f}, best-of-8 {full['best_of_8']:.3f}",
              file=sys.stderr, flush=True)
        runs = {"active": [], "random": []}
        for seed in args.seeds:
            for strategy in runs:
                runs[strategy].append(run_strategy(strategy, seed, labelled, test, args, args.out, total))
    report = {"command": "python bench/active.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "pool": {"traces": len(labelled), "rollouts": total,
                       "flawed": sum(t.meta["gold_first_error"] >= 0 for t in labelled)},
              "test": {"traces": len(test), "problems": args.test_problems},
              "settings": {"n": args.n, "start": args.start, "step": args.step, "rounds": args.rounds,
                           "seeds": args.seeds, "epochs": args.epochs},
              "full": full, "runs": runs, "at_30_percent": at_most(runs, 0.3), "seconds": round(watch.seconds, 1)}
    plot(report, args.plot)
    print(markdown(report))
    active = report["at_30_percent"]["active"]
    goal_list = [Goal("active, <= 30% of the rollouts: step accuracy behind the fully labelled PRM",
                      round(100 * (full["step_accuracy"] - active["step_accuracy"]), 1), "<=", 1, "points")]
    print_goals(goal_list)
    save_results(args.results, report, machine_record, goal_list)
    return 0


def markdown(report) -> str:
    from prm.markdown import table_lines

    full = report["full"]
    rows = [["all traces (reference)", "100%", f"{100 * full['step_accuracy']:.1f}", f"{100 * full['best_of_8']:.1f}"]]
    for strategy, row in report["at_30_percent"].items():
        rows.append([f"{strategy}, <= 30% of rollouts", f"{100 * row['rollout_share']:.0f}%",
                     f"{100 * row['step_accuracy']:.1f}", f"{100 * row['best_of_8']:.1f}"])
    lines = table_lines(["PRM trained on", "rollouts", "step accuracy %", "best-of-8 %"], rows)
    pool = report["pool"]
    lines.append(f"\npool {pool['traces']} traces ({pool['flawed']} flawed), {pool['rollouts']} rollouts to label "
                 f"all; test {report['test']['traces']} traces; seeds {report['settings']['seeds']} "
                 f"(mean); {report['seconds']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
