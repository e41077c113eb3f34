"""Whole-solution strategies: sample N solutions per problem, score them, pick one
(best-of-N, score-weighted vote, majority vote).

All problems' samples go to the completer in one call per round. With a budget of "Nx"
there is one round of N samples per problem (on average the budget exactly; a single
problem may spend more or less). With a budget in tokens, rounds continue while the
remaining budget covers `solution_tokens` for another sample, so it is never exceeded.
Sample j of a problem has the same text whatever N is (the completer derives sample j's
stream from the seed and j), so best-of-4 sees the first 4 of best-of-16's samples.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prm.aggregate import aggregate
from prm.search.answer_line import answer_step
from prm.search.calls import Calls, parse_solution
from prm.search.choose import Candidate
from prm.search.compute import Budget
from prm.search.config import Problem, SearchConfig

if TYPE_CHECKING:
    from completers.base import Completer


def sample_candidates(problems: list[Problem], completer: Completer, calls: Calls,
                      config: SearchConfig) -> dict[str, list[Candidate]]:
    """Sampled (and, unless the strategy is majority, scored) solutions of each problem."""
    spec = config.budget_spec
    candidates: dict[str, list[Candidate]] = {p.id: [] for p in problems}
    budgets = {p.id: Budget(spec.tokens) for p in problems} if spec.tokens is not None else None
    round_number = 0
    while True:
        todo = []
        for problem in problems:
            if budgets is None:
                n = max(1, round(spec.solutions)) if round_number == 0 else 0
            else:
                n = budgets[problem.id].affordable(config.solution_tokens)
            if n:
                todo.append((problem, n))
        if not todo:
            break
        for problem_id, found in sample_round(todo, completer, calls, config, budgets, round_number,
                                              "solutions").items():
            candidates[problem_id] += found
        round_number += 1
    if config.strategy != "majority":
        score_candidates(problems, candidates, calls, config)
    return candidates


def sample_round(todo: list[tuple[Problem, int]], completer: Completer, calls: Calls, config: SearchConfig,
                 budgets: dict[str, Budget] | None, round_number: int, stream: str) -> dict[str, list[Candidate]]:
    """One round: `n` new whole solutions of each (problem, n) of `todo`, in one completer call,
    each charged to its problem's budget (if any). `stream` names the seed stream ("solutions"
    for best-of-N, "adaptive" for adaptive rounds), so each strategy's samples stay its own."""
    from annotate.rollouts import derive_seed

    results = calls.sample([completer.prompt_for(p.question, []) for p, _ in todo], [p.id for p, _ in todo],
                           [n for _, n in todo],
                           [derive_seed(config.seed, p.id, stream, round_number) for p, _ in todo],
                           config.solution_tokens, stop=None)
    new: dict[str, list[Candidate]] = {}
    for (problem, _), completions in zip(todo, results):
        for j, completion in enumerate(completions):
            if budgets is not None:
                budgets[problem.id].spend(completion.tokens)
            steps, answer = parse_solution(completion.text, completer.split_steps)
            new.setdefault(problem.id, []).append(Candidate(steps, answer, order=(round_number, j),
                                                            tokens=completion.tokens, finished=answer is not None))
    return new


def score_candidates(problems: list[Problem], candidates: dict[str, list[Candidate]], calls: Calls,
                     config: SearchConfig) -> None:
    """Fill `scores` and `score` of every candidate, in one scorer call."""
    items, owners, targets = [], [], []
    for problem in problems:
        for candidate in candidates[problem.id]:
            steps = list(candidate.steps)
            if config.score_answer and candidate.answer is not None:
                steps.append(answer_step(candidate.answer))
            if steps:
                items.append((problem.question, steps))
                owners.append(problem.id)
                targets.append(candidate)
    for candidate, scores in zip(targets, calls.score(items, owners)):
        candidate.scores = list(scores)
        candidate.score = aggregate(candidate.scores, config.aggregation)
