"""What a process reward does to RL: TRL's GRPOTrainer on tiny-gsm, on the embedded world.

Three arms, same seeds, same steps, same data order:

1. outcome: 1 if the final answer equals the reference, else 0 (`prm.rl.rewards.outcome_reward`);
2. outcome + process: the outcome plus the demo's PRM score of the solution (min over steps);
3. process: the PRM score alone.

The PRM is one `prm demo` trains (Monte Carlo labels with sympy overrides, tiny-gsm
backbone with LM features): by default the demo's default settings, trained into
`--out/demo` (skipped when it exists there); or any folder given with `--prm` (its demo
`summary.json` beside it, when there is one, is copied into the results).

The policy (tiny-gsm, 1M parameters) is evaluated every `--eval-every` steps on held-out
world problems (world seed 1000003, the model card's held-out seed): solve rate at
temperature 1 (`--eval-samples` per problem) and greedy; the share of correct-answer
solutions with a gold-wrong step (gold labels from the world's program,
`completers.world.trace_from_sample`); and signs of reward hacking: completion length in
tokens and steps, solutions that repeat a step, solutions without a final answer.

Each run (arm, seed) is written to `--out/runs/ARM-sSEED.json` when it finishes, and skipped
when that file exists: an interrupted benchmark resumes. The summary goes to
`bench/results/rl.json` and the plot of solve rate against steps to `bench/results/rl.png`.

    nice python bench/rl.py                      # 3 arms x 5 seeds, 40 steps each
    nice python bench/rl.py --seeds 1 &          # or one process per seed, then
    python bench/rl.py                           # once more to summarise the finished runs
    python bench/rl.py --quick                   # a smoke run (minutes)
"""

from __future__ import annotations

import json
import statistics
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import (OUT, RESULTS, Goal, cached, machine, parser, print_goals,  # noqa: E402
                            quiet_transformers, save_results, use_threads)

ARMS = ("outcome", "outcome+process", "process")
HELD_OUT_SEED = 1000003


@dataclass
class BenchConfig:
    out: str = str(OUT / "rl")
    results: str = str(RESULTS / "rl.json")
    plot: str = str(RESULTS / "rl.png")
    prm: str | None = None
    arms: tuple[str, ...] = ARMS
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    steps: int = 40
    prompts_per_step: int = 4
    generations: int = 4
    max_completion_length: int = 160
    learning_rate: float = 5e-4
    beta: float = 0.0
    train_problems: int = 1000
    train_seed: int = 7
    eval_problems: int = 50
    eval_samples: int = 4
    eval_every: int = 10
    threads: int = 1
    demo_threads: int = 1


def main(argv: list[str] | None = None) -> int:
    defaults = BenchConfig()
    args = parser(__doc__, "rl", threads=defaults.threads, quick="a smoke run: 10 steps, 1 seed, small evals")
    for name in ("steps", "eval_every", "eval_problems", "eval_samples", "train_problems",
                 "prompts_per_step", "generations", "max_completion_length"):
        args.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    args.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    args.add_argument("--beta", type=float, default=defaults.beta)
    args.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    args.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    args.add_argument("--prm", default=None, help="a trained PRM folder (default: train the demo's)")
    args.add_argument("--plot", default=defaults.plot)
    args = args.parse_args(argv)  # --seed is not used: --seeds are the runs' seeds
    config = BenchConfig(out=str(args.out), results=str(args.results), plot=args.plot, prm=args.prm,
                         arms=tuple(args.arms), seeds=tuple(args.seeds), steps=args.steps,
                         prompts_per_step=args.prompts_per_step, generations=args.generations,
                         max_completion_length=args.max_completion_length, learning_rate=args.learning_rate,
                         beta=args.beta, train_problems=args.train_problems, eval_problems=args.eval_problems,
                         eval_samples=args.eval_samples, eval_every=args.eval_every, threads=args.threads)
    if args.quick:
        config.steps, config.seeds, config.eval_every = 10, (0,), 5
        config.eval_problems, config.eval_samples = 20, 2
    run_bench(config)
    return 0


def run_bench(config: BenchConfig) -> dict:
    use_threads(config.threads)
    quiet_transformers()
    machine_record = machine(config.threads)
    out = Path(config.out)
    prm_dir = train_prm(config, out)
    runs = {}
    for seed in config.seeds:
        for arm in config.arms:
            def run(arm=arm, seed=seed):
                print(f"\n== {arm}, seed {seed}", flush=True)
                return run_arm(config, arm, seed, prm_dir)

            runs[(arm, seed)] = cached(out / "runs" / f"{arm}-s{seed}.json", run)  # an interrupted bench resumes
    summary = summarise(config, runs, prm_dir, prm_quality(prm_dir))
    plot(summary, config.plot)
    print_table(summary)
    print_goals(goal_list := goals(summary["goal"]))
    return save_results(config.results, summary, machine_record, goal_list)


# -- the PRM ----------------------------------------------------------------------------------

def train_prm(config: BenchConfig, out: Path) -> str:
    """The demo's PRM: `--prm`, or trained by `prm demo` (default settings) into OUT/demo."""
    if config.prm:
        return config.prm
    from prm.app.demo import DemoConfig, run_demo

    demo = out / "demo"
    if not (demo / "summary.json").exists():
        print("== training the demo's PRM (prm demo, default settings)", flush=True)
        run_demo(DemoConfig(out=str(demo), threads=config.demo_threads))
    return str(demo / "prm")


def prm_quality(prm_dir: str) -> dict:
    """How the PRM was trained and how it scored held-out steps, from the demo's summary.json."""
    path = Path(prm_dir).parent / "summary.json"
    if not path.exists():
        return {}
    summary = json.loads(path.read_text())
    step = summary.get("step") or {}
    first = summary.get("first_error") or {}
    return {"demo_config": summary.get("config"), "step_accuracy": step.get("accuracy"),
            "step_auroc": step.get("auroc"), "first_error_f1": (first.get("overall") or first).get("f1")}


# -- one run ----------------------------------------------------------------------------------

def run_arm(config: BenchConfig, arm: str, seed: int, prm_dir: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from completers.text import plain_prompt
    from completers.world import generate_problems
    from prm.model_names import resolve_model
    from prm.reward.loading import load_scorer
    from prm.rl.rewards import ProcessReward, outcome_reward

    path = resolve_model("tiny-gsm")
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"
    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(path)
    problems = generate_problems(config.train_problems, seed=config.train_seed)
    data = Dataset.from_list([{"prompt": plain_prompt(p.question, []), "problem": p.question,
                               "answer": str(p.answer)} for p in problems])
    held_out = generate_problems(config.eval_problems, seed=HELD_OUT_SEED)
    if arm == "outcome":
        reward = outcome_reward()
    else:
        scorer = load_scorer(prm_dir, device="cpu")
        reward = ProcessReward(scorer, aggregation="min", process_weight=1.0,
                               outcome_weight=1.0 if arm == "outcome+process" else 0.0, name="reward")

    curve = []

    def evaluate_now(step: int) -> None:
        started = time.perf_counter()
        point = {"step": step, **evaluate(model, held_out, config)}
        point["seconds"] = round(time.perf_counter() - started, 1)
        curve.append(point)
        print(f"  step {step:4d}: solve T=1 {point['solve_t1']:.1%}  greedy {point['solve_greedy']:.1%}  "
              f"flawed correct {point['flawed_correct_t1']:.1%}  tokens {point['mean_tokens_t1']:.0f}  "
              f"repeats {point['repeated_step_share_t1']:.1%}  ({point['seconds']} s)", flush=True)

    class EvalCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % config.eval_every == 0 or state.global_step == config.steps:
                evaluate_now(state.global_step)

    args = GRPOConfig(
        output_dir=str(Path(config.out) / "trainer"), max_steps=config.steps,
        per_device_train_batch_size=config.prompts_per_step * config.generations,
        num_generations=config.generations, max_completion_length=config.max_completion_length,
        learning_rate=config.learning_rate, beta=config.beta, temperature=1.0, top_k=0, top_p=1.0,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=seed, data_seed=seed,
        disable_tqdm=True, lr_scheduler_type="constant")
    trainer = GRPOTrainer(model=model, reward_funcs=reward, args=args, train_dataset=data,
                          processing_class=tokenizer, callbacks=[EvalCallback()])
    evaluate_now(0)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    reward.close()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    return {"arm": arm, "seed": seed, "curve": curve, "train_seconds": round(seconds, 1),
            "eval_seconds": round(sum(p["seconds"] for p in curve), 1),
            "train_reward": [round(h["reward"], 4) for h in logs],
            "train_length": [round(h.get("completions/mean_length", 0.0), 2) for h in logs],
            "score_calls": getattr(reward, "score_calls", 0)}


def evaluate(model, problems, config: BenchConfig) -> dict:
    """Solve rates, flawed correct solutions and hacking signs on held-out problems.

    Samples with the project's `TransformersCompleter` (shared-prefix sampling, seeded: the
    same sampling noise at every evaluation) with the policy being trained swapped in."""
    from completers.base import CompletionRequest, SamplingParams
    from completers.world import trace_from_sample

    completer = _completer()
    was_training = model.training
    completer.model = model.eval()
    completer.shared_attention = False  # the policy keeps its own attention (SDPA) for training
    requests = [CompletionRequest(p.question, []) for p in problems]
    try:
        sampled = completer.complete_many(requests, SamplingParams(
            n=config.eval_samples, temperature=1.0, max_new_tokens=config.max_completion_length, seed=12345))
        greedy = completer.complete_many(requests, SamplingParams(
            n=1, temperature=0.0, max_new_tokens=config.max_completion_length, seed=0))
    finally:
        if was_training:
            model.train()
    result = {}
    for name, outputs in (("t1", sampled), ("greedy", greedy)):
        traces, tokens = [], []
        for problem, completions in zip(problems, outputs):
            for j, completion in enumerate(completions):
                traces.append(trace_from_sample(problem, completion.text, f"{problem.id}-{name}{j}"))
                tokens.append(completion.tokens)
        correct = [t for t in traces if t.outcome_label == 1]
        flawed = [t for t in correct if t.meta["gold_first_error"] != -1]
        result[f"solve_{name}"] = len(correct) / len(traces)
        result[f"flawed_correct_{name}"] = len(flawed) / len(correct) if correct else 0.0
        result[f"n_correct_{name}"] = len(correct)
        result[f"mean_tokens_{name}"] = sum(tokens) / len(tokens)
        result[f"mean_steps_{name}"] = sum(len(t.steps) for t in traces) / len(traces)
        result[f"repeated_step_share_{name}"] = sum(
            len(set(t.step_texts)) < len(t.step_texts) for t in traces) / len(traces)
        result[f"no_answer_share_{name}"] = sum(t.final_answer is None for t in traces) / len(traces)
        result[f"clean_solve_{name}"] = (len(correct) - len(flawed)) / len(traces)
    return result


_COMPLETER = []


def _completer():
    """One TransformersCompleter for tiny-gsm (its model is replaced by the policy when evaluating)."""
    if not _COMPLETER:
        from completers.transformers_completer import TransformersCompleter

        _COMPLETER.append(TransformersCompleter("tiny-gsm"))
    return _COMPLETER[0]


# -- the summary ------------------------------------------------------------------------------

METRICS = ("solve_t1", "solve_greedy", "flawed_correct_t1", "flawed_correct_greedy", "clean_solve_t1",
           "mean_tokens_t1", "mean_steps_t1", "repeated_step_share_t1", "no_answer_share_t1")


def _mean_sd(values: list[float]) -> dict:
    return {"mean": statistics.fmean(values), "sd": statistics.stdev(values) if len(values) > 1 else 0.0,
            "values": values}


def summarise(config: BenchConfig, runs: dict, prm_dir: str, quality: dict) -> dict:
    import torch
    import trl

    arms = {}
    for arm in config.arms:
        seeds = [runs[(arm, s)] for s in config.seeds if (arm, s) in runs]
        if not seeds:
            continue
        steps = [p["step"] for p in seeds[0]["curve"]]
        curves = {m: [statistics.fmean(r["curve"][k][m] for r in seeds) for k in range(len(steps))]
                  for m in METRICS}
        spread = {m: [statistics.stdev([r["curve"][k][m] for r in seeds]) if len(seeds) > 1 else 0.0
                      for k in range(len(steps))] for m in METRICS}
        arms[arm] = {
            "seeds": [r["seed"] for r in seeds], "steps": steps, "curves": curves, "curves_sd": spread,
            "before": {m: _mean_sd([r["curve"][0][m] for r in seeds]) for m in METRICS},
            "after": {m: _mean_sd([r["curve"][-1][m] for r in seeds]) for m in METRICS},
            "train_seconds": statistics.fmean(r["train_seconds"] for r in seeds),
            "eval_seconds": statistics.fmean(r["eval_seconds"] for r in seeds),
            "train_reward_first_last": [statistics.fmean(r["train_reward"][0] for r in seeds),
                                        statistics.fmean(r["train_reward"][-1] for r in seeds)],
            # correct T=1 solutions at the last evaluation, pooled over seeds: (with a gold-wrong step, all)
            "flawed_correct_pooled_after": [
                sum(round(r["curve"][-1]["flawed_correct_t1"] * r["curve"][-1]["n_correct_t1"]) for r in seeds),
                sum(r["curve"][-1]["n_correct_t1"] for r in seeds)],
        }
    return {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
            "prm": prm_dir, "prm_quality": quality, "arms": arms, "goal": goal(arms),
            "versions": {"trl": trl.__version__, "torch": torch.__version__}}


def goal(arms: dict) -> dict:
    """The issue's goal: arm 2 reaches arm 1's final T=1 solve rate in <= 70% of the steps, or ends
    >= 3 points higher, and has fewer flawed correct solutions (means over seeds)."""
    if "outcome" not in arms or "outcome+process" not in arms:
        return {}
    base, both = arms["outcome"], arms["outcome+process"]
    target = base["curves"]["solve_t1"][-1]
    reached = next((s for s, v in zip(both["steps"], both["curves"]["solve_t1"]) if s > 0 and v >= target), None)
    total = both["steps"][-1]
    faster = reached is not None and reached <= 0.7 * total
    higher = both["after"]["solve_t1"]["mean"] - base["after"]["solve_t1"]["mean"] >= 0.03
    fewer = both["after"]["flawed_correct_t1"]["mean"] < base["after"]["flawed_correct_t1"]["mean"]
    from scipy.stats import fisher_exact

    (a, n_a), (b, n_b) = base["flawed_correct_pooled_after"], both["flawed_correct_pooled_after"]
    p_value = float(fisher_exact([[a, n_a - a], [b, n_b - b]]).pvalue)
    return {"flawed_correct_fisher_p": p_value, "target_solve_t1": target, "step_reached": reached, "steps": total,
            "within_70pct_steps": faster, "at_least_3_points_higher": higher,
            "fewer_flawed_correct": fewer, "met": (faster or higher) and fewer}


def goals(details: dict) -> list[Goal]:
    """The issue's goal as two lines: arm 2 faster (within 70% of the steps) or higher (3+
    points), and fewer correct answers with a gold-wrong step."""
    if not details:
        return []
    return [Goal("outcome+process reaches outcome's final T=1 solve rate within 70% of the steps, or ends "
                 "3+ points above it", details["within_70pct_steps"] or details["at_least_3_points_higher"],
                 "==", True),
            Goal("outcome+process has fewer correct answers with a gold-wrong step than outcome",
                 details["fewer_flawed_correct"], "==", True)]


def plot(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for arm, data in summary["arms"].items():
        for ax, metric, title in ((axes[0], "solve_t1", "solve rate, T=1"),
                                  (axes[1], "solve_greedy", "solve rate, greedy"),
                                  (axes[2], "flawed_correct_t1", "correct answers with a gold-wrong step (T=1)")):
            mean, sd = data["curves"][metric], data["curves_sd"][metric]
            line, = ax.plot(data["steps"], mean, marker="o", label=arm)
            ax.fill_between(data["steps"], [m - d for m, d in zip(mean, sd)], [m + d for m, d in zip(mean, sd)],
                            color=line.get_color(), alpha=0.12)
            ax.set_title(title)
            ax.set_xlabel("GRPO step")
    axes[0].legend()
    n_seeds = len(next(iter(summary["arms"].values()))["seeds"]) if summary["arms"] else 0
    fig.suptitle(f"GRPO on tiny-gsm, held-out world problems (mean of {n_seeds} seeds, band: ±1 sd)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cell(stats: dict, scale: float = 100.0, digits: int = 1) -> str:
    return f"{stats['mean'] * scale:.{digits}f} ± {stats['sd'] * scale:.{digits}f}"


def table(summary: dict) -> list[str]:
    header = ("| arm | solve T=1 before → after | greedy before → after | flawed correct (T=1) before → after | "
              "tokens before → after | repeated-step solutions after | no answer after | train s |")
    lines = [header, "|---|---|---|---|---|---|---|---|"]
    for arm, d in summary["arms"].items():
        b, a = d["before"], d["after"]
        lines.append(f"| {arm} | {_cell(b['solve_t1'])} → **{_cell(a['solve_t1'])}** | {_cell(b['solve_greedy'])} → "
                     f"{_cell(a['solve_greedy'])} | {_cell(b['flawed_correct_t1'])} → "
                     f"{_cell(a['flawed_correct_t1'])} | {_cell(b['mean_tokens_t1'], 1, 0)} → "
                     f"{_cell(a['mean_tokens_t1'], 1, 0)} | {_cell(a['repeated_step_share_t1'])} | "
                     f"{_cell(a['no_answer_share_t1'])} | {d['train_seconds']:.0f} |")
    return lines


def print_table(summary: dict) -> None:
    print()
    for line in table(summary):
        print(line)
    print("goal details:", json.dumps(summary["goal"]))


if __name__ == "__main__":
    raise SystemExit(main())
