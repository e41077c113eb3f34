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
- `score_prefixes(items, parents)`: the same scores for prefixes that each extend an earlier
  scored prefix (its `ScoredPrefix.state`), as a search scores a tree; a causal transformer
  scorer runs only the new tokens after the parent's KV cache (`prm.reward.prefix_cache`),
  every other scorer scores the items whole. Each result says how many tokens were run.
- `solution_score(step_scores, how)`: aggregate step scores into one solution score
  (`prm.aggregate`), by default with the scorer's own `aggregation`.

A scorer that can do more says so by having the method, and users ask with `isinstance`
against a protocol, never by the scorer's kind: `TokenRewardScorer` (`token_rewards`, a
reward per token, e.g. an implicit PRM's beta * log-ratios) is what `prm.rl.dense` looks for.

`BatchedStepScorer` is the shared machinery of transformer scorers: it encodes every item,
groups them by length into batches under a token budget, and asks the subclass for the
probabilities of one padded batch (`_encode_many`, `_step_probabilities`). A subclass
built on a causal backbone opts in to incremental prefix scoring with two more hooks:
`_causal_backbone()` (the module run with a KV cache, returning `last_hidden_state`) and
`_step_head(hidden)` (step probabilities from the hidden states at step positions). A scorer
whose scores need more than that (e.g. an implicit PRM reading two models' token
log-probabilities) overrides `score_prefixes` itself, keeping its own `PrefixState`s.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from typing import Protocol, runtime_checkable

from prm.aggregate import aggregate
from prm.records import Trace
from prm.reward.batching import length_batches  # noqa: F401 (also imported from here)
from prm.reward.prefix_cache import PrefixState, ScoredPrefix, new_token_counts, score_incrementally
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

    def score_prefixes(self, items: list[Item], parents: list[PrefixState | None] | None = None,
                       batch_size: int | None = None) -> list[ScoredPrefix]:
        """Scores of prefixes that each extend `parents[i]` (the `state` of an earlier result,
        or None): the same scores as `score_many`. This default scores every item whole and
        keeps no state; scorers that can reuse a parent's work override it."""
        scores = self.score_many(items, batch_size)
        return [ScoredPrefix(row) for row in scores]

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


@runtime_checkable
class TokenRewardScorer(Protocol):
    """A scorer with token-level rewards (`prm.reward.model.ImplicitPRM`): `isinstance(scorer,
    TokenRewardScorer)` tells whether it has them."""

    def token_rewards(self, items: list[Item], batch_size: int | None = None) -> list[list[list[tuple[int, float]]]]:
        """For each (problem, steps) item, one list per scored step of (end, reward) pairs, one
        per token: `end` is the offset in the step's text just after the token's last character.
        A step's token rewards sum to its step reward."""


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

    def _causal_backbone(self):
        """The causal transformer whose KV cache `score_prefixes` may reuse (called with
        input_ids, attention_mask, position_ids, past_key_values; returns last_hidden_state),
        or None (the default: encoders, and scorers that read more than hidden states at
        step positions): then prefixes are scored whole."""
        return None

    def _step_head(self, hidden):
        """Step probabilities [n] from the backbone's hidden states [n, hidden] at step
        positions; needed when `_causal_backbone` is not None."""
        raise NotImplementedError

    @property
    def incremental(self) -> bool:
        """Whether `score_prefixes` runs only the tokens a prefix adds to its parent."""
        return self._causal_backbone() is not None

    def score_prefixes(self, items: list[Item], parents: list[PrefixState | None] | None = None,
                       batch_size: int | None = None) -> list[ScoredPrefix]:
        """`StepScorer.score_prefixes`: from the parents' KV caches when the backbone is causal
        (`prm.reward.prefix_cache`), else whole, with states that hold the token ids only."""
        items = [(item[0], list(item[1]), *item[2:]) for item in items]
        parents = list(parents) if parents is not None else [None] * len(items)
        if self.incremental:
            return score_incrementally(self, items, parents, batch_size)
        encoded = self._encode_many(items)
        news = new_token_counts(encoded, items, parents)
        scores = self._score_encoded(encoded, batch_size)
        return [ScoredPrefix(row, PrefixState(e.input_ids), len(e.input_ids), len(e.input_ids), new)
                for row, e, new in zip(scores, encoded, news)]

    def score_many(self, items: list[Item], batch_size: int | None = None,
                   progress: bool = False) -> list[list[float | None]]:
        """Score many (problem, steps) pairs: sorted by length, padded per batch."""
        items = [(item[0], list(item[1]), *item[2:]) for item in items]  # extras: e.g. step features
        return self._score_encoded(self._encode_many(items), batch_size, progress)

    def _score_encoded(self, encoded: list[EncodedSteps], batch_size: int | None = None,
                       progress: bool = False) -> list[list[float | None]]:
        results: list[list[float | None]] = [[None] * e.n_steps for e in encoded]
        batches = length_batches([len(e.input_ids) for e in encoded], batch_size or self.batch_size,
                                 self.max_batch_tokens)
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(encoded), desc="scoring", unit="trace")
        for batch, answer in self._answer_batches(encoded, batches):
            for index, probs in zip(batch, answer):
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

    def _answer_batches(self, encoded: list[EncodedSteps], batches: list[list[int]]):
        """(batch, its `_step_probabilities`) for each batch of indices, in order; one at a
        time here (a scorer asking servers overrides it to have several in flight)."""
        for batch in batches:
            yield batch, self._step_probabilities([encoded[i] for i in batch])
