"""`search(problems, completer, scorer, strategy=..., budget=...)`: solve problems by
spending test-time compute under a budget, with any `Completer` and any `StepScorer`.

Returns one `Trace` per problem (id `problem|strategy|budget|seed`): the chosen solution's steps with their scores, its final
answer (graded against the reference when there is one: `outcome_label`), and
`meta["search"]`: the strategy and settings, the problem's compute (generated tokens,
completions, completer calls, scorer calls and scored items, seconds), every finished
candidate (answer, score, tokens, correct), whether any was correct (`any_correct`: pass@N
for sampling strategies), and, with `keep_tree`, every explored node.

Problems are searched in chunks of `chunk_size` (all problems of a chunk share each
completer and scorer call); `on_result` sees each finished problem, which is how
`prm search` writes results as it goes and resumes after an interruption. A problem's
result depends only on (settings, problem id), not on the chunk it was in.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

from annotate.grading import Grader
from prm.progress import progress_bar
from prm.records import Step, Trace
from prm.search.calls import Calls
from prm.search.choose import Candidate, choose
from prm.search.compute import Compute
from prm.search.config import (
    SAMPLING_STRATEGIES,
    Problem,
    SearchConfig,
    problems_from_traces,
)

if TYPE_CHECKING:
    from completers.base import Completer
    from prm.reward.scorer import StepScorer

RULE_OF = {"best-of-n": "best", "weighted-vote": "vote", "majority": "majority", "adaptive": "best"}


@dataclass
class SearchRun:
    """The results (one trace per problem, in input order), the run's total compute, and
    what one solution's worth of tokens was (given or estimated, with its cost)."""

    traces: list[Trace]
    compute: Compute
    config: SearchConfig
    calibration: Compute | None = None


def estimate_tokens_per_solution(problems: list[Problem], completer: Completer, config: SearchConfig,
                                 limit: int = 16) -> tuple[float, Compute]:
    """Mean generated tokens of one sampled solution, from one sample of each of the first
    `limit` problems (seeded by `config.seed`): what a budget of "1x" means in tokens."""
    from annotate.rollouts import derive_seed

    chosen = problems[:limit]
    calls = Calls(completer, None, config.temperature, config.top_p)
    results = calls.sample([completer.prompt_for(p.question, []) for p in chosen], [p.id for p in chosen],
                           [1] * len(chosen), [derive_seed(config.seed, p.id, "calibration") for p in chosen],
                           config.solution_tokens, stop=None)
    tokens = [c.tokens for completions in results for c in completions]
    return sum(tokens) / max(1, len(tokens)), calls.run


def resolve_config(problems: list[Problem], completer: Completer, config: SearchConfig
                   ) -> tuple[SearchConfig, Compute | None]:
    """`config` with `tokens_per_solution` filled in when the budget needs it."""
    if config.budget_spec.solutions is None or config.strategy in (*SAMPLING_STRATEGIES, "adaptive") \
            or config.tokens_per_solution is not None:
        return config, None
    value, cost = estimate_tokens_per_solution(problems, completer, config)
    return replace(config, tokens_per_solution=round(value, 2)), cost


def search(problems: list[Problem] | list[Trace], completer: Completer, scorer: StepScorer | None = None,
           strategy: str | None = None, budget: str | int | None = None, config: SearchConfig | None = None, *,
           chunk_size: int = 64, progress: bool = False,
           on_result: Callable[[Trace], None] | None = None) -> SearchRun:
    """Search every problem with `strategy` under `budget` (see `SearchConfig`)."""
    config = config or SearchConfig()
    if strategy is not None or budget is not None:
        config = replace(config, strategy=strategy or config.strategy,
                         budget=str(budget) if budget is not None else config.budget)
    if problems and isinstance(problems[0], Trace):
        problems = problems_from_traces(problems)
    if config.strategy != "majority" and scorer is None:
        raise ValueError(f"strategy {config.strategy!r} needs a step scorer")
    config, calibration = resolve_config(problems, completer, config)
    grader = Grader()
    total = Compute()
    traces: list[Trace] = []
    bar = progress_bar(len(problems), desc=f"search ({config.strategy}, {config.budget})", unit="problem",
                       enabled=progress)
    try:
        for start in range(0, len(problems), max(1, chunk_size)):
            chunk = problems[start:start + chunk_size]
            begun = time.perf_counter()
            calls = Calls(completer, scorer, config.temperature, config.top_p)
            for trace in solve_chunk(chunk, completer, calls, config, grader):
                traces.append(trace)
                if on_result is not None:
                    on_result(trace)
            calls.run.seconds = time.perf_counter() - begun  # wall time, bookkeeping included
            total.add(calls.run)
            bar.update(len(chunk))
            bar.set_postfix_str(f"{total.tokens_per_second:.0f} tok/s", refresh=False)
    finally:
        bar.close()
        grader.close()
    return SearchRun(traces, total, config, calibration)


def solve_chunk(problems: list[Problem], completer: Completer, calls: Calls, config: SearchConfig,
                grader) -> list[Trace]:
    """Search a chunk of problems together; one result trace each, in order."""
    budget_tokens = None
    if config.budget_spec.tokens is not None or config.tokens_per_solution is not None:
        budget_tokens = config.budget_spec.tokens_for(config.tokens_per_solution)
    if config.strategy in SAMPLING_STRATEGIES or config.strategy == "adaptive":
        from prm.search.adaptive import adaptive_candidates
        from prm.search.sampling import sample_candidates

        sample = adaptive_candidates if config.strategy == "adaptive" else sample_candidates
        sampled = sample(problems, completer, calls, config)
        found = {pid: (candidates, [], None) for pid, candidates in sampled.items()}
    else:
        from prm.search.tree import tree_search

        found = tree_search(problems, completer, calls, config, budget_tokens)
    traces = []
    for problem in problems:
        finished, unfinished, tree = found[problem.id]
        for candidate in finished + unfinished:
            if problem.reference_answer is not None:
                candidate.correct = candidate.answer is not None and grader.is_equivalent(
                    candidate.answer, problem.reference_answer)
        if config.strategy in RULE_OF:
            chosen = choose(finished, RULE_OF[config.strategy])
            tree = [sample_record(c) for c in finished]
        else:
            from prm.search.tree import pick_answer

            chosen = pick_answer([c for c in finished if c.finished], unfinished, config.final)
        traces.append(result_trace(problem, chosen, finished, tree, calls.of(problem.id), config, budget_tokens))
    return traces


def result_id(problem_id: str, config: SearchConfig) -> str:
    """A result's id: unique per (problem, strategy, budget, seed), so that the results of
    several runs can sit in one folder for `prm eval` (`meta.problem_id` is the problem's)."""
    return f"{problem_id}|{config.strategy}|{config.budget}|s{config.seed}"


def sample_record(candidate: Candidate) -> dict:
    """A sampled solution as the explored-tree record of sampling strategies."""
    return {**candidate.summary(), "steps": candidate.steps, "scores": candidate.scores}


def result_trace(problem: Problem, chosen: Candidate | None, candidates: list[Candidate], tree: list[dict],
                 compute: Compute, config: SearchConfig, budget_tokens: int | None) -> Trace:
    """The result record of one problem (see the module docstring)."""
    chosen = chosen or Candidate([], None, finished=False)
    steps = [Step(text, score=score) for text, score in zip(chosen.steps, chosen.scores)]
    steps += [Step(text) for text in chosen.steps[len(steps):]]
    if not steps:
        steps = [Step("(empty)")]
    answer_score = chosen.scores[len(chosen.steps)] if len(chosen.scores) > len(chosen.steps) else None
    known = [c.correct for c in candidates if c.correct is not None]
    meta = {"problem_id": problem.id,
            "search": {"strategy": config.strategy, "budget": config.budget, "budget_tokens": budget_tokens,
                       "settings": config.settings(), "compute": compute.to_dict(), "score": chosen.score,
                       "answer_score": answer_score, "finished": chosen.finished,
                       "candidates": [c.summary() for c in candidates],
                       "any_correct": any(known) if known else None}}
    if config.keep_tree:
        meta["search"]["tree"] = tree
    outcome = None
    if problem.reference_answer is not None:
        outcome = int(bool(chosen.correct))
    return Trace(id=result_id(problem.id, config), problem=problem.question, steps=steps, final_answer=chosen.answer,
                 reference_answer=problem.reference_answer, outcome_label=outcome, meta=meta)
