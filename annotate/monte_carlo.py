"""Per-step Monte Carlo labels (Math-Shepherd, arXiv 2312.08935).

For step i of a trace, N completions are sampled from the problem plus steps[:i+1]; the
soft label is the fraction that reach the reference answer and the hard label is 1 if at
least `config.min_successes` do (default 1: any). All prefixes of a trace go to the
completer together, sampled in the rounds binary search probes in
(`annotate.rollouts.rollout_rounds`, so both see the same completions of a prefix): with no
budget all rounds in one call, with a budget one call per round, so that the completer can
share the work (a KV-cache of the common prefix, one HTTP batch). The rollout
machinery (seeds, rounds, budget, sampling) is in `annotate.rollouts`, shared with binary search.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING

from annotate.config import AnnotateConfig
from annotate.rollouts import (Budget, annotation_meta, derive_seed, existing_rollouts,
                               merge_rollouts, round_seed, rollout_rounds, sample_rollouts, spread)
from prm.records import Trace

if TYPE_CHECKING:
    from annotate.grading import Grader
    from completers.base import Completer


def label_trace(trace: Trace, completer: "Completer", config: AnnotateConfig, grader: "Grader") -> Trace:
    """A copy of `trace` with per-step Monte Carlo labels, rollouts and `meta["annotation"]`."""
    start = time.perf_counter()
    trace = copy.deepcopy(trace)
    budget = Budget(config.max_rollouts, config.max_tokens, config.max_new_tokens)
    trace_seed = derive_seed(config.seed, trace.id)
    evidence = existing_rollouts(trace, config)
    skipped: dict[int, str] = {}
    needs = [max(0, config.n - (evidence[i].total if i in evidence else 0)) for i in range(len(trace.steps))]
    rounds = rollout_rounds(config)
    if config.max_rollouts is None and config.max_tokens is None:
        # No budget: every round samples what it wants whatever the others found, so all
        # rounds go to the completer in one call (one prefill, one decoding of all the rows).
        plan = []
        for round_number, size in enumerate(rounds):
            seed = round_seed(trace_seed, round_number)
            plan += [(i, min(need, size), seed) for i, need in enumerate(needs)]
            needs = [need - min(need, size) for need in needs]
        for index, rollouts in sample_rollouts(completer, trace, plan, config, grader, budget, skipped).items():
            evidence[index] = merge_rollouts(evidence.get(index), rollouts, config.keep_texts)
        needs = []
    round_number = 0
    while any(needs):
        size = rounds[round_number] if round_number < len(rounds) else config.n
        wanted = [min(need, size) for need in needs]  # the rounds binary search samples too
        allocation = spread(wanted, budget.grant(sum(wanted)))
        if not any(allocation):
            break
        seed = round_seed(trace_seed, round_number)
        requests = [(i, c, seed) for i, c in enumerate(allocation)]
        new = sample_rollouts(completer, trace, requests, config, grader, budget, skipped)
        for index, rollouts in new.items():
            evidence[index] = merge_rollouts(evidence.get(index), rollouts, config.keep_texts)
        needs = [0 if i in skipped else need - given for i, (need, given) in enumerate(zip(needs, allocation))]
        round_number += 1
        if sum(allocation) < sum(wanted):  # the budget ran out
            break

    for index, step in enumerate(trace.steps):
        rollouts = evidence.get(index)
        step.rollouts = rollouts
        if rollouts is None or rollouts.total == 0:
            step.hard_label = step.soft_label = step.label_source = None
        else:
            step.hard_label = int(rollouts.correct >= config.min_successes)
            step.soft_label = rollouts.correct / rollouts.total
            step.label_source = config.label_source
    trace.meta["annotation"] = annotation_meta(config, budget, time.perf_counter() - start, skipped,
                                               first_error=trace.first_error())
    return trace
