"""Per-step Monte Carlo vs binary search for the first error, on the embedded world.

    python bench/annotate.py                      # tiny-gsm, about 5 minutes on 2 CPU cores
    python bench/annotate.py --problems 20 --quick
    python bench/annotate.py --threads 2          # what a second torch thread costs (default: 1, as
                                                  # `prm annotate` and `prm demo` label)

Same traces, same completer, same seeds for every method:

1. Traces are sampled from the completer (tiny-gsm) on world problems, so every step has a
   gold label (`completers.world`). Flawed samples are kept as they come; if the model
   makes too few mistakes, correct samples get one calculator result changed
   (`prm.formats.gsm8k.inject_calculator_error`, gold labels adjusted) until half of the
   traces are flawed. Shopping problems are over-sampled so that there are traces of 6+ steps.
2. Each method labels the same traces: per-step Monte Carlo (Math-Shepherd), binary search
   with its defaults (a trace whose final answer is right is labelled positive without
   rollouts) and binary search that searches every trace (`skip_correct=False`).
3. Printed and written to bench/results/annotate.json: rollouts, tokens and wall time of
   each method and their ratios to Monte Carlo; label quality against gold
   (`evals.label_quality`: hard-label agreement, soft-label calibration ECE/Brier, first-error
   accuracy, rollouts per trace); how often binary search finds the same first error as
   Monte Carlo; all of it also on the traces of 6+ steps; and the first-error agreement matrix
   of Monte Carlo, binary search, the sympy checker, an LLM judge (`--judge MODEL_OR_URL`) and
   gold (`prm.agreement`: how much `prm consensus` would keep for each pair).
"""

from __future__ import annotations

import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import Goal, Stopwatch, machine, parser, print_goals, save_results, use_threads  # noqa: E402


def build_traces(completer, problems: int, samples: int, seed: int, max_new_tokens: int, flawed_share: float):
    """World traces sampled from the completer, with gold labels, about `flawed_share` flawed."""
    from completers.base import SamplingParams
    from completers.world import generate_problems, sample_traces
    from prm.formats.gsm8k import inject_calculator_error

    world = generate_problems(problems, seed=seed) + \
        generate_problems(max(2, problems // 2), seed=seed + 1, templates=["shopping"])
    # the solutions themselves are the model's own samples (temperature 1); the annotation
    # temperature is a separate setting (--temperature, default AnnotateConfig's)
    params = SamplingParams(n=samples, temperature=1.0, max_new_tokens=max_new_tokens, seed=seed)
    sampled = sample_traces(completer, world, samples, params)
    unique, seen = [], set()
    for trace in sampled:  # identical samples of one problem would count twice
        key = (trace.problem, tuple(trace.step_texts))
        if key not in seen:
            seen.add(key)
            trace.meta["origin"] = "sampled"
            unique.append(trace)
    flawed = [t for t in unique if t.meta["gold_first_error"] >= 0]
    correct = [t for t in unique if t.meta["gold_first_error"] < 0]
    rng = random.Random(seed)
    wanted_flawed = round(flawed_share * len(unique))
    rng.shuffle(correct)
    injected = []
    while len(flawed) + len(injected) < wanted_flawed and correct:
        broken = inject_calculator_error(correct.pop(), rng)
        if broken is not None:
            broken.id += "-err"
            broken.final_answer = None  # the sampled answer no longer follows from the steps
            broken.meta["origin"] = "injected error"
            injected.append(broken)
    traces = correct + flawed + injected
    for trace in traces:  # start unlabelled: annotation must not see the gold step labels
        for step in trace.steps:
            step.hard_label = step.soft_label = step.label_source = None
    traces.sort(key=lambda t: t.id)
    return traces


def run_method(name: str, traces, completer, config) -> dict:
    """Label `traces` the way `prm annotate` does (`annotate.runner.label_traces`: with the
    transformers completer, many traces at once with their completer calls merged)."""
    from annotate.grading import Grader
    from annotate.runner import label_traces

    grader = Grader(timeout_seconds=config.grading_timeout)
    with Stopwatch() as watch:
        by_id = {t.id: t for t in label_traces(traces, completer, config, grader, completer_spec="bench")}
    grader.close()
    print(f"  {name}: {watch.seconds:.1f} s", file=sys.stderr)
    return {"traces": [by_id[t.id] for t in traces], "seconds": watch.seconds, "cpu_seconds": watch.cpu_seconds}


def sampler_speed(traces, completer, config) -> dict:
    """The sampler alone on the work Monte Carlo gives it: `n` samples of every step prefix of
    the traces in one `complete_prompts` call (what bench/completers.py times as the
    shared-prefix sampler), with the annotation's sampling settings."""
    from completers.base import SamplingParams

    prompts = [completer.prompt_for(t.problem, t.step_texts[:i + 1]) for t in traces for i in range(len(t.steps))]
    params = SamplingParams(n=config.n, temperature=config.temperature, top_p=config.top_p,
                            max_new_tokens=config.max_new_tokens, seed=config.seed)
    with Stopwatch() as watch:
        tokens = sum(c.tokens for completions in completer.complete_prompts(prompts, params) for c in completions)
    print(f"  sampler alone: {watch.seconds:.1f} s", file=sys.stderr)
    return {"prompts": len(prompts), "tokens": tokens, "seconds": round(watch.seconds, 2),
            "cpu_seconds": round(watch.cpu_seconds, 2), "tokens_per_second": round(tokens / watch.seconds, 1),
            "tokens_per_cpu_second": round(tokens / watch.cpu_seconds, 1)}


def cost(traces, seconds=None) -> dict:
    result = {"traces": len(traces),
              "rollouts": sum(t.meta["annotation"]["rollouts"] for t in traces),
              "tokens": sum(t.meta["annotation"]["tokens"] for t in traces)}
    result["rollouts_per_trace"] = result["rollouts"] / len(traces) if traces else None
    if seconds is not None:
        result["seconds"] = round(seconds, 2)
    return result


def quality(traces) -> dict:
    from evals.label_quality import label_quality

    q = label_quality(traces)
    soft = q["soft"] or {}
    return {"hard_agreement": q["agreement"], "kappa": q["kappa"], "bad_recall": q["bad_recall"],
            "bad_precision": q["bad_precision"], "compared_steps": q["compared_steps"], "steps": q["steps"],
            "soft_steps": soft.get("steps", 0), "soft_ece": soft.get("ece"), "soft_brier": soft.get("brier"),
            "first_error_accuracy": q["first_error"]["accuracy"],
            "first_error_accuracy_flawed": q["first_error"]["error_accuracy"],
            "first_error_accuracy_correct": q["first_error"]["correct_accuracy"]}


def same_first_error(a, b) -> float | None:
    pairs = [(x.first_error(), y.first_error()) for x, y in zip(a, b)]
    return sum(x == y for x, y in pairs) / len(pairs) if pairs else None


def agreement(traces, runs) -> dict:
    """First-error agreement matrix (`prm.agreement`) of Monte Carlo, binary search, the sympy
    checker (its refuted steps), the judge when there is one, and gold."""
    import copy

    from annotate.checkers import get_checker
    from annotate.checkers.combine import add_verdicts
    from prm.agreement import agreement_matrix, first_errors

    checked = add_verdicts(copy.deepcopy(traces), get_checker("sympy"))
    sources = {"Monte Carlo": first_errors(runs["monte-carlo"]["traces"], "labels"),
               "binary search": first_errors(runs["binary-search"]["traces"], "labels"),
               "sympy": first_errors(checked, "checker:sympy")}
    if "judge" in runs:
        sources["judge"] = first_errors(runs["judge"]["traces"], "labels")
    sources["gold"] = first_errors(traces, "gold")
    return agreement_matrix(sources)


def ratio(part, whole):
    return round(part / whole, 4) if whole else None


def arguments(argv):
    args = parser(__doc__, "annotate", threads=1, quick="a smoke run: n=4, no search-everything run")
    args.add_argument("--completer", default="tiny-gsm")
    args.add_argument("--problems", type=int, default=40, help="world problems (+ half as many shopping ones)")
    args.add_argument("--samples", type=int, default=2, help="solutions sampled per problem")
    args.add_argument("--n", type=int, default=8, help="completions per step (mc) / per probe (binary)")
    args.add_argument("--temperature", type=float, default=None, help="default: AnnotateConfig's")
    args.add_argument("--max-new-tokens", type=int, default=320)
    args.add_argument("--flawed-share", type=float, default=0.5)
    args.add_argument("--judge", metavar="MODEL_OR_URL", help="also label with this LLM judge (prm annotate "
                      "--method judge) and put it in the agreement matrix")
    args.add_argument("--judge-samples", type=int, default=1, help="critiques per trace")
    return args.parse_args(argv)


def label_all(args, traces, completer) -> tuple[dict, dict]:
    """Every method's labels of the same traces: ({name: AnnotateConfig}, {name: run})."""
    from annotate.config import AnnotateConfig, JudgeConfig
    from completers.loading import load_completer

    options = {} if args.temperature is None else {"temperature": args.temperature}
    base = dict(n=4 if args.quick else args.n, max_new_tokens=args.max_new_tokens, seed=args.seed, **options)
    methods = {"monte-carlo": AnnotateConfig(method="mc", **base),
               "binary-search": AnnotateConfig(method="binary", **base)}
    if not args.quick:
        methods["binary-search (search all)"] = AnnotateConfig(method="binary", skip_correct=False, **base)
    runs = {"sampler": sampler_speed(traces, completer, methods["monte-carlo"])}  # side by side with Monte Carlo
    runs.update((name, run_method(name, traces, completer, config)) for name, config in methods.items())
    completer.close()
    if args.judge:
        judge = load_completer(args.judge)
        config = AnnotateConfig(method="judge", seed=args.seed, judge=JudgeConfig(samples=args.judge_samples))
        runs["judge"] = run_method("judge", traces, judge, config)
        judge.close()
    return methods, runs


def compare(runs: dict, long_ids: set) -> dict:
    """Cost and label quality of every method, on all traces and on those of 6+ steps, and its
    ratios to Monte Carlo."""
    mc = runs["monte-carlo"]["traces"]
    mc_long = [t for t in mc if t.id in long_ids]
    out = {}
    for name, run in runs.items():
        if name == "sampler":
            continue
        labelled = run["traces"]
        long = [t for t in labelled if t.id in long_ids]
        entry = {"all": {**cost(labelled, run["seconds"]), **quality(labelled)},
                 "six_plus_steps": {**cost(long), **quality(long)}}
        if name != "monte-carlo":
            mc_cost, mc_long_cost = cost(mc, runs["monte-carlo"]["seconds"]), cost(mc_long)
            entry["vs_monte_carlo"] = {
                "same_first_error": same_first_error(labelled, mc),
                "same_first_error_six_plus": same_first_error(long, mc_long),
                "rollout_ratio": ratio(entry["all"]["rollouts"], mc_cost["rollouts"]),
                "rollout_ratio_six_plus": ratio(entry["six_plus_steps"]["rollouts"], mc_long_cost["rollouts"]),
                "token_ratio": ratio(entry["all"]["tokens"], mc_cost["tokens"]),
                "wall_time_ratio": ratio(run["seconds"], runs["monte-carlo"]["seconds"])}
        out[name] = entry
    sampler, mc_run, tokens = runs["sampler"], runs["monte-carlo"], out["monte-carlo"]["all"]["tokens"]
    speed = {"tokens_per_second": round(tokens / mc_run["seconds"], 1),
             "tokens_per_cpu_second": round(tokens / mc_run["cpu_seconds"], 1), "sampler": sampler}
    speed["share_of_sampler"] = ratio(speed["tokens_per_second"], sampler["tokens_per_second"])
    speed["share_of_sampler_cpu"] = ratio(speed["tokens_per_cpu_second"], sampler["tokens_per_cpu_second"])
    out["monte-carlo"]["speed"] = speed
    return out


def goals(methods: dict) -> list[Goal]:
    """Issue 30's goals: Monte Carlo's rollout tokens/s against the sampler alone's; binary
    search's on the traces of 6+ steps."""
    speed = [Goal("Monte Carlo rollout tokens/s / the sampler alone's", methods["monte-carlo"]["speed"]
                  ["share_of_sampler"], ">=", 0.8, "x")]
    versus = methods["binary-search"]["vs_monte_carlo"]
    if versus["rollout_ratio_six_plus"] is None:
        return speed
    return speed + [Goal("binary search rollouts / Monte Carlo's (6+ steps)", versus["rollout_ratio_six_plus"], "<=",
                 round(1 / 3, 3)),
            Goal("binary search: same first error as Monte Carlo (6+ steps)",
                 round(100 * versus["same_first_error_six_plus"], 1), ">=", 95, "%")]


def main(argv=None) -> int:
    args = arguments(argv)
    use_threads(args.threads)
    from completers.loading import load_completer

    machine_record = machine(args.threads)
    completer = load_completer(args.completer)
    with Stopwatch() as sampling:
        traces = build_traces(completer, args.problems, args.samples, args.seed, args.max_new_tokens,
                              args.flawed_share)
    long_ids = {t.id for t in traces if len(t.steps) >= 6}
    print(f"{len(traces)} traces ({sum(t.meta['gold_first_error'] >= 0 for t in traces)} flawed, "
          f"{sum(t.meta['origin'] == 'injected error' for t in traces)} of them by an injected error; "
          f"{len(long_ids)} of 6+ steps), sampled in {sampling.seconds:.0f} s", file=sys.stderr)
    configs, runs = label_all(args, traces, completer)
    report = {"command": "python bench/annotate.py " + " ".join(argv if argv is not None else sys.argv[1:]),
              "completer": args.completer, "settings": configs["monte-carlo"].settings() | {"method": None},
              "traces": {"total": len(traces), "flawed": sum(t.meta["gold_first_error"] >= 0 for t in traces),
                         "injected_errors": sum(t.meta["origin"] == "injected error" for t in traces),
                         "six_plus_steps": len(long_ids), "steps": sum(len(t.steps) for t in traces)},
              "methods": compare(runs, long_ids), "agreement": agreement(traces, runs)}
    print(markdown(report))
    print_goals(goal_list := goals(report["methods"]))
    save_results(args.results, report, machine_record, goal_list)
    return 0


def _fmt(value, digits=3):
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def markdown(report: dict) -> str:
    """The results as the tables of bench/README.md."""
    from prm.markdown import table_lines

    lines = table_lines(
        ["method", "rollouts", "rollouts/trace", "tokens", "wall s", "hard agreement", "soft ECE",
         "soft Brier", "first-error acc.", "rollouts/trace (6+)", "hard agr. (6+)"],
        [[name, a["rollouts"], _fmt(a["rollouts_per_trace"], 1), a["tokens"], _fmt(a["seconds"], 1),
          _fmt(a["hard_agreement"]), _fmt(a["soft_ece"]), _fmt(a["soft_brier"]),
          _fmt(a["first_error_accuracy"]), _fmt(s["rollouts_per_trace"], 1), _fmt(s["hard_agreement"])]
         for name, entry in report["methods"].items()
         for a, s in [(entry["all"], entry["six_plus_steps"])]])
    lines += [""] + table_lines(
        ["binary search vs Monte Carlo", "same first error", "same (6+)", "rollouts", "rollouts (6+)",
         "tokens", "wall time"],
        [[name, _fmt(v["same_first_error"]), _fmt(v["same_first_error_six_plus"]), _fmt(v["rollout_ratio"]),
          _fmt(v["rollout_ratio_six_plus"]), _fmt(v["token_ratio"]), _fmt(v["wall_time_ratio"])]
         for name, entry in report["methods"].items() if (v := entry.get("vs_monte_carlo"))])
    if report.get("agreement"):
        from prm.agreement import agreement_lines

        lines += ["", "First-error agreement (same first wrong step / traces both can tell):", "",
                  *agreement_lines(report["agreement"])]
    speed = report["methods"]["monte-carlo"]["speed"]
    lines.append(f"\nMonte Carlo: {speed['tokens_per_second']:.0f} rollout tokens/s; the sampler alone on the same "
                 f"{speed['sampler']['prompts']} step prefixes: {speed['sampler']['tokens_per_second']:.0f} tokens/s "
                 f"({speed['share_of_sampler']:.2f}x; by CPU seconds {speed['share_of_sampler_cpu']:.2f}x)")
    t = report["traces"]
    lines.append(f"\n{t['total']} traces ({t['flawed']} flawed, {t['injected_errors']} by an injected error; "
                 f"{t['six_plus_steps']} of 6+ steps; {t['steps']} steps), completer {report['completer']}, "
                 f"n={report['settings']['n']}, temperature {report['settings']['temperature']}, "
                 f"seed {report['settings']['seed']}")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
