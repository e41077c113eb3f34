"""Test-time search on the embedded world: step-level beam search and DVTS against best-of-N,
majority vote and the ORM at equal compute, and the levers that make the PRM worth following.

    prm demo --out demo_out                                   # once (about 5 minutes)
    python bench/search.py --demo demo_out                    # about 15 minutes on 2 busy cores
    python bench/search.py --demo demo_out --seeds 0 --quick  # a smaller check

One run, one completer (tiny-gsm), the demo's held-out test problems (same world split),
the demo's reward models and variants trained the demo's way. Stages, each cached under
--out so that a re-run resumes:

1. Labels and reward models. Hard-label agreement with gold on the demo's training traces
   for each Monte Carlo rule (a step is good when at least m of N=8 continuations succeed,
   `AnnotateConfig.min_successes`, relabelled from the stored rollouts: no new sampling),
   with the sympy override and after the consensus filter. PRM variants trained with the
   demo's recipe (`prm.app.demo.train`): + the answer line as a step
   (`prm.search.answer_line.with_answer_steps`), + consensus-filtered traces.
2. Per seed: 16 solutions sampled per problem (best-of-N, weighted vote, majority, ORM and
   oracle pass@N for N = 1..16 are read off the first N samples: sample j is the same for
   every N); 1x = the mean tokens of these samples. Beam search and DVTS at budgets of
   1, 2, 4, 8, 16 solutions' tokens (never exceeded per problem); beam search with a
   one-step lookahead at 8x and 16x.
3. Ablation (seed 0, 8x): beam search and PRM best-of-8 with each scorer variant.
4. Throughput, measured side by side without caches: beam search vs plain best-of-N
   sampling at 8x, generated tokens per second (completer time and wall time), and beam
   search with every prefix re-scored whole (the scorer wrapped so that it has only
   `score_many`) to show what scoring from the parents' KV caches saves: the scorer's
   computed tokens against the unique tokens of the prefixes scored (`Compute`); and beam
   search with the completer's prompt cache off (every prefix re-read at every depth). The
   arms run in turn `--repeats` times (3) and each keeps its fastest run, so that a run
   disturbed by other jobs does not decide the ratio.

    python bench/search.py --throughput-only                  # stage 4 alone, no demo needed
    python bench/search.py --adaptive-only --quick            # stage 5 alone, no demo needed

5. Adaptive compute (`prm search --method adaptive`): the scorer calibrated (isotonic, on
   gold-labelled tiny-gsm samples of other world problems, or the demo's validation traces),
   best-of-8 sampled in rounds of 2 that stop once a solution's calibrated score reaches the
   target, against plain best-of-8 with the raw scorer: tokens saved at equal solve rate (goal:
   at least 30% fewer tokens within 0.5 points). `--adaptive-only` runs it on `--problems` world
   problems with the demo's PRM + sympy when `--demo` holds one, else the sympy checker as the
   scorer.

`--throughput-only` runs stage 4 alone on `--problems` world problems with tiny-gsm and the
demo's PRM when `--demo` holds one, else a reward model on the tiny-gsm backbone with an
untrained head (throughput does not depend on the head's weights).

The curves reuse completions and scores across budgets (`Cached*` below: the same prompt
and seed give the same samples, the same prefix the same scores), which changes wall time
only; every token and scorer item is still counted as the search asked for it.
Prints the goal figures; writes bench/results/search.json and docs/images/search_curve.png.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the project root, for bench._harness
from bench._harness import (ROOT, Goal, Stopwatch, cached, machine, parser, print_goals,  # noqa: E402
                            quiet_transformers, save_results, use_threads)

FIGURE = ROOT / "docs" / "images" / "search_curve.png"
BUDGETS = (1, 2, 4, 8, 16)

from completers.base import Completer  # noqa: E402
from prm.reward.scorer import StepScorer  # noqa: E402


class CachedCompleter(Completer):
    """Completions by (prompt, seed, n) from a deterministic completer, computed once."""

    def __init__(self, inner: Completer):
        self.inner, self.cache = inner, {}
        self.name, self.step_delimiter = inner.name, inner.step_delimiter
        self.use_chat_template, self.tokenizer = inner.use_chat_template, inner.tokenizer
        self.build_prompt = inner.build_prompt

    def complete_prompts(self, prompts, params, *, stop=None, seeds=None, ns=None):
        from completers.base import per_prompt

        pairs = per_prompt(params, len(prompts), seeds, ns)
        keys = [(prompt, seed, n, params.max_new_tokens, params.temperature, tuple(stop or ()))
                for prompt, (seed, n) in zip(prompts, pairs)]
        missing = [i for i, key in enumerate(keys) if key not in self.cache]
        if missing:
            done = self.inner.complete_prompts([prompts[i] for i in missing], params, stop=stop,
                                               seeds=[pairs[i][0] for i in missing], ns=[pairs[i][1] for i in missing])
            for i, completions in zip(missing, done):
                self.cache[keys[i]] = completions
        return [list(self.cache[key]) for key in keys]


class CachedScorer(StepScorer):
    """Step scores by (problem, steps), computed once."""

    def __init__(self, inner: StepScorer):
        self.inner, self.cache = inner, {}
        self.aggregation = inner.aggregation

    def score_many(self, items, batch_size=None, progress=False):
        keys = [(problem, tuple(steps)) for problem, steps in items]
        missing = list(dict.fromkeys(key for key in keys if key not in self.cache))
        if missing:
            for key, scores in zip(missing, self.inner.score_many([(p, list(s)) for p, s in missing], batch_size)):
                self.cache[key] = scores
        return [list(self.cache[key]) for key in keys]


class WholePrefixScorer(StepScorer):
    """A scorer with only `score_many`: search then re-scores every prefix from its first token
    (what it did before `StepScorer.score_prefixes`), for the side-by-side throughput."""

    def __init__(self, inner: StepScorer):
        self.inner, self.aggregation = inner, inner.aggregation

    def score_many(self, items, batch_size=None, progress=False):
        return self.inner.score_many(items, batch_size)


class GoldScorer(StepScorer):
    """The world's exact labels as a step scorer: 1 for a correct step until the first error,
    and the answer line 1 exactly when the steps are correct and the answer is right. Search
    guided by it shows what search can do with a perfect verifier (the ceiling for any PRM)."""

    def __init__(self, traces):
        from completers.world import WorldProblem

        self.world = {t.problem.strip(): WorldProblem(
            id=t.meta["problem_id"], template=t.meta["template"], question=t.problem, steps=[],
            answer=int(t.reference_answer), needed_values=t.meta["needed_values"],
            given_values=t.meta["given_values"]) for t in traces}

    def score_many(self, items, batch_size=None, progress=False):
        from completers.world import gold_labels, parse_answer

        out = []
        for question, steps in items:
            problem = self.world[question.strip()]
            body = [s for s in steps if not s.startswith("####")]
            scores = [float(label) for label in gold_labels(problem, body)]
            if len(body) < len(steps):  # the answer line, scored last
                scores.append(float(all(scores) and parse_answer(steps[-1][4:]) == problem.answer))
            out.append(scores)
        return out


# -- stage 1: labels and reward models -------------------------------------------------------

def label_agreement(demo: Path) -> dict:
    """Hard-label agreement with gold per Monte Carlo rule, on the demo's training traces."""
    import copy

    from annotate.checkers.combine import consensus_filter
    from prm.io import read_traces

    checked = read_traces(demo / "labels_checked.jsonl")
    binary = read_traces(demo / "labels_binary.jsonl")

    def agreement(traces, label) -> dict:
        pairs = [(label(step), gold) for trace in traces for step, gold in zip(trace.steps, trace.meta["gold_labels"])]
        pairs = [(a, b) for a, b in pairs if a is not None]
        return {"agreement": sum(a == b for a, b in pairs) / max(1, len(pairs)), "steps": len(pairs),
                "traces": len(traces)}

    def refuted(step) -> bool:
        return any(v.status == "refuted" for v in step.verdicts)

    rules = {}
    for m in (1, 2, 3, 4):
        rules[f"Monte Carlo, good if >= {m} of 8 succeed"] = agreement(
            checked, lambda s, m=m: None if s.rollouts is None else int(s.rollouts.correct >= m))
        rules[f"Monte Carlo >= {m} of 8 + sympy override"] = agreement(
            checked, lambda s, m=m: None if s.rollouts is None else 0 if refuted(s) else int(s.rollouts.correct >= m))
    kept, _ = consensus_filter(copy.deepcopy(checked), ["sympy"])
    rules["Monte Carlo >= 1 of 8 + sympy, consensus-filtered traces"] = agreement(kept, lambda s: s.hard_label)
    rules["binary search (OmegaPRM-style)"] = agreement(binary, lambda s: s.hard_label)
    return rules


def reward_models(demo: Path, work: Path) -> dict[str, Path]:
    """The demo's PRM and ORM, and PRM variants trained the demo's way (cached)."""
    import copy

    from annotate.checkers.combine import consensus_filter
    from prm.app.demo import DemoConfig, train
    from prm.io import read_traces
    from prm.search.answer_line import with_answer_steps

    summary = demo / "summary.json"
    config = DemoConfig(**json.loads(summary.read_text())["config"]) if summary.exists() else DemoConfig()
    config.threads = 1
    checked = read_traces(demo / "labels_checked.jsonl")
    kept, _ = consensus_filter(copy.deepcopy(checked), ["sympy"])
    models = {"demo PRM": demo / "prm", "ORM": demo / "orm"}
    variants = {"PRM + answer step": with_answer_steps(checked),
                "PRM + answer step, consensus-filtered": with_answer_steps(kept)}
    for name, traces in variants.items():
        folder = work / "models" / name.replace(" ", "_").replace(",", "").replace("+", "plus")
        if not (folder / "config.json").exists():
            print(f"training {name} on {len(traces)} traces -> {folder}", flush=True)
        models[name] = train(config, traces, [], folder, head="prm")
    return models


# -- stage 2: searches ---------------------------------------------------------------------------

def cached_run(path: Path, run):
    """(result traces, run compute dict) from `path` (JSONL + .compute.json), or run and store them."""
    from prm.io import read_traces, write_traces

    def compute() -> dict:
        result = run()
        write_traces(path, result.traces)  # before the .compute.json that marks the run done
        return {**result.compute.to_dict(), "tokens_per_solution": result.config.tokens_per_solution}

    record = cached(path.with_suffix(".compute.json"), compute)
    return read_traces(path), record


def sampled_methods(traces, orm_scores: dict) -> dict:
    """Solve rate and mean tokens per problem of each reranking method at N = 1, 2, 4, 8, 16, from
    the first N of each problem's 16 samples."""
    from prm.search.choose import Candidate, choose

    out = {}
    for n in BUDGETS:
        solved = {"majority": [], "PRM best-of-N": [], "PRM weighted vote": [], "ORM best-of-N": [], "oracle": []}
        tokens = []
        for trace in traces:
            first = trace.meta["search"]["candidates"][:n]
            cands = [Candidate([], c["answer"], score=c["score"], order=(j,), correct=c["correct"])
                     for j, c in enumerate(first)]
            orm = [Candidate([], c["answer"], score=s, order=(j,), correct=c["correct"])
                   for j, (c, s) in enumerate(zip(first, orm_scores[trace.id][:n]))]
            solved["majority"].append(bool(choose(cands, "majority").correct))
            solved["PRM best-of-N"].append(bool(choose(cands, "best").correct))
            solved["PRM weighted vote"].append(bool(choose(cands, "vote").correct))
            solved["ORM best-of-N"].append(bool(choose(orm, "best").correct))
            solved["oracle"].append(any(c["correct"] for c in first))
            tokens.append(sum(c["tokens"] for c in first))
        for name, values in solved.items():
            out.setdefault(name, []).append({"budget": n, "solve_rate": sum(values) / len(values),
                                             "tokens": sum(tokens) / len(tokens)})
    return out


def orm_scores_of(traces, orm) -> dict[str, list[float]]:
    """The ORM's score of each sampled solution (its last step), per result trace."""
    items, owners = [], []
    for trace in traces:
        for sample in trace.meta["search"]["tree"]:
            items.append((trace.problem, sample["steps"] or ["(empty)"]))
            owners.append(trace.id)
    out: dict[str, list[float]] = {}
    for owner, scores in zip(owners, orm.score_many(items)):
        out.setdefault(owner, []).append(orm.solution_score(scores) or 0.0)
    return out


def search_seed(seed: int, problems, completer, scorer, orm, work: Path, label: str, budgets,
                lookahead: bool = False) -> dict:
    """Every method of one seed with one scorer: reranking curves and beam/DVTS curves (and
    beam search with a one-step lookahead at 8x and 16x)."""
    from prm.search import SearchConfig, search

    base = {"step_tokens": 40, "solution_tokens": 320, "seed": seed, "score_answer": True}
    folder = work / "runs" / label.replace(" ", "_").replace(",", "").replace("+", "plus") / f"seed{seed}"
    samples, compute = cached_run(folder / "samples16.jsonl", lambda: search(
        problems, completer, scorer, config=SearchConfig(strategy="best-of-n", budget="16x", keep_tree=True, **base)))
    per_solution = compute["generated_tokens"] / (16 * len(problems))
    methods = sampled_methods(samples, orm_scores_of(samples, orm))
    plan = [("beam", n, 0) for n in budgets] + [("dvts", n, 0) for n in budgets]
    plan += [("beam", n, 1) for n in budgets if lookahead and n >= 8]
    for strategy, n, ahead in plan:
        settings = SearchConfig(strategy=strategy, budget=f"{n}x", tokens_per_solution=per_solution,
                                lookahead=ahead, **base)
        name = f"{strategy}, lookahead {ahead}" if ahead else strategy
        file = f"{strategy}{n}_lookahead{ahead}.jsonl" if ahead else f"{strategy}{n}.jsonl"
        traces, _ = cached_run(folder / file,
                               lambda settings=settings: search(problems, completer, scorer, config=settings))
        spent = [t.meta["search"]["compute"]["generated_tokens"] for t in traces]
        assert all(s <= t.meta["search"]["budget_tokens"] for s, t in zip(spent, traces)), "budget exceeded"
        methods.setdefault(name, []).append({
            "budget": n, "solve_rate": sum(t.outcome_label for t in traces) / len(traces),
            "tokens": sum(spent) / len(spent), "unfinished": sum(t.final_answer is None for t in traces),
            "max_tokens_over_budget": max(s / t.meta["search"]["budget_tokens"] for s, t in zip(spent, traces))})
    return {"tokens_per_solution": per_solution, "methods": methods}


def throughput(problems, completer, scorer, per_solution: float, repeats: int = 3) -> dict:
    """Beam search vs plain best-of-N sampling at 8x, side by side, no caches: generated tokens
    per second in the completer, and overall (scoring and bookkeeping included). The arms run
    in turn `repeats` times and each keeps its fastest run: on a shared machine, the run that
    other jobs disturbed least (the tokens are the same every time: same seeds)."""
    from prm.search import SearchConfig, search

    out = {}
    beam = SearchConfig(strategy="beam", budget="8x", seed=99, step_tokens=40, tokens_per_solution=per_solution)
    kept = getattr(completer, "prompt_cache", None)  # the completer's encoded prompts, kept between calls
    arms = (("best-of-N sampling", SearchConfig(strategy="best-of-n", budget="8x", seed=99), scorer),
            ("beam search", beam, scorer),
            ("beam search, prefixes re-scored whole", beam, WholePrefixScorer(scorer)),
            ("beam search, completer re-reading prefixes", beam, scorer))
    for name, config, used in [arm for _ in range(max(1, repeats)) for arm in arms]:
        if kept is not None:  # every run starts from an empty cache; the last one keeps none
            kept.clear()
            completer.prompt_cache = None if name.endswith("re-reading prefixes") else kept
        run = search(problems, completer, used, config=config)
        c = run.compute
        if name in out and out[name]["seconds"] <= c.seconds:
            continue
        out[name] = {"generated_tokens": c.generated_tokens, "completer_calls": c.completer_calls,
                     "completer_seconds": round(c.completer_seconds, 2), "seconds": round(c.seconds, 2),
                     "scorer_seconds": round(c.scorer_seconds, 2),
                     "completer_tokens_per_second": c.generated_tokens / c.completer_seconds,
                     "tokens_per_second": c.tokens_per_second, "scored_items": c.scored_items,
                     "scorer_tokens": c.scorer_tokens, "scorer_computed_tokens": c.scorer_computed_tokens,
                     "scorer_new_tokens": c.scorer_new_tokens}
        if name.endswith("whole"):  # counted by hand: the wrapper reports no tokens
            out[name]["scorer_computed_tokens"] = out["beam search"]["scorer_tokens"]
    if kept is not None:
        completer.prompt_cache = kept
    beam, plain, whole = out["beam search"], out["best-of-N sampling"], out["beam search, prefixes re-scored whole"]
    out["ratio_completer"] = beam["completer_tokens_per_second"] / plain["completer_tokens_per_second"]
    out["ratio_overall"] = beam["tokens_per_second"] / plain["tokens_per_second"]
    out["ratio_overall_whole_prefixes"] = whole["tokens_per_second"] / plain["tokens_per_second"]
    out["ratio_overall_completer_rereading"] = (out["beam search, completer re-reading prefixes"]["tokens_per_second"]
                                                / plain["tokens_per_second"])
    out["scorer_computed_per_new_token"] = beam["scorer_computed_tokens"] / max(1, beam["scorer_new_tokens"])
    out["scorer_computed_per_new_token_whole"] = beam["scorer_tokens"] / max(1, beam["scorer_new_tokens"])
    return out


def print_throughput(speed: dict) -> None:
    for name in ("best-of-N sampling", "beam search", "beam search, prefixes re-scored whole",
                 "beam search, completer re-reading prefixes"):
        row = speed[name]
        print(f"  {name:<40} {row['tokens_per_second']:6.1f} tok/s overall, {row['completer_tokens_per_second']:6.1f} "
              f"in the completer; scorer {row['scorer_seconds']:.1f} s, {row['scorer_computed_tokens']} tokens run "
              f"for {row['scored_items']} prefixes")
    print(f"  beam / best-of-N tokens/s: {speed['ratio_overall']:.2f} (prefixes re-scored whole: "
          f"{speed['ratio_overall_whole_prefixes']:.2f}; completer re-reading prefixes: "
          f"{speed['ratio_overall_completer_rereading']:.2f}); completer only {speed['ratio_completer']:.2f}")
    print(f"  scorer tokens run per unique prefix token: {speed['scorer_computed_per_new_token']:.2f} ("
          f"re-scored whole: {speed['scorer_computed_per_new_token_whole']:.2f})")


def throughput_goals(speed: dict) -> list[Goal]:
    return [Goal("beam / best-of-N tokens/s at 8x", round(speed["ratio_overall"], 3), ">=", 1.0, "x"),
            Goal("scorer tokens run per unique prefix token", round(speed["scorer_computed_per_new_token"], 3),
                 "<=", 1.2)]


def throughput_only(args) -> int:
    """Stage 4 alone: no demo folder needed (see the module docstring)."""
    import torch

    from completers.text import PLAIN_TEMPLATE
    from completers.transformers_completer import TransformersCompleter
    from completers.world import generate_problems
    from prm.reward.model import RewardModel, RewardModelOptions
    from prm.search import Problem, SearchConfig, search

    machine_record = machine(args.threads)
    demo_prm = Path(args.demo) / "prm"
    if (demo_prm / "config.json").exists():
        scorer, which = RewardModel.from_pretrained(str(demo_prm)), f"the demo PRM ({demo_prm})"
    else:
        torch.manual_seed(0)
        scorer = RewardModel.from_backbone("tiny-gsm", RewardModelOptions(prompt_template=PLAIN_TEMPLATE)).eval()
        which = "a reward model on the tiny-gsm backbone (untrained head)"
    problems = [Problem(p.id, p.question, str(p.answer)) for p in generate_problems(args.problems, seed=7)]
    completer = TransformersCompleter("tiny-gsm")
    calibration = search(problems, completer, scorer, config=SearchConfig(strategy="best-of-n", budget="1x", seed=98))
    per_solution = calibration.compute.generated_tokens / len(problems)
    with Stopwatch() as watch:
        speed = throughput(problems, completer, scorer, per_solution, args.repeats)
    print(f"{len(problems)} world problems, tiny-gsm, scorer: {which}, 1x = {per_solution:.1f} tokens; "
          f"each arm's fastest of {args.repeats} runs")
    print_throughput(speed)
    print_goals(goal_list := throughput_goals(speed))
    save_results(args.results.with_name("search_throughput.json"),
                 {"problems": len(problems), "scorer": which, "tokens_per_solution": per_solution,
                  "throughput": speed, "repeats": args.repeats, "seconds": round(watch.seconds, 1),
                  "command": "python bench/search.py " + " ".join(sys.argv[1:])}, machine_record, goal_list)
    return 0


# -- stage 5: adaptive compute -------------------------------------------------------------------

def calibrated(scorer: StepScorer, traces, method: str = "isotonic"):
    """`scorer` wrapped in a calibration fitted on the gold step labels of `traces` (what
    `prm calibrate` saves), and the number of steps it was fitted on."""
    from evals.gold import gold_step_labels
    from prm.reward.calibration import CalibratedScorer, fit_calibrator

    raw, labels = [], []
    for trace, row in zip(traces, scorer.score_many([(t.problem, t.step_texts) for t in traces])):
        for score, label in zip(row, gold_step_labels(trace)):
            if score is not None and label is not None:
                raw.append(score)
                labels.append(label)
    return CalibratedScorer(scorer, fit_calibrator(raw, labels, method)), len(raw)


def adaptive_stage(problems, completer, scorer: StepScorer, calibration_traces, seeds, target: float) -> dict:
    """Best-of-8 (raw scores) against adaptive best-of-8 (calibrated, rounds of 2, stop at
    `target`), per seed: solve rate and generated tokens per problem."""
    from prm.search import SearchConfig, search

    calibrated_scorer, steps = calibrated(scorer, calibration_traces)
    rows = {}
    for seed in seeds:
        row = {}
        for name, config, used in (
                ("best-of-8", SearchConfig(strategy="best-of-n", budget="8x", seed=seed, score_answer=False), scorer),
                ("adaptive", SearchConfig(strategy="adaptive", budget="8x", seed=seed, score_answer=False,
                                          target=target, round_size=2), calibrated_scorer)):
            run = search(problems, completer, used, config=config)
            row[name] = {"solve_rate": sum(t.outcome_label for t in run.traces) / len(run.traces),
                         "tokens": run.compute.generated_tokens / len(run.traces),
                         "completions": run.compute.completions / len(run.traces)}
        rows[seed] = row
        print(f"seed {seed}: " + "; ".join(f"{k} {100 * v['solve_rate']:.1f}% at {v['tokens']:.0f} tokens"
                                           for k, v in row.items()), flush=True)
    mean = {name: {key: sum(rows[s][name][key] for s in seeds) / len(seeds) for key in ("solve_rate", "tokens",
                                                                                        "completions")}
            for name in ("best-of-8", "adaptive")}
    saved = 1 - mean["adaptive"]["tokens"] / mean["best-of-8"]["tokens"]
    return {"per_seed": rows, "mean": mean, "tokens_saved": saved, "target": target, "calibration_steps": steps,
            "solve_rate_change_points": 100 * (mean["adaptive"]["solve_rate"] - mean["best-of-8"]["solve_rate"])}


def adaptive_goals(result: dict) -> list[Goal]:
    return [Goal("adaptive tokens saved vs best-of-8", round(100 * result["tokens_saved"], 1), ">=", 30, "%"),
            Goal("adaptive solve rate minus best-of-8", round(result["solve_rate_change_points"], 1), ">=", -0.5,
                 "points")]


def adaptive_only(args) -> int:
    """Stage 5 alone: no demo folder needed (see the module docstring)."""
    from annotate.checkers.scorer import CheckerAwareScorer, CheckerScorer
    from completers.transformers_completer import TransformersCompleter
    from completers.world import generate_problems, sample_traces
    from prm.io import read_traces
    from prm.reward.model import RewardModel
    from prm.search import Problem

    machine_record = machine(args.threads)
    demo = Path(args.demo)
    completer = TransformersCompleter("tiny-gsm")
    if (demo / "prm" / "config.json").exists():
        scorer = CheckerAwareScorer(RewardModel.from_pretrained(str(demo / "prm")), ["sympy"])
        which = f"the demo PRM + sympy ({demo / 'prm'})"
    else:
        scorer, which = CheckerScorer(["sympy"]), "the sympy checker (no demo PRM)"
    if (demo / "traces_val.jsonl").exists():
        calibration_traces, where = read_traces(demo / "traces_val.jsonl"), f"{demo / 'traces_val.jsonl'}"
    else:
        calibration_traces = sample_traces(completer, generate_problems(24 if args.quick else 96, seed=11), 4)
        where = "tiny-gsm samples of other world problems (seed 11), gold-labelled"
    count = args.problems if args.problems != 24 else (40 if args.quick else 200)
    problems = [Problem(p.id, p.question, str(p.answer)) for p in generate_problems(count, seed=7)]
    seeds = args.seeds[:1] if args.quick else args.seeds
    with Stopwatch() as watch:
        result = adaptive_stage(problems, completer, scorer, calibration_traces, seeds, args.target)
    print(f"{len(problems)} world problems, tiny-gsm, scorer: {which}, calibrated (isotonic) on "
          f"{result['calibration_steps']} steps of {where}; seeds {seeds}; target {args.target}")
    for name, row in result["mean"].items():
        print(f"  {name:<10} solve rate {100 * row['solve_rate']:.1f}%, {row['tokens']:.0f} tokens and "
              f"{row['completions']:.2f} solutions per problem")
    print_goals(goal_list := adaptive_goals(result))
    save_results(args.results.with_name("search_adaptive.json"),
                 {"problems": len(problems), "scorer": which, "calibrated_on": where, "seeds": seeds,
                  "adaptive": result, "seconds": round(watch.seconds, 1),
                  "command": "python bench/search.py " + " ".join(sys.argv[1:])}, machine_record, goal_list)
    return 0


# -- reporting -----------------------------------------------------------------------------------

def summarise(seeds: dict[int, dict]) -> dict:
    """Mean, min and max over seeds of every (method, budget) point."""
    table: dict[str, list[dict]] = {}
    first = next(iter(seeds.values()))
    for name, points in first["methods"].items():
        for index, point in enumerate(points):
            rates = [s["methods"][name][index]["solve_rate"] for s in seeds.values()]
            tokens = [s["methods"][name][index]["tokens"] for s in seeds.values()]
            table.setdefault(name, []).append({"budget": point["budget"], "solve_rate": sum(rates) / len(rates),
                                               "min": min(rates), "max": max(rates),
                                               "tokens": sum(tokens) / len(tokens)})
    return table


def at(table: dict, name: str, budget: int) -> float:
    return next(p["solve_rate"] for p in table[name] if p["budget"] == budget)


def figure(table: dict, problems: int, seeds: list[int], path: Path, scorer: str) -> None:
    from matplotlib.figure import Figure

    styles = {"oracle": ("0.55", "--"), "majority": ("black", "-"), "ORM best-of-N": ("tab:purple", "-."),
              "PRM best-of-N": ("tab:blue", "-"), "PRM weighted vote": ("tab:blue", ":"),
              "beam": ("tab:red", "-"), "dvts": ("tab:green", "-"), "beam, lookahead 1": ("tab:red", ":")}
    fig = Figure(figsize=(8, 5))
    ax = fig.add_subplot()
    for name, points in table.items():
        colour, style = styles.get(name, (None, "-"))
        x = [p["tokens"] for p in points]
        y = [100 * p["solve_rate"] for p in points]
        err = [[100 * (p["solve_rate"] - p["min"]) for p in points], [100 * (p["max"] - p["solve_rate"]) for p in points]]
        label = {"beam": "beam search (PRM)", "dvts": "DVTS (PRM)", "oracle": "oracle (pass@N)",
                 "beam, lookahead 1": "beam search, 1-step lookahead",
                 "majority": "majority vote"}.get(name, name)
        ax.errorbar(x, y, yerr=err, color=colour, ls=style, marker="o", ms=4, capsize=2, label=label)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("generated tokens per problem (log scale; 1, 2, 4, 8, 16 solutions' worth)")
    ax.set_ylabel("solve rate (% of problems)")
    ax.set_title(f"tiny-gsm on {problems} held-out world problems, mean of {len(seeds)} seeds (bars: min-max)\n"
                 f"PRM = {scorer}", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")


def arguments(argv):
    args = parser(__doc__, "search", quick="budgets 1, 4, 8 and no throughput run")
    args.add_argument("--demo", default="demo_out", help="a `prm demo` output folder")
    args.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    args.add_argument("--scorer", default="demo PRM + sympy", help="the scorer variant of the curves and goals")
    args.add_argument("--figure", type=Path, default=FIGURE)
    args.add_argument("--throughput-only", action="store_true",
                      help="only stage 4 (beam vs best-of-N tokens/s, scorer tokens), no demo folder needed")
    args.add_argument("--problems", type=int, default=24, help="world problems of --throughput-only")
    args.add_argument("--repeats", type=int, default=3,
                      help="stage 4: runs of each arm (in turn); each keeps its fastest")
    args.add_argument("--adaptive-only", action="store_true",
                      help="only stage 5 (adaptive best-of-8 against best-of-8), no demo folder needed")
    args.add_argument("--target", type=float, default=0.8,
                      help="stage 5: the calibrated score that stops a problem (0.9 is above every calibrated "
                           "solution score of the sympy checker, so it never stops early)")
    return args.parse_args(argv)


def scorers_of(demo: Path, work: Path) -> tuple[dict, StepScorer]:
    """Every scorer variant (cached scores; the PRMs also with the sympy fusion; the world's gold
    labels), and the ORM."""
    from annotate.checkers.scorer import CheckerAwareScorer
    from prm.io import read_traces
    from prm.reward.model import RewardModel

    loaded = {name: RewardModel.from_pretrained(str(path)) for name, path in reward_models(demo, work).items()}
    orm = CachedScorer(loaded.pop("ORM"))
    scorers = {}
    for name, model in loaded.items():
        scorers[name] = CachedScorer(model)
        scorers[name + " + sympy"] = CachedScorer(CheckerAwareScorer(model, ["sympy"]))
    scorers["gold step labels (a perfect verifier)"] = GoldScorer(read_traces(demo / "traces_test.jsonl"))
    return scorers, orm


def ablation(seed: int, problems, completer, scorers: dict, orm, work: Path) -> dict:
    """Seed 0, 8x, every scorer variant; the demo PRM also without the answer line scored."""
    from prm.search import SearchConfig, search

    out = {}
    for name, scorer in scorers.items():
        result = search_seed(seed, problems, completer, scorer, orm, work, name, (8,))
        row = {"PRM best-of-8": at(result["methods"], "PRM best-of-N", 8), "beam 8x": at(result["methods"], "beam", 8),
               "dvts 8x": at(result["methods"], "dvts", 8)}
        if name.startswith("demo PRM"):  # the answer line not scored: the demo's old behaviour
            folder = work / "runs" / "unscored_answer" / name.replace(" ", "_").replace("+", "plus")
            settings = SearchConfig(strategy="beam", budget="8x", tokens_per_solution=result["tokens_per_solution"],
                                    step_tokens=40, seed=seed, score_answer=False)
            traces, _ = cached_run(folder / "beam8.jsonl", lambda scorer=scorer, settings=settings: search(
                problems, completer, scorer, config=settings))
            row["beam 8x, answer line not scored"] = sum(t.outcome_label for t in traces) / len(traces)
        out[name] = row
        print(f"ablation {name}: " + ", ".join(f"{k} {100 * v:.1f}%" for k, v in row.items()), flush=True)
    return out


def figures_and_goals(table: dict) -> tuple[dict, list[Goal]]:
    """The solve rates at 8x and the issue's goals, in points."""
    figures = {"beam 8x": at(table, "beam", 8), "dvts 8x": at(table, "dvts", 8),
               "majority 8": at(table, "majority", 8), "PRM best-of-8": at(table, "PRM best-of-N", 8),
               "ORM best-of-8": at(table, "ORM best-of-N", 8), "oracle pass@8": at(table, "oracle", 8)}
    figures["beam / oracle pass@8"] = figures["beam 8x"] / figures["oracle pass@8"]

    def above(a, b, target):
        return Goal(f"{a} above {b}", round(100 * (figures[a] - figures[b]), 1), ">=", target, "points")

    return figures, [above("beam 8x", "majority 8", 10), above("beam 8x", "PRM best-of-8", 5),
                     above("PRM best-of-8", "majority 8", 5), above("PRM best-of-8", "ORM best-of-8", 5)]


def print_report(figures: dict, table: dict, speed: dict | None, labels: dict) -> None:
    for name, value in figures.items():
        print(f"  {name}: {value:.3f}" if "/" in name else f"  {name}: {100 * value:.1f}%")
    print("\nsolve rate (mean over seeds) / tokens per problem, by budget (solutions' worth):")
    for name, points in table.items():
        print(f"  {name:<18} " + "  ".join(f"{p['budget']:>2}x {100 * p['solve_rate']:5.1f}% "
                                          f"[{100 * p['min']:.0f}-{100 * p['max']:.0f}] {p['tokens']:5.0f}t"
                                          for p in points))
    if speed:
        print("\nthroughput at 8x (no caches):")
        print_throughput(speed)
    print("\nlabel agreement with gold (demo training traces):")
    for name, row in labels.items():
        print(f"  {name}: {100 * row['agreement']:.1f}% of {row['steps']} steps")


def main(argv=None) -> int:
    args = arguments(argv)
    use_threads(args.threads)
    quiet_transformers()
    if args.throughput_only:
        return throughput_only(args)
    if args.adaptive_only:
        return adaptive_only(args)
    from completers.transformers_completer import TransformersCompleter
    from prm.io import read_traces
    from prm.search import problems_from_traces

    machine_record = machine(args.threads)
    demo, work = Path(args.demo), args.out
    budgets = (1, 4, 8) if args.quick else BUDGETS
    with Stopwatch() as watch:
        labels = label_agreement(demo)
        scorers, orm = scorers_of(demo, work)
        problems = problems_from_traces(read_traces(demo / "traces_test.jsonl"))
        raw_completer = TransformersCompleter("tiny-gsm")
        completer = CachedCompleter(raw_completer)
        per_scorer = ablation(args.seeds[0], problems, completer, scorers, orm, work)
        per_seed = {}
        for seed in args.seeds:
            per_seed[seed] = search_seed(seed, problems, completer, scorers[args.scorer], orm, work, args.scorer,
                                         budgets, lookahead=True)
            print(f"seed {seed} done", flush=True)
        table = summarise(per_seed)
        speed = None if args.quick else throughput(problems, raw_completer, scorers[args.scorer].inner,
                                                   per_seed[args.seeds[0]]["tokens_per_solution"], args.repeats)
        adaptive = adaptive_stage(problems, completer, scorers[args.scorer], read_traces(demo / "traces_val.jsonl"),
                                  args.seeds, args.target)
    figures, goal_list = figures_and_goals(table)
    print(f"\n{len(problems)} test problems, seeds {args.seeds}, scorer: {args.scorer}")
    print_report(figures, table, speed, labels)
    figure(table, len(problems), args.seeds, args.figure,
           args.scorer + (" (sympy-refuted steps score 0)" if "sympy" in args.scorer else ""))
    print(f"figure: {args.figure}")
    goal_list += throughput_goals(speed) if speed else []
    goal_list += adaptive_goals(adaptive)
    print_goals(goal_list)
    save_results(args.results, {
        "problems": len(problems), "seeds": args.seeds, "scorer": args.scorer, "budgets": list(budgets),
        "step_tokens": 40, "figures": figures, "curves": table, "per_seed": per_seed, "ablation_seed": args.seeds[0],
        "ablation": per_scorer, "label_agreement": labels, "throughput": speed, "adaptive": adaptive,
        "seconds": round(watch.seconds, 1),
        "note": "curves reuse completions/scores across budgets (wall time only); throughput is uncached"},
        machine_record, goal_list)
    return 0


if __name__ == "__main__":
    sys.exit(main())
