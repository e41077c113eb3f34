"""The two kinds of work a search does, each counted as it happens: sampling from the
completer and scoring prefixes with the step scorer.

`Calls.sample` sends many prompts (all active prefixes of all problems at one step) to the
completer in ONE `complete_prompts` call, with a seed and a sample count per prompt;
`Calls.score_prefixes` scores many (problem, steps) items in ONE `score_prefixes` call, each
from its parent prefix's state when the tree search gives one (a causal scorer then runs only
the new tokens); `Calls.score` is the same without parents. Both add to the run's `Compute`
and to the `Compute` of each problem that took part.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from prm.search.compute import Compute

if TYPE_CHECKING:
    from completers.base import Completer, Completion
    from prm.reward.prefix_cache import ScoredPrefix
    from prm.reward.scorer import StepScorer


class Calls:
    """Completer and scorer calls with their compute accounted (run total and per owner)."""

    def __init__(self, completer: Completer, scorer: StepScorer | None, temperature: float, top_p: float):
        self.completer, self.scorer = completer, scorer
        self.temperature, self.top_p = temperature, top_p
        self.run = Compute()
        self.owners: dict[str, Compute] = {}

    def of(self, owner: str) -> Compute:
        return self.owners.setdefault(owner, Compute())

    def sample(self, prompts: list[str], owners: list[str], ns: list[int], seeds: list[int],
               max_new_tokens: int, stop: list[str] | None) -> list[list[Completion]]:
        """`ns[i]` continuations of `prompts[i]`, in one completer call."""
        from completers.base import SamplingParams

        if not prompts:
            return []
        params = SamplingParams(n=1, temperature=self.temperature, top_p=self.top_p,
                                max_new_tokens=max_new_tokens, seed=None)
        start = time.perf_counter()
        results = self.completer.complete_prompts(prompts, params, stop=stop, seeds=seeds, ns=ns)
        seconds = time.perf_counter() - start
        if len(results) != len(prompts) or any(len(r) != n for r, n in zip(results, ns)):
            raise RuntimeError(f"completer {self.completer.name!r} returned {[len(r) for r in results]} "
                               f"completions for requests of n={ns}")
        tokens = [sum(c.tokens for c in completions) for completions in results]
        total = sum(tokens) or 1
        self.run.completer_calls += 1
        self.run.prompts += len(prompts)
        self.run.completions += sum(ns)
        self.run.generated_tokens += sum(tokens)
        self.run.completer_seconds += seconds
        self.run.seconds += seconds
        for owner in dict.fromkeys(owners):
            self.of(owner).completer_calls += 1
        for owner, n, spent in zip(owners, ns, tokens):
            mine = self.of(owner)
            mine.prompts += 1
            mine.completions += n
            mine.generated_tokens += spent
            mine.completer_seconds += seconds * spent / total
            mine.seconds += seconds * spent / total
        return results

    def score(self, items: list[tuple[str, list[str]]], owners: list[str]) -> list[list[float | None]]:
        """Step scores of each (problem, steps) item, in one scorer call."""
        return [result.scores for result in self.score_prefixes(items, owners)]

    def score_prefixes(self, items: list[tuple[str, list[str]]], owners: list[str],
                       parents: list | None = None) -> list[ScoredPrefix]:
        """Each item scored in one scorer call, from `parents[i]` (the state of its parent
        prefix's result, or None); the tokens the scorer ran are counted."""
        if not items:
            return []
        if self.scorer is None:
            raise ValueError("this strategy needs a step scorer")
        start = time.perf_counter()
        results = self.scorer.score_prefixes(items, parents)
        seconds = time.perf_counter() - start
        if len(results) != len(items):
            raise RuntimeError(f"scorer returned {len(results)} results for {len(items)} items")
        steps = [len(s) for _, s in items]
        total = sum(steps) or 1
        self.run.scorer_calls += 1
        self.run.scorer_seconds += seconds
        self.run.seconds += seconds
        for owner in dict.fromkeys(owners):
            self.of(owner).scorer_calls += 1
        for owner, count, result in zip(owners, steps, results):
            for compute, share in ((self.run, 0.0), (self.of(owner), seconds * count / total)):
                compute.scored_items += 1
                compute.scored_steps += count
                compute.scorer_tokens += result.tokens
                compute.scorer_computed_tokens += result.computed_tokens
                compute.scorer_new_tokens += result.new_tokens
                compute.scorer_seconds += share
                compute.seconds += share
        return results


def parse_step(text: str) -> tuple[str | None, str | None, bool]:
    """One sampled step -> (step text or None, answer or None, finished).

    A line starting with `####` is the answer line and ends the solution; text before a
    `####` on the same line is a step. An empty sample ends the solution without an answer
    (the model stopped)."""
    from annotate.grading import extract_answer

    stripped = text.strip()
    if "####" in stripped:
        head = stripped[:stripped.index("####")].strip()
        return head or None, extract_answer(stripped), True
    if not stripped:
        return None, None, True
    return stripped, None, False


def parse_solution(text: str, split_steps) -> tuple[list[str], str | None]:
    """A sampled full solution -> (steps before the answer line, answer or None)."""
    from annotate.grading import extract_answer

    head = text[:text.index("####")] if "####" in text else text
    return split_steps(head), extract_answer(text)
