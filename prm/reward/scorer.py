"""The one interface every step scorer implements: `StepScorer`.

A step scorer gives each step of a (problem, steps) pair a probability that the step is good.
`prm score`, `prm eval`, search, RL rewards and the reward server call only these methods,
so this project's `RewardModel`, the published PRM formats (`prm.reward.published`) and
non-neural scorers (checkers) are interchangeable:

- `score_many(items, batch_size=None, progress=False)`: the one method to implement; one list
  of scores per (problem, steps) item, None for a step that could not be scored (e.g. cut by
  a model's max length). A step is never given a made-up score. A `RewardModel` that reads
  checker verdicts as inputs (`step_features`) takes (problem, steps, feature rows) items,
  or reads the verdicts itself in `score_traces`.
- `score(problem, steps)`, `score_traces(traces)`: conveniences over `score_many`.
- `solution_score(step_scores, how)`: aggregate step scores into one solution score
  (`prm.aggregate`), by default with the scorer's own `aggregation`.

`BatchedStepScorer` is the shared machinery of transformer scorers: it encodes every item,
groups them by length into batches under a token budget, and asks the subclass for the
probabilities of one padded batch (`_encode_many`, `_step_probabilities`).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod

from prm.aggregate import aggregate
from prm.records import Trace
from prm.reward.step_tokenizer import EncodedSteps

logger = logging.getLogger(__name__)

Item = tuple[str, list[str]]  # (problem, steps)


class StepScorer(ABC):
    """Scores the steps of solutions; see the module docstring for the contract."""

    aggregation: str = "min"

    @abstractmethod
    def score_many(self, items: list[Item], batch_size: int | None = None,
                   progress: bool = False) -> list[list[float | None]]:
        """One probability per step that the step is good, for each (problem, steps) item."""

    def score(self, problem: str, steps: list[str]) -> list[float | None]:
        """One probability per step that the step is good."""
        return self.score_many([(problem, list(steps))])[0]

    def score_traces(self, traces: list[Trace], batch_size: int | None = None,
                     progress: bool = False) -> list[Trace]:
        """Fill `Step.score` of every step (None where no score could be given); returns the traces."""
        scores = self.score_many([(t.problem, t.step_texts) for t in traces], batch_size, progress)
        for trace, values in zip(traces, scores):
            for step, value in zip(trace.steps, values):
                step.score = value
        return traces

    def solution_score(self, step_scores: list[float | None], how: str | None = None) -> float | None:
        """Aggregate step scores with `how` (default: this scorer's aggregation)."""
        return aggregate(step_scores, how or self.aggregation)


class BatchedStepScorer(StepScorer):
    """A transformer scorer: subclasses provide `_encode_many` and `_step_probabilities`.

    batch_size: most items per forward pass; max_batch_tokens: most (items x longest length)
    per forward pass. Steps dropped by truncation get None, and a warning says how many.
    """

    batch_size: int = 16
    max_batch_tokens: int = 16384

    @abstractmethod
    def _encode_many(self, items: list[Item]) -> list[EncodedSteps]:
        """Token ids and step-end positions of each item."""

    @abstractmethod
    def _step_probabilities(self, batch: list[EncodedSteps]) -> list[list[float]]:
        """The kept steps' probabilities for one batch of encoded items."""

    def score_many(self, items: list[Item], batch_size: int | None = None,
                   progress: bool = False) -> list[list[float | None]]:
        """Score many (problem, steps) pairs: sorted by length, padded per batch."""
        items = [(item[0], list(item[1]), *item[2:]) for item in items]  # extras: e.g. step features
        encoded = self._encode_many(items)
        results: list[list[float | None]] = [[None] * e.n_steps for e in encoded]
        batches = length_batches([len(e.input_ids) for e in encoded], batch_size or self.batch_size,
                                 self.max_batch_tokens)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(encoded), desc="scoring", unit="trace")
        for batch in batches:
            for index, probs in zip(batch, self._step_probabilities([encoded[i] for i in batch])):
                results[index][:len(probs)] = probs
            if bar is not None:
                bar.update(len(batch))
        if bar is not None:
            bar.close()
        dropped = [e.dropped for e in encoded if e.dropped]
        if dropped:
            logger.warning("%d step(s) in %d trace(s) did not fit in max_length and have no score",
                           sum(dropped), len(dropped))
        return results


def length_batches(lengths: list[int], batch_size: int, max_tokens: int,
                   max_padding: float = 0.1) -> list[list[int]]:
    """Indices grouped into batches of similar length, longest first: at most `batch_size`
    items, at most `max_tokens` padded tokens, and no item padded by more than `max_padding`
    of the batch's width (a longer item still gets a batch of its own).

    The padding bound matters on CPU, where a padded token costs as much as a real one: for a
    135M model, unbounded batches of GSM8K traces computed 1.76x the real tokens and scored at
    half the speed of one trace at a time (bench/README.md, scoring)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches, current, width = [], [], 0
    for i in order:
        length = lengths[i]
        full = len(current) >= batch_size or (len(current) + 1) * max(width, length) > max_tokens
        if current and (full or length < (1 - max_padding) * width):
            batches.append(current)
            current, width = [], 0
        current.append(i)
        width = max(width, length)
    if current:
        batches.append(current)
    return batches
