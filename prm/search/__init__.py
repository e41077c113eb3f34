"""Test-time search guided by a step scorer: best-of-N, weighted and majority votes, step-level
beam search and DVTS, under a token budget, with every method's compute counted in the same
units. See `prm.search.api.search` and docs/search.md."""

from prm.search.api import SearchRun, estimate_tokens_per_solution, search
from prm.search.choose import Candidate, answer_key, choose
from prm.search.compute import Budget, BudgetSpec, Compute
from prm.search.config import STRATEGIES, Problem, SearchConfig, problems_from_traces

__all__ = [
           "STRATEGIES",
           "Budget",
           "BudgetSpec",
           "Candidate",
           "Compute",
           "Problem",
           "SearchConfig",
           "SearchRun",
           "answer_key",
           "choose",
           "estimate_tokens_per_solution",
           "problems_from_traces",
           "search",
]
