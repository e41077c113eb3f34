"""Per-step credit in RL: five GRPO arms on tiny-gsm, the embedded world, 5 seeds each.

Arms (same seeds, steps and data order; every arm starts from tiny-gsm):

1. outcome: TRL's GRPOTrainer, reward 1 if the final answer is right (`outcome_reward`);
2. outcome+process: today's scalar reward, the outcome plus the demo PRM's min step score
   (`ProcessReward`, one number per completion);
3. process-sum: `ProcessGRPOTrainer`, per-token advantages from the PRM's step scores with
   DeepSeekMath's sum credit, plus the outcome advantage (weight 1);
4. process-min: the same with PURE's min-form credit;
5. prime: `ProcessGRPOTrainer(online_prm=True)`, an implicit PRM initialised from tiny-gsm and
   updated on each batch's outcome labels (PRIME), its token log-ratios the dense rewards.

The PRM (arms 2-4) is one `prm demo` trains, into `--out/demo` (skipped when it exists), or any
folder given with `--prm`. The policy is evaluated every `--eval-every` steps on held-out world
problems (seed 1000003): solve rate at temperature 1 and greedy, correct answers reached through a
gold-wrong step, and the reward-hacking monitors: the PRM's mean min-step score of the samples
beside their gold step accuracy (the share of gold-correct steps), length in tokens and steps,
solutions that repeat a step, solutions without an answer.

Each (arm, seed) run is written to `--runs/ARM-sSEED.json` (default bench/results/rl/) when it
finishes and skipped when that file exists, so the bench resumes; `--commit` also commits each
file as it lands. `--jobs 2` runs two one-thread runs at a time. The summary (curves with 95%
confidence intervals over seeds, Welch t-tests, goals) goes to bench/results/rl.json and the
plot to bench/results/rl.png.

    nice python bench/rl.py --jobs 2 --commit   # 5 arms x 5 seeds (budget: about 90 min on 2 cores)
    python bench/rl.py --quick                  # a smoke run of every arm: 1 seed, 4 steps, tiny PRM
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import (OUT, RESULTS, ROOT, Goal, cached, machine, parser, print_goals,  # noqa: E402
                            quiet_transformers, save_results, use_threads)

ARMS = ("outcome", "outcome+process", "process-sum", "process-min", "prime")
PROCESS_ARMS = ARMS[1:]
HELD_OUT_SEED = 1000003


@dataclass
class BenchConfig:
    out: str = str(OUT / "rl")
    runs: str = str(RESULTS / "rl")
    results: str = str(RESULTS / "rl.json")
    plot: str = str(RESULTS / "rl.png")
    prm: str | None = None
    arms: tuple[str, ...] = ARMS
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)
    steps: int = 80
    prompts_per_step: int = 2
    generations: int = 4
    max_completion_length: int = 128
    learning_rate: float = 5e-4
    beta: float = 0.0
    online_prm_learning_rate: float = 1e-4
    online_prm_beta: float = 0.05
    train_problems: int = 1000
    train_seed: int = 7
    eval_problems: int = 40
    eval_samples: int = 2
    eval_every: int = 16
    threads: int = 1
    jobs: int = 1
    commit: bool = False
    quick: bool = False


def main(argv: list[str] | None = None) -> int:
    defaults = BenchConfig()
    args = parser(__doc__, "rl", threads=defaults.threads, quick="a smoke run: every arm, 1 seed, 4 steps, tiny PRM")
    for name in ("steps", "eval_every", "eval_problems", "eval_samples", "train_problems",
                 "prompts_per_step", "generations", "max_completion_length", "jobs"):
        args.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    for name in ("learning_rate", "beta", "online_prm_learning_rate", "online_prm_beta"):
        args.add_argument(f"--{name.replace('_', '-')}", type=float, default=getattr(defaults, name))
    args.add_argument("--seeds", type=int, nargs="+", default=list(defaults.seeds))
    args.add_argument("--arms", nargs="+", choices=ARMS, default=list(ARMS))
    args.add_argument("--prm", default=None, help="a trained PRM folder (default: train the demo's)")
    args.add_argument("--runs", default=None, help="folder of the per-(arm, seed) results (default bench/results/rl)")
    args.add_argument("--plot", default=None)
    args.add_argument("--commit", action="store_true", help="git-commit each (arm, seed) result as it finishes")
    args = args.parse_args(argv)  # --seed is not used: --seeds are the runs' seeds
    config = BenchConfig(out=str(args.out), results=str(args.results), prm=args.prm, arms=tuple(args.arms),
                         seeds=tuple(args.seeds), steps=args.steps, prompts_per_step=args.prompts_per_step,
                         generations=args.generations, max_completion_length=args.max_completion_length,
                         learning_rate=args.learning_rate, beta=args.beta,
                         online_prm_learning_rate=args.online_prm_learning_rate,
                         online_prm_beta=args.online_prm_beta, train_problems=args.train_problems,
                         eval_problems=args.eval_problems, eval_samples=args.eval_samples,
                         eval_every=args.eval_every, threads=args.threads, jobs=args.jobs, commit=args.commit,
                         quick=args.quick)
    if args.quick:  # a smoke run writes nothing under bench/results unless told to
        config.steps, config.seeds, config.eval_every, config.max_completion_length = 4, (0,), 2, 64
        config.eval_problems, config.eval_samples = 8, 2
        config.runs, config.plot = str(Path(config.out) / "quick" / "runs"), str(Path(config.out) / "quick" / "rl.png")
        if args.results == RESULTS / "rl.json":
            config.results = str(Path(config.out) / "quick" / "rl.json")
    config.runs = args.runs or config.runs
    config.plot = args.plot or config.plot
    run_bench(config)
    return 0


def run_bench(config: BenchConfig) -> dict:
    use_threads(config.threads)
    quiet_transformers()
    machine_record = machine(config.threads)
    prm_dir = train_prm(config, Path(config.out))
    todo = [(arm, seed) for seed in config.seeds for arm in config.arms]
    paths = {key: Path(config.runs) / f"{key[0]}-s{key[1]}.json" for key in todo}
    missing = [key for key in todo if not paths[key].exists()]  # an interrupted bench resumes
    if config.jobs > 1 and len(missing) > 1:
        with ProcessPoolExecutor(config.jobs, mp_context=get_context("spawn")) as pool:
            for key in pool.map(_run_one, [(config, arm, seed, prm_dir) for arm, seed in missing]):
                _committed(config, paths[key])
    else:
        for arm, seed in missing:
            _run_one((config, arm, seed, prm_dir))
            _committed(config, paths[(arm, seed)])
    runs = {key: json.loads(paths[key].read_text()) for key in todo}
    summary = summarise(config, runs, prm_dir, prm_quality(prm_dir))
    plot(summary, config.plot)
    print_table(summary)
    print_goals(goal_list := goals(summary))
    return save_results(config.results, summary, machine_record, goal_list)


def _run_one(job) -> tuple[str, int]:
    config, arm, seed, prm_dir = job
    use_threads(config.threads)
    quiet_transformers()

    def run():
        print(f"\n== {arm}, seed {seed}", flush=True)
        return run_arm(config, arm, seed, prm_dir)

    cached(Path(config.runs) / f"{arm}-s{seed}.json", run)
    return arm, seed


def _committed(config: BenchConfig, path: Path) -> None:
    """With --commit, commit one finished run's file (and nothing else) on the current branch."""
    if config.commit:
        subprocess.run(["git", "-C", str(ROOT), "add", str(path)], check=True)
        subprocess.run(["git", "-C", str(ROOT), "commit", "-q", "-m", f"bench/rl: {path.stem}", "--", str(path)],
                       check=True)


# -- the PRM ----------------------------------------------------------------------------------

def train_prm(config: BenchConfig, out: Path) -> str:
    """The demo's PRM: `--prm`, or trained by `prm demo` (default settings; a tiny one with
    --quick) into OUT/demo."""
    if config.prm:
        return config.prm
    from prm.app.demo import DemoConfig, run_demo

    demo = out / ("demo-quick" if config.quick else "demo")
    if not (demo / "summary.json").exists():
        print("== training the demo's PRM (prm demo)", flush=True)
        small = dict(train_problems=16, val_problems=8, test_problems=8, train_samples=2, eval_samples=2, mc_n=2,
                     binary_traces=2, epochs=2.0, implicit=False) if config.quick else {}
        run_demo(DemoConfig(out=str(demo), threads=config.threads, **small))
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

class TimedReward:
    """A TRL reward function that counts the seconds spent in it (the PRM's share of a step)."""

    def __init__(self, reward):
        self.reward, self.seconds, self.__name__ = reward, 0.0, reward.__name__

    def __call__(self, *args, **kwargs):
        started = time.perf_counter()
        try:
            return self.reward(*args, **kwargs)
        finally:
            self.seconds += time.perf_counter() - started


def run_arm(config: BenchConfig, arm: str, seed: int, prm_dir: str) -> dict:
    import torch
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from completers.text import plain_prompt
    from completers.world import generate_problems
    from prm.model_names import resolve_model
    from prm.reward.loading import load_scorer
    from prm.rl import ProcessGRPOConfig, ProcessGRPOTrainer
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
    scorer = load_scorer(prm_dir, device="cpu")  # also the hacking monitor's PRM score in every arm
    if arm == "outcome+process":
        reward = TimedReward(ProcessReward(scorer, aggregation="min", outcome_weight=1.0, name="reward"))
    else:
        reward = TimedReward(outcome_reward(name="reward"))

    curve = []

    def evaluate_now(step: int) -> None:
        started = time.perf_counter()
        point = {"step": step, **evaluate(model, held_out, config, scorer)}
        point["seconds"] = round(time.perf_counter() - started, 1)
        curve.append(point)
        print(f"  {arm} s{seed} step {step:4d}: solve T=1 {point['solve_t1']:.1%}  greedy {point['solve_greedy']:.1%}"
              f"  flawed correct {point['flawed_correct_t1']:.1%}  PRM {point['prm_score_t1']:.3f}  gold step acc "
              f"{point['gold_step_accuracy_t1']:.1%}  tokens {point['mean_tokens_t1']:.0f}  repeats "
              f"{point['repeated_step_share_t1']:.1%}  ({point['seconds']} s)", flush=True)

    class EvalCallback(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step % config.eval_every == 0 or state.global_step == config.steps:
                evaluate_now(state.global_step)

    common = dict(
        output_dir=str(Path(config.out) / "trainer" / f"{arm}-s{seed}"), max_steps=config.steps,
        per_device_train_batch_size=config.prompts_per_step * config.generations,
        num_generations=config.generations, max_completion_length=config.max_completion_length,
        learning_rate=config.learning_rate, beta=config.beta, temperature=1.0, top_k=0, top_p=1.0,
        logging_steps=1, report_to=[], save_strategy="no", use_cpu=True, seed=seed, data_seed=seed,
        disable_tqdm=True, lr_scheduler_type="constant")
    trainer_kwargs = dict(model=model, reward_funcs=reward, train_dataset=data, processing_class=tokenizer,
                          callbacks=[EvalCallback()])
    if arm in ("outcome", "outcome+process"):
        trainer = GRPOTrainer(args=GRPOConfig(**common), **trainer_kwargs)
    else:
        online = arm == "prime"
        args = ProcessGRPOConfig(**common, credit="min" if arm == "process-min" else "sum", outcome_weight=1.0,
                                 online_prm=online, online_prm_learning_rate=config.online_prm_learning_rate,
                                 online_prm_beta=config.online_prm_beta)
        trainer = ProcessGRPOTrainer(args=args, scorer=None if online else scorer, **trainer_kwargs)
    evaluate_now(0)
    started = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - started
    reward.reward.close()
    logs = [h for h in trainer.state.log_history if "reward" in h]
    step_seconds = sum(h.get("step_time", 0.0) for h in logs)
    prm_seconds = (reward.seconds if arm == "outcome+process"
                   else sum(h.get("process/prm_seconds", 0.0) for h in logs))
    return {"arm": arm, "seed": seed, "curve": curve, "train_seconds": round(seconds, 1),
            "eval_seconds": round(sum(p["seconds"] for p in curve), 1),
            "step_seconds": round(step_seconds, 2), "prm_seconds": round(prm_seconds, 2),
            "prm_share": prm_seconds / step_seconds if step_seconds and arm != "outcome" else None,
            "train_reward": [round(h["reward"], 4) for h in logs],
            "train_length": [round(h.get("completions/mean_length", 0.0), 2) for h in logs]}


def evaluate(model, problems, config: BenchConfig, scorer=None) -> dict:
    """Solve rates, flawed correct solutions and hacking signs on held-out problems (with
    `scorer`, also the PRM's mean min-step score of the T=1 samples).

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
        labels = [s.hard_label for t in traces for s in t.steps]
        result[f"gold_step_accuracy_{name}"] = sum(label == 1 for label in labels) / len(labels) if labels else 0.0
    if scorer is not None:  # the PRM's view of the same samples, for the hacking monitor
        samples = [(p.question, t.step_texts) for p, outputs in zip(problems, sampled) for t in
                   [trace_from_sample(p, c.text, "x") for c in outputs]]
        minimums = [min([v for v in row if v is not None] or [0.0])
                    for row in scorer.score_many([s for s in samples if s[1]])]
        result["prm_score_t1"] = sum(minimums) / len(minimums) if minimums else 0.0
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
           "mean_tokens_t1", "mean_steps_t1", "repeated_step_share_t1", "no_answer_share_t1",
           "gold_step_accuracy_t1", "prm_score_t1")
# a hacking signature, from the first to the last evaluation (means over seeds)
PRM_UP, GOLD_DOWN, LENGTH_DRIFT, REPEATS_UP = 0.02, 0.02, 0.25, 0.05


def _stats(values: list[float]) -> dict:
    """Mean, sd and the 95% confidence interval of the mean over seeds (Student's t)."""
    from scipy.stats import t

    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    half = float(t.ppf(0.975, len(values) - 1)) * sd / len(values) ** 0.5 if len(values) > 1 else 0.0
    return {"mean": mean, "sd": sd, "ci95": [mean - half, mean + half], "values": values}


def summarise(config: BenchConfig, runs: dict, prm_dir: str, quality: dict) -> dict:
    import torch
    import trl

    arms = {}
    for arm in config.arms:
        seeds = [runs[(arm, s)] for s in config.seeds if (arm, s) in runs]
        steps = [p["step"] for p in seeds[0]["curve"]]
        at = {m: [_stats([r["curve"][k].get(m, 0.0) for r in seeds]) for k in range(len(steps))] for m in METRICS}
        before, after = {m: at[m][0] for m in METRICS}, {m: at[m][-1] for m in METRICS}
        shares = [r["prm_share"] for r in seeds if r.get("prm_share") is not None]
        arms[arm] = {
            "seeds": [r["seed"] for r in seeds], "steps": steps,
            "curves": {m: [x["mean"] for x in at[m]] for m in METRICS},
            "curves_ci95": {m: [x["ci95"] for x in at[m]] for m in METRICS},
            "before": before, "after": after,
            "train_seconds": statistics.fmean(r["train_seconds"] for r in seeds),
            "eval_seconds": statistics.fmean(r["eval_seconds"] for r in seeds),
            "prm_share": statistics.fmean(shares) if shares else None,
            "plateau_step": plateau(steps, [x["mean"] for x in at["solve_t1"]]),
            # correct T=1 solutions at the last evaluation, pooled over seeds: (with a gold-wrong step, all)
            "flawed_correct_pooled_after": [
                sum(round(r["curve"][-1]["flawed_correct_t1"] * r["curve"][-1]["n_correct_t1"]) for r in seeds),
                sum(r["curve"][-1]["n_correct_t1"] for r in seeds)],
            "hacking": hacking(before, after),
        }
    return {"config": {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(config).items()},
            "prm": prm_dir, "prm_quality": quality, "arms": arms, "goal": goal(arms),
            "versions": {"trl": trl.__version__, "torch": torch.__version__}}


def plateau(steps: list[int], solve: list[float], within: float = 0.01) -> int | None:
    """The first evaluated step from which the solve rate stays within `within` of its final value."""
    for k in range(len(steps)):
        if all(abs(v - solve[-1]) <= within for v in solve[k:]):
            return steps[k]
    return None


def hacking(before: dict, after: dict) -> dict:
    """The reward-hacking monitors from the first to the last evaluation (means over seeds)."""
    change = {m: after[m]["mean"] - before[m]["mean"] for m in METRICS}
    tokens = before["mean_tokens_t1"]["mean"]
    signs = {"prm_up_gold_down": change["prm_score_t1"] > PRM_UP and change["gold_step_accuracy_t1"] < -GOLD_DOWN,
             "length_drift": tokens > 0 and abs(change["mean_tokens_t1"]) / tokens > LENGTH_DRIFT,
             "repeated_steps": change["repeated_step_share_t1"] > REPEATS_UP}
    return {"change": change, "signs": signs, "any": any(signs.values())}


def goal(arms: dict) -> dict:
    """The issue's goals, comparing each process arm with outcome-only at the last evaluation."""
    if "outcome" not in arms:
        return {}
    from scipy.stats import fisher_exact, ttest_ind

    base = arms["outcome"]
    target = base["curves"]["solve_t1"][-1]
    (a, n_a) = base["flawed_correct_pooled_after"]
    details = {"target_solve_t1": target, "steps": base["steps"][-1], "arms": {}}
    for arm in [a for a in PROCESS_ARMS if a in arms]:
        data = arms[arm]
        gain = data["after"]["solve_t1"]["mean"] - base["after"]["solve_t1"]["mean"]
        values, base_values = data["after"]["solve_t1"]["values"], base["after"]["solve_t1"]["values"]
        p_value = (float(ttest_ind(values, base_values, equal_var=False).pvalue)
                   if len(values) > 1 and len(base_values) > 1 else None)
        reached = next((s for s, v in zip(data["steps"], data["curves"]["solve_t1"]) if s > 0 and v >= target), None)
        b, n_b = data["flawed_correct_pooled_after"]
        details["arms"][arm] = {
            "gain_points": 100 * gain, "welch_p": p_value, "step_reached": reached,
            "higher": gain >= 0.03 and p_value is not None and p_value < 0.05,
            # outcome-only must have improved for "reaching its final solve rate sooner" to mean anything
            "faster": (reached is not None and reached <= 0.7 * data["steps"][-1]
                       and target > base["before"]["solve_t1"]["mean"]),
            "flawed_correct": [b, n_b], "flawed_correct_outcome": [a, n_a],
            "fewer_flawed_correct": data["after"]["flawed_correct_t1"]["mean"] < base["after"]["flawed_correct_t1"]["mean"],
            "flawed_correct_fisher_p": float(fisher_exact([[a, n_a - a], [b, n_b - b]]).pvalue) if n_a and n_b else None,
            "hacking": data["hacking"]["any"], "prm_share": data["prm_share"]}
    return details


def goals(summary: dict) -> list[Goal]:
    """The issue's four goals as goal lines (the best process arm by its final solve rate)."""
    details = summary["goal"]
    if not details or not details["arms"]:
        return []
    arms = details["arms"]
    best = max(arms, key=lambda arm: arms[arm]["gain_points"])
    winners = [arm for arm in arms if arms[arm]["higher"] or arms[arm]["faster"]]
    gaining = [arm for arm in arms if arms[arm]["gain_points"] > 0]
    shares = [arms[arm]["prm_share"] for arm in arms if arms[arm]["prm_share"] is not None]
    b = arms[best]
    return [
        Goal("some process arm ends 3+ points above outcome-only (Welch p < 0.05 over seeds) or reaches its final "
             f"solve rate within 70% of the steps (best: {best}, {b['gain_points']:+.1f} points, p = "
             f"{b['welch_p'] if b['welch_p'] is None else round(b['welch_p'], 3)})", bool(winners), "==", True),
        Goal(f"{best} has fewer correct answers through a gold-wrong step than outcome-only "
             f"({b['flawed_correct'][0]}/{b['flawed_correct'][1]} vs {b['flawed_correct_outcome'][0]}/"
             f"{b['flawed_correct_outcome'][1]} pooled)", b["fewer_flawed_correct"], "==", True),
        Goal("no hacking signature in an arm that gains (PRM score up with gold step accuracy down, length "
             "drift, repeated steps)", not any(arms[arm]["hacking"] for arm in gaining), "==", True),
        Goal("PRM overhead, largest share of a step's wall time over the PRM arms", 100 * max(shares or [0.0]),
             "<=", 30.0, "%"),
    ]


def plot(summary: dict, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = (("solve_t1", "solve rate, T=1"), ("flawed_correct_t1", "correct answers with a gold-wrong step (T=1)"),
              ("prm_score_t1", "PRM min-step score of samples"), ("gold_step_accuracy_t1", "gold step accuracy"))
    fig, axes = plt.subplots(1, len(panels), figsize=(18, 4))
    for arm, data in summary["arms"].items():
        for ax, (metric, title) in zip(axes, panels):
            mean, band = data["curves"][metric], data["curves_ci95"][metric]
            line, = ax.plot(data["steps"], mean, marker="o", label=arm)
            ax.fill_between(data["steps"], [lo for lo, _ in band], [hi for _, hi in band], color=line.get_color(),
                            alpha=0.12)
            ax.set_title(title)
            ax.set_xlabel("GRPO step")
    axes[0].legend()
    n_seeds = len(next(iter(summary["arms"].values()))["seeds"]) if summary["arms"] else 0
    fig.suptitle(f"GRPO on tiny-gsm, held-out world problems (mean of {n_seeds} seeds, band: 95% CI)")
    fig.tight_layout()
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _cell(stats: dict, scale: float = 100.0, digits: int = 1) -> str:
    low, high = stats["ci95"]
    return f"{stats['mean'] * scale:.{digits}f} [{low * scale:.{digits}f}, {high * scale:.{digits}f}]"


def table(summary: dict) -> list[str]:
    lines = ["| arm | solve T=1 after [95% CI] | greedy after | flawed correct T=1 after | PRM score Δ | "
             "gold step acc Δ | tokens Δ | repeated-step Δ | hacking | PRM share of step | plateau step | train s |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for arm, d in summary["arms"].items():
        a, change = d["after"], d["hacking"]["change"]
        share = "-" if d["prm_share"] is None else f"{100 * d['prm_share']:.0f}%"
        signs = ", ".join(k for k, v in d["hacking"]["signs"].items() if v) or "none"
        lines.append(f"| {arm} | {_cell(a['solve_t1'])} | {_cell(a['solve_greedy'])} | "
                     f"{_cell(a['flawed_correct_t1'])} | {change['prm_score_t1']:+.3f} | "
                     f"{100 * change['gold_step_accuracy_t1']:+.1f} | {change['mean_tokens_t1']:+.0f} | "
                     f"{100 * change['repeated_step_share_t1']:+.1f} | {signs} | {share} | {d['plateau_step']} | "
                     f"{d['train_seconds']:.0f} |")
    return lines


def print_table(summary: dict) -> None:
    print()
    for line in table(summary):
        print(line)
    print("goal details:", json.dumps(summary["goal"]))


if __name__ == "__main__":
    raise SystemExit(main())
