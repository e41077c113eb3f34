"""Adaptive best-of-N: sample in rounds and stop a problem once it is solved with confidence.

A calibrated scorer (`prm calibrate`) gives a solution score that is a probability of being
right, so a problem whose best solution already scores above `target` needs no more samples;
the tokens go only to the problems still unsure (instance-adaptive scaling, arXiv 2506.09338).
Each round samples `round_size` solutions of every problem still open, scores them in one scorer
call, and closes the problems whose best score reached the target. The budget caps a problem's
samples: "8x" is at most 8 solutions (as best-of-8 draws), a token budget stops a problem when it
no longer covers `solution_tokens` for another sample. The answer is the best-scored solution,
as best-of-N chooses.

With an uncalibrated scorer the rule still runs, but the target is then not a probability, and
it has to be tuned by hand.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from prm.search.calls import Calls
from prm.search.choose import Candidate
from prm.search.compute import Budget
from prm.search.config import Problem, SearchConfig
from prm.search.sampling import sample_round, score_candidates

if TYPE_CHECKING:
    from completers.base import Completer


def confident(candidates: list[Candidate], target: float) -> bool:
    """Whether some finished solution's score has reached `target`."""
    return any(c.finished and c.score is not None and c.score >= target for c in candidates)


def adaptive_candidates(problems: list[Problem], completer: Completer, calls: Calls,
                        config: SearchConfig) -> dict[str, list[Candidate]]:
    """The scored solutions sampled for each problem, round by round until it is confident or
    its budget is spent."""
    spec = config.budget_spec
    candidates: dict[str, list[Candidate]] = {p.id: [] for p in problems}
    budgets = {p.id: Budget(spec.tokens) for p in problems} if spec.tokens is not None else None
    most = None if spec.solutions is None else max(1, round(spec.solutions))
    open_problems = list(problems)
    round_number = 0
    while open_problems:
        todo = []
        for problem in open_problems:
            if budgets is None:
                n = min(config.round_size, most - len(candidates[problem.id]))
            else:
                n = min(config.round_size, budgets[problem.id].affordable(config.solution_tokens))
            if n > 0:
                todo.append((problem, n))
        if not todo:
            break
        new = sample_round(todo, completer, calls, config, budgets, round_number, "adaptive")
        score_candidates([p for p, _ in todo], new, calls, config)
        for problem_id, found in new.items():
            candidates[problem_id] += found
        open_problems = [p for p, _ in todo if not confident(candidates[p.id], config.target)]
        round_number += 1
    return candidates
