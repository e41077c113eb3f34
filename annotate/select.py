"""Active learning: choose which unlabelled traces are worth their rollouts (`prm select`).

ActPRM (arXiv 2504.10559) labels only the traces its current PRM is unsure of and matches a
PRM trained on every trace at a fraction of the labelling cost. Here:

- `trace_uncertainty(scores)`: how unsure a PRM is about a trace: the largest binary entropy
  (in bits) of its step scores, so one step near 0.5 makes the whole trace worth labelling
  (a PRM that is sure of every step learns little from its labels). Steps without a score
  count as maximally uncertain.
- `estimated_rollouts(trace, method, n)`: what labelling the trace will cost before it is
  labelled: per-step Monte Carlo spends exactly n per step; binary search at most n per probe
  and about log2(steps + 1) probes.
- `select(traces, budget, ...)`: the most uncertain traces (or a seeded random sample, the
  baseline) whose estimated rollouts fit in the budget, in order; a trace that does not fit
  is passed over for a cheaper one.

The loop (score the pool with the current PRM, select, label with `prm annotate`, retrain,
repeat) is what `bench/active.py` measures against random selection.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

from prm.records import Trace

STRATEGIES = ("uncertain", "random")


def binary_entropy(p: float) -> float:
    """Entropy in bits of a Bernoulli(p): 1 at 0.5, 0 at 0 and 1."""
    if p <= 0.0 or p >= 1.0:
        return 0.0
    return -(p * math.log2(p) + (1 - p) * math.log2(1 - p))


def trace_uncertainty(scores: list[float | None]) -> float:
    """The largest step entropy (a step without a score counts as 1.0, the most uncertain)."""
    return max((1.0 if s is None else binary_entropy(s) for s in scores), default=0.0)


def estimated_rollouts(trace: Trace, method: str, n: int) -> int:
    """Rollouts labelling `trace` will spend: n per step (mc); n per probe, about
    ceil(log2(steps + 1)) probes (binary; an upper estimate, early stops spend less)."""
    steps = len(trace.steps)
    if method == "mc":
        return n * steps
    if method == "binary":
        return n * max(1, math.ceil(math.log2(steps + 1)))
    raise ValueError(f"method must be mc or binary, got {method!r}")


@dataclass
class Selection:
    """The chosen traces, in order, with what each is expected to cost and how uncertain it was."""

    traces: list[Trace]
    uncertainty: list[float]
    estimated: list[int]
    budget: int

    @property
    def spent(self) -> int:
        return sum(self.estimated)


def select(traces: list[Trace], budget: int, *, strategy: str = "uncertain", method: str = "mc", n: int = 8,
           cost=None, seed: int = 0) -> Selection:
    """Traces to label within `budget` rollouts.

    strategy "uncertain": by `trace_uncertainty` of the traces' step scores (`Step.score`,
    from the current PRM), most uncertain first, ties by id; "random": a random order from
    `seed`. cost: trace -> rollouts (default `estimated_rollouts(trace, method, n)`; a
    benchmark that already knows the true cost passes it).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {STRATEGIES}, got {strategy!r}")
    cost = cost or (lambda trace: estimated_rollouts(trace, method, n))
    uncertainty = {t.id: trace_uncertainty(t.scores) for t in traces}
    if strategy == "uncertain":
        order = sorted(traces, key=lambda t: (-uncertainty[t.id], t.id))
    else:
        order = sorted(traces, key=lambda t: t.id)
        random.Random(seed).shuffle(order)
    chosen, left = [], budget
    for trace in order:
        price = cost(trace)
        if price <= left:
            chosen.append((trace, price))
            left -= price
    return Selection([t for t, _ in chosen], [uncertainty[t.id] for t, _ in chosen], [p for _, p in chosen], budget)
