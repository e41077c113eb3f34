"""`prm search PROBLEMS OUT`: solve problems with test-time search guided by a step scorer.

Examples:

    prm search demo_out/traces_test.jsonl beam.jsonl --scorer demo_out/prm --strategy beam --budget 8x
    prm search test.jsonl dvts.jsonl --scorer demo_out/prm+checker:sympy --strategy dvts --budget 16x
    prm search test.jsonl bon.jsonl --scorer demo_out/prm --strategy best-of-n --budget 8x
    prm search gsm8k/test.jsonl part0.jsonl --completer http://127.0.0.1:8000/v1 --scorer checker:sympy \\
        --budget 4000 --shard 0/4
    prm eval beam.jsonl bon.jsonl --out report/     # solve rate against tokens, per method

PROBLEMS is any format `prm.formats.read` knows (traces of the same problem count once).
OUT gets one result trace per problem, appended as each chunk of problems finishes;
interrupt it at any time and the same command resumes (a different setting is refused).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from prm.aggregate import AGGREGATIONS
from prm.app.arguments import count, non_negative_float, positive_float, positive_int, probability, shard
from prm.search.config import STRATEGIES, SearchConfig

DEFAULTS = SearchConfig()


def _budget(text: str) -> str:
    from prm.search.compute import BudgetSpec

    try:
        return str(BudgetSpec.parse(text))
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = __doc__.split("Examples:", 1)[1]
    parser.add_argument("problems", metavar="PROBLEMS", help="problems (and reference answers, if any) in any "
                        "format prm.formats reads")
    parser.add_argument("output", metavar="OUT", help="one result trace per problem, JSONL")
    parser.add_argument("--completer", default="tiny-gsm",
                        help="tiny-gsm | a model folder | http://host:port/v1 (default: %(default)s)")
    parser.add_argument("--scorer", default=None,
                        help="MODEL | MODEL+checker:sympy | checker:sympy (not needed for majority)")
    parser.add_argument("--strategy", "--method", choices=STRATEGIES, default=DEFAULTS.strategy,
                        help="(default: %(default)s); adaptive: best-of-N in rounds, a problem stops once its best "
                             "solution score reaches --target (calibrate the scorer with prm calibrate)")
    parser.add_argument("--budget", type=_budget, default=DEFAULTS.budget,
                        help="per problem: generated tokens (1200) or full solutions' worth (8x) (default: %(default)s)")
    parser.add_argument("--tokens-per-solution", type=positive_float, default=None, metavar="T",
                        help="what 1x is in tokens (default: measured on one sample of 16 problems)")
    parser.add_argument("--width", type=positive_int, default=None,
                        help="prefixes kept (beam) or subtrees (dvts) (default: N // expand)")
    parser.add_argument("--expand", type=positive_int, default=DEFAULTS.expand,
                        help="candidate next steps per kept prefix (default: %(default)s)")
    parser.add_argument("--aggregation", choices=AGGREGATIONS, default=DEFAULTS.aggregation,
                        help="step scores -> solution score (default: %(default)s)")
    parser.add_argument("--no-score-answer", action="store_true",
                        help="do not score the `#### x` line as a step")
    parser.add_argument("--final", choices=["best", "vote"], default=DEFAULTS.final,
                        help="beam/dvts: best finished solution or weighted vote (default: %(default)s)")
    parser.add_argument("--refill", action="store_true",
                        help="beam/dvts: a finished solution frees its slot; search until the budget is spent")
    parser.add_argument("--lookahead", type=count, default=DEFAULTS.lookahead, metavar="L",
                        help="beam/dvts: rank a step by the score of L more sampled steps (default: %(default)s)")
    parser.add_argument("--temperature", type=non_negative_float, default=DEFAULTS.temperature,
                        help="sampling temperature, >= 0 (default: %(default)s)")
    parser.add_argument("--top-p", type=probability, default=DEFAULTS.top_p, help="in (0, 1] (default: %(default)s)")
    parser.add_argument("--step-tokens", type=positive_int, default=DEFAULTS.step_tokens,
                        help="most tokens of one step (default: %(default)s)")
    parser.add_argument("--solution-tokens", type=positive_int, default=DEFAULTS.solution_tokens,
                        help="most tokens of one full solution (default: %(default)s)")
    parser.add_argument("--max-depth", type=positive_int, default=DEFAULTS.max_depth,
                        help="most steps of a searched solution (default: %(default)s)")
    parser.add_argument("--target", type=probability, default=DEFAULTS.target,
                        help="adaptive: stop a problem once a solution scores at least this (default: %(default)s)")
    parser.add_argument("--round-size", type=positive_int, default=DEFAULTS.round_size,
                        help="adaptive: solutions sampled per problem a round (default: %(default)s)")
    parser.add_argument("--seed", type=int, default=DEFAULTS.seed, help="(default: %(default)s)")
    parser.add_argument("--keep-tree", action="store_true", help="record every explored node (large)")
    run = parser.add_argument_group("running")
    run.add_argument("--shard", type=shard, default=None, metavar="I/N",
                     help="search only shard I of N (by a hash of the problem id)")
    run.add_argument("--limit", type=positive_int, default=None, metavar="N", help="only the first N problems")
    run.add_argument("--format", default=None, help="input layout (default: told from the fields)")
    run.add_argument("--chunk-size", type=positive_int, default=32, metavar="P",
                     help="problems searched together, sharing each model call (default: %(default)s)")
    run.add_argument("--no-progress", action="store_true", help="no progress bar")


def config_from_args(args: argparse.Namespace) -> SearchConfig:
    return SearchConfig(strategy=args.strategy, budget=args.budget, tokens_per_solution=args.tokens_per_solution,
                        expand=args.expand, width=args.width, aggregation=args.aggregation,
                        score_answer=not args.no_score_answer, final=args.final, refill=args.refill, lookahead=args.lookahead, temperature=args.temperature,
                        top_p=args.top_p, step_tokens=args.step_tokens, solution_tokens=args.solution_tokens,
                        max_depth=args.max_depth, seed=args.seed, keep_tree=args.keep_tree, target=args.target,
                        round_size=args.round_size)


def run(args: argparse.Namespace) -> int:
    from prm.errors import RecordError
    from prm.formats import read
    from prm.search.config import problems_from_traces

    from prm.io import check_output, refuse_output_over_inputs

    out = Path(args.output)
    check_output(out, file=True)
    refuse_output_over_inputs(out, [args.problems, args.completer, args.scorer])
    if out.suffix not in (".jsonl", ".json"):
        raise RecordError("results are streamed as JSONL: give a .jsonl file", path=str(out))
    if not Path(args.problems).exists():
        raise RecordError("no such file or folder", path=args.problems)
    try:
        config = config_from_args(args)
    except ValueError as err:  # settings that are wrong together
        raise RecordError(str(err)) from None
    if config.strategy != "majority" and not args.scorer:
        raise RecordError(f"--strategy {config.strategy} needs a --scorer (MODEL, MODEL+checker:sympy, checker:sympy)")
    problems = problems_from_traces(read(args.problems, args.format, limit=args.limit))
    if not problems:
        raise RecordError("no problems to search", path=args.problems)

    with open_output(out) as output:  # a second run on the same OUT is refused at once
        return _search(args, problems, output, config)


def _search(args: argparse.Namespace, problems, output, config: SearchConfig) -> int:
    from prm.errors import RecordError
    from completers.loading import load_completer
    from prm.app.scorers import load_step_scorer

    scorer = load_step_scorer(args.scorer) if args.scorer else None
    try:
        completer = load_completer(args.completer)
    except (OSError, ValueError) as err:
        raise RecordError(f"cannot load completer {args.completer!r}: {err}") from None
    try:
        summary = run_search(problems, output, completer, scorer, config, completer_spec=args.completer,
                             scorer_spec=args.scorer, shard=args.shard, chunk_size=args.chunk_size,
                             progress=not args.no_progress)
    finally:
        completer.close()
    print(summary)
    return 0


def run_settings(config: SearchConfig, completer_spec: str, scorer_spec: str | None) -> dict:
    return {"completer": completer_spec, "scorer": scorer_spec, **config.settings()}


def stored_settings(trace) -> dict:
    """The settings a result trace was searched with (as `run_settings` gives them)."""
    stored = trace.meta.get("search") or {}
    return {"completer": stored.get("completer"), "scorer": stored.get("scorer"), **stored.get("settings", {})}


def open_output(out: Path):
    """OUT as a `prm.io.ResumableOutput`: one result trace per problem, named by its
    `meta.problem_id`; locked, its torn line repaired, each result checked on resume."""
    from prm.io import ResumableOutput

    return ResumableOutput(out, "meta.problem_id", "prm search", recorded=stored_settings,
                           settings_field="meta.search")


def run_search(problems, output, completer, scorer, config: SearchConfig, *, completer_spec: str,
               scorer_spec: str | None, shard=None, chunk_size: int = 32, progress: bool = True) -> str:
    """Search `problems` (this shard's part) into `output` (`open_output`), resuming what is
    already there; returns a one-paragraph summary."""
    from annotate.runner import shard_of
    from prm.progress import progress_bar
    from prm.search.api import resolve_config, search

    config, _ = resolve_config(problems, completer, config)  # 1x measured on the whole input, not a shard
    if shard is not None:
        problems = [p for p in problems if shard_of(p.id, shard[1]) == shard[0]]
    settings = run_settings(config, completer_spec, scorer_spec)
    done = output.resume([p.id for p in problems], settings)
    finished_ids = {t.meta.get("problem_id") for t in done}
    remaining = [p for p in problems if p.id not in finished_ids]
    tokens, start = 0, time.perf_counter()
    bar = progress_bar(len(problems), desc=f"search ({config.strategy}, {config.budget})", unit="problem",
                       initial=len(done), enabled=progress)

    def write(trace):
        nonlocal tokens
        trace.meta["search"]["completer"] = completer_spec
        trace.meta["search"]["scorer"] = scorer_spec
        output.append(trace)
        tokens += trace.meta["search"]["compute"]["generated_tokens"]
        bar.update(1)
        bar.set_postfix_str(f"{tokens / max(1e-9, time.perf_counter() - start):.0f} tok/s", refresh=False)

    try:
        result = search(remaining, completer, scorer, config=config, chunk_size=chunk_size, on_result=write)
    finally:
        bar.close()
    finished = output.read_back()
    solved = [t.outcome_label for t in finished if t.outcome_label is not None]
    spent = [t.meta["search"]["compute"]["generated_tokens"] for t in finished]
    lines = [f"searched {len(remaining)} problem(s) ({len(done)} already done) with {config.strategy} at "
             f"budget {config.budget}" + (f" (1x = {config.tokens_per_solution:g} tokens)"
                                          if config.tokens_per_solution else "") +
             f": {result.compute.generated_tokens} tokens in {result.compute.seconds:.1f} s "
             f"({result.compute.tokens_per_second:.0f} tok/s), {result.compute.completer_calls} completer calls, "
             f"{result.compute.scorer_calls} scorer calls",
             f"output holds {len(finished)} problem(s); mean tokens per problem "
             f"{sum(spent) / max(1, len(spent)):.0f}" +
             (f"; solved {sum(solved)}/{len(solved)} ({sum(solved) / len(solved):.1%})" if solved else "")]
    return "\n".join(lines)
