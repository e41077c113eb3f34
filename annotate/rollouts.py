"""Rollouts: the completions sampled from a step prefix, and the machinery both labelling
methods (per-step Monte Carlo and binary search) share to collect them.

- `derive_seed`, `round_seed`: seeds derived from (run seed, trace id, call), so every
  trace gets the same samples whether the run was interrupted, sharded or run in another
  order.
- `Budget`: a per-trace cap on rollouts and/or generated tokens, never exceeded. A rollout
  is started only if the remaining token budget covers its worst case (`max_new_tokens`),
  so at most `max_new_tokens - 1` tokens of a token budget can go unused.
- `sample_rollouts`: one completer call for some prefixes (and rounds), graded into `Rollouts`;
  `merge_rollouts`, `existing_rollouts`: evidence from several rounds and from the input.
- `rollout_rounds`: how many of a prefix's n completions each round samples; both methods
  sample in these rounds, so they see the same completions of a prefix.
- `spread`: sharing a number of rollouts evenly among steps.
- `annotation_meta`: what a labelled trace records in `meta["annotation"]`.
"""

from __future__ import annotations

import copy
import hashlib
import math
import time
from typing import TYPE_CHECKING

from prm.records import Rollouts, Trace

if TYPE_CHECKING:
    from annotate.config import AnnotateConfig
    from annotate.grading import Grader
    from completers.base import Completer


def derive_seed(*parts) -> int:
    """A 31-bit seed from any parts (run seed, trace id, call tag...), stable across runs."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def round_seed(trace_seed: int, round_number: int) -> int:
    """The seed of a trace's `round_number`-th call on a prefix. Both methods sample a prefix
    in the same rounds (`rollout_rounds`) with these seeds, so with a completer whose samples
    depend only on (prompt, seed, sample index) they see the same completions of a prefix."""
    return derive_seed(trace_seed, "round", round_number)


def rollout_rounds(config: "AnnotateConfig") -> list[int]:
    """The completions of a prefix in rounds: `probe_first` (default ceil(n / 4)), then the
    rest of the n. Binary search stops a probe after a round with a success; Monte Carlo
    samples every round. Sampling both the same way makes a probed prefix's evidence exactly
    Monte Carlo's for that prefix (bench/README.md: with different rounds, binary search and
    Monte Carlo disagreed on prefixes whose chance of success is small)."""
    first = min(config.n, config.probe_first or math.ceil(config.n / 4))
    return [first, config.n - first] if first < config.n else [config.n]


class Budget:
    """Rollouts and tokens spent on one trace, against optional caps that are never exceeded."""

    def __init__(self, max_rollouts: int | None, max_tokens: int | None, max_new_tokens: int):
        self.max_rollouts, self.max_tokens, self.max_new_tokens = max_rollouts, max_tokens, max_new_tokens
        self.rollouts = 0
        self.tokens = 0
        self.limited = False  # set when a request had to be cut

    def grant(self, wanted: int) -> int:
        """How many of `wanted` rollouts may start now (each may take max_new_tokens tokens)."""
        granted = wanted
        if self.max_rollouts is not None:
            granted = min(granted, self.max_rollouts - self.rollouts)
        if self.max_tokens is not None:
            granted = min(granted, (self.max_tokens - self.tokens) // self.max_new_tokens)
        granted = max(granted, 0)
        if granted < wanted:
            self.limited = True
        return granted

    def spend(self, rollouts: int, tokens: int) -> None:
        self.rollouts += rollouts
        self.tokens += tokens


def sample_rollouts(completer: "Completer", trace: Trace, requests: list[tuple[int, int, int]],
                    config: "AnnotateConfig", grader: "Grader", budget: Budget,
                    skipped: dict[int, str]) -> dict[int, Rollouts]:
    """Sample and grade completions of step prefixes: `requests` are (step index, count, seed)
    (a step may come more than once, e.g. two rounds with their own seeds); the result holds
    each step's rollouts, its requests merged in the order given.

    All requests go to the completer in one `complete_prompts` call (per-prompt seeds and
    counts), so that it can share the work; the wall time of the call is shared among the
    requests in proportion to their tokens. A prefix the completer refuses as input
    (`ValueError`, e.g. longer than the model's context) gets no rollouts: its reason is put
    in `skipped` and the other prefixes are sampled as usual.
    """
    from completers.base import SamplingParams

    requests = [(index, count, seed) for index, count, seed in requests if count > 0 and index not in skipped]
    if not requests:
        return {}
    params = SamplingParams(n=requests[0][1], temperature=config.temperature, top_p=config.top_p,
                            max_new_tokens=config.max_new_tokens, seed=requests[0][2])
    start = time.perf_counter()
    outputs = _complete_or_refuse(completer, trace, requests, params)
    seconds = time.perf_counter() - start
    total_tokens = sum(c.tokens for out in outputs if isinstance(out, list) for c in out) or 1
    results: dict[int, Rollouts] = {}
    for (index, count, _), completions in zip(requests, outputs):
        if isinstance(completions, ValueError):
            skipped[index] = str(completions)
            continue
        if len(completions) != count:
            raise RuntimeError(f"completer {completer.name!r} returned {len(completions)} completions "
                               f"for a request of n={count}")
        graded = [grader.grade(c.text, trace.reference_answer) for c in completions]
        tokens = sum(c.tokens for c in completions)
        rollouts = Rollouts(correct=sum(ok for _, ok in graded), total=count,
                            answers=[answer for answer, _ in graded], tokens=tokens,
                            seconds=seconds * tokens / total_tokens,
                            texts=[c.text for c in completions] if config.keep_texts else None)
        results[index] = merge_rollouts(results.get(index), rollouts, config.keep_texts)
        budget.spend(count, tokens)
    return results


def _complete_or_refuse(completer: "Completer", trace: Trace, requests: list[tuple[int, int, int]],
                        params) -> list:
    """Each request's completions, or the `ValueError` the completer raised for its prefix.

    When a call is refused, the requests are split in halves until the refused prefixes are
    alone (a refusal comes before any sampling, so this costs little), so that the other
    prefixes still share one call.
    """
    prompts = [completer.prompt_for(trace.problem, trace.step_texts[:index + 1]) for index, _, _ in requests]
    try:
        outputs = completer.complete_prompts(prompts, params, seeds=[seed for _, _, seed in requests],
                                             ns=[count for _, count, _ in requests])
    except ValueError as err:
        if len(requests) == 1:
            return [err]
        half = len(requests) // 2
        return (_complete_or_refuse(completer, trace, requests[:half], params)
                + _complete_or_refuse(completer, trace, requests[half:], params))
    if len(outputs) != len(requests):
        raise RuntimeError(f"completer {completer.name!r} returned {len(outputs)} results for {len(requests)} requests")
    return outputs


def merge_rollouts(old: Rollouts | None, new: Rollouts, keep_texts: bool) -> Rollouts:
    """Evidence from two rounds on the same prefix, as one `Rollouts`."""
    if old is None:
        return new
    texts = None
    if keep_texts and old.texts is not None and new.texts is not None:
        texts = old.texts + new.texts
    return Rollouts(correct=old.correct + new.correct, total=old.total + new.total,
                    answers=old.answers + new.answers, tokens=old.tokens + new.tokens,
                    seconds=old.seconds + new.seconds, texts=texts)


def existing_rollouts(trace: Trace, config: "AnnotateConfig") -> dict[int, Rollouts]:
    """Rollouts already in the input, when they are to be reused."""
    if not config.reuse_rollouts:
        return {}
    found = {}
    for index, step in enumerate(trace.steps):
        if step.rollouts is not None and step.rollouts.total > 0:
            found[index] = copy.deepcopy(step.rollouts)
            if not config.keep_texts:
                found[index].texts = None
    return found


def spread(needs: list[int], available: int) -> list[int]:
    """Share `available` rollouts among steps needing `needs[i]`, as evenly as possible,
    earlier steps first."""
    given = [0] * len(needs)
    while available > 0 and any(g < n for g, n in zip(given, needs)):
        for index, need in enumerate(needs):
            if available == 0:
                break
            if given[index] < need:
                given[index] += 1
                available -= 1
    return given


def annotation_meta(config: "AnnotateConfig", budget: Budget, seconds: float, skipped: dict[int, str],
                    **extra) -> dict:
    """What `meta["annotation"]` records: the settings, the cost of this trace, and the steps
    whose prefix the completer refused (`skipped`: step index and reason)."""
    return {"method": config.label_source, "settings": config.settings(), "rollouts": budget.rollouts,
            "tokens": budget.tokens, "seconds": round(seconds, 4), "budget_limited": budget.limited,
            "skipped": [{"step": i, "reason": reason} for i, reason in sorted(skipped.items())], **extra}
