"""Binary search for the first error (OmegaPRM, arXiv 2406.06592).

Per-step Monte Carlo spends N completions on every step. If a correct completion from a
prefix means every step of that prefix is fine, and no correct completion from a prefix
means the error is in it, the first error can be found by bisection with O(k log n)
completer calls: roll out k completions from the middle prefix; if any reaches the answer
the first error is later, otherwise it is here or earlier.

Labels written (label_source "binary-search"):

- steps before the found first error: hard 1. Only steps that were probed (or had rollouts
  in the input) get a soft label, the fraction of their completions that reached the answer;
  the others get soft None (no evidence was collected for them, and nothing is made up).
  A probe stops at its first batch with a success (see `AnnotateConfig.probe_first`), so a
  positive step's soft label is a sequential estimate, biased upwards; use per-step Monte
  Carlo when calibrated soft labels matter.
- the first error: hard 0, soft 0.0 (its probe ran all k completions, none reached the answer).
- later steps: hard 0 by default, or None with `after_error="unknown"`; a later step that
  was probed keeps the labels of its own evidence.
- a search cut short by the budget, or by a prefix the completer refuses (longer than its
  context), leaves the steps between the last success and the last failure unknown (None).

Rollouts already collected are reused: a prefix is never probed twice, and rollouts in the
input steps count as evidence (`reuse_rollouts`). With `skip_correct` (default) a trace
whose own final answer equals the reference is labelled all positive with no rollout.
"""

from __future__ import annotations

import copy
import time
from typing import TYPE_CHECKING

from annotate.config import AnnotateConfig
from annotate.rollouts import (Budget, annotation_meta, derive_seed, existing_rollouts,
                               merge_rollouts, round_seed, rollout_rounds, sample_rollouts)
from prm.records import Rollouts, Trace

if TYPE_CHECKING:
    from annotate.grading import Grader
    from completers.base import Completer


class _Prober:
    """Probes prefixes (k completions, stopping at the first batch with a success), keeping
    all evidence and respecting the budget."""

    def __init__(self, trace: Trace, completer: "Completer", config: AnnotateConfig, grader: "Grader",
                 budget: Budget, evidence: dict[int, Rollouts]):
        self.trace, self.completer, self.config, self.grader = trace, completer, config, grader
        self.budget, self.evidence = budget, evidence
        self.skipped: dict[int, str] = {}
        self.seed = derive_seed(config.seed, trace.id)
        self.first = rollout_rounds(config)[0]
        self.probed: list[int] = []
        self.batches: dict[int, int] = {}  # rounds sampled so far from each prefix

    def reaches_answer(self, index: int, first_round: bool = False) -> bool | str | None:
        """True if some completion from the prefix ending at step `index` reaches the answer,
        False if none of k does (with `first_round`: none of the first round's), None if the
        budget ran out before that was known, REFUSED if the completer refuses the prefix
        (e.g. longer than the model's context). Asked again, a probe goes on where it stopped."""
        if index not in self.probed:
            self.probed.append(index)
        while True:
            rollouts = self.evidence.get(index)
            have = rollouts.total if rollouts else 0
            if rollouts is not None and rollouts.correct > 0:
                return True
            if have >= (min(self.first, self.config.n) if first_round else self.config.n):
                return False
            wanted = min(self.first, self.config.n) - have if have < self.first else self.config.n - have
            granted = self.budget.grant(wanted)
            if granted == 0:
                return None
            batch = self.batches.get(index, 0)
            new = sample_rollouts(self.completer, self.trace, [(index, granted, round_seed(self.seed, batch))],
                                  self.config, self.grader, self.budget, self.skipped)
            if index not in new:
                return REFUSED
            self.evidence[index] = merge_rollouts(rollouts, new[index], self.config.keep_texts)
            self.batches[index] = batch + 1


REFUSED = "refused"


def probe_point(lo: int, top: int) -> int:
    """Where to probe when the first error is one of lo..top-1 or none before `top`: a third
    of the way in, so that at most ceil(log(top - lo + 1) / log(1.5)) probes settle the search.

    Why not the midpoint: a probe clears the steps before it only by OmegaPRM's assumption (a
    prefix that reaches the answer holds no error), which Monte Carlo's noisy estimates of
    small chances break ([0, 0, 1, 0] successes of 8: Monte Carlo's first error is step 0,
    a search trusting step 2 finds step 3). Probing early leans less on it, and a small
    model's traces are mostly wrong from an early step. On bench/annotate.py's traces of 6+
    steps, with the same completions (each probe decided by its first round): a third of the
    way in, 0.23 of Monte Carlo's rollouts and its first error on 9 of 9; the earliest point
    within bisection's worst case, 0.25 and 8 of 9; the midpoint, 0.25 and 8 of 9."""
    return lo + (top - lo - 1) // 3


def find_first_error(prober: _Prober, n_steps: int) -> tuple[int, int]:
    """Search for the first step whose prefix reaches no answer, by bisection leaning to the
    front (`probe_point`), deciding each probe by its first round and confirming only the end.

    A probe whose first round reaches the answer clears its step and every step before it, as
    in OmegaPRM. One whose first round does not makes its step a suspect: the search goes on
    before it, and only when every step before the lowest suspect is cleared is that suspect
    sampled in full (its later rounds). If none of its n completions reaches the answer, it is
    the first error; if one does, it is cleared and the search goes on after it. So a suspect
    that a lower one replaces costs one round, not n: on bench/annotate.py's traces of 6+
    steps (most wrong from an early step) confirming every failing probe in full cost 0.37 of
    Monte Carlo's rollouts (bench/README.md). The first error found has none of its n
    completions reaching the answer, and every step before it some, as with Monte Carlo's
    first zero (the same completions: `rollout_rounds`).

    Returns (lo, hi): every step < lo is known good, the step at hi is known bad (hi ==
    n_steps: no bad step found). lo == hi when the search finished; the first error is then
    lo (or none when lo == n_steps). A prefix the completer refuses is taken as the end of
    what can be probed (longer prefixes make longer prompts): the search goes on below it.
    """
    lo, end = 0, n_steps  # prefixes from `end` on cannot be probed
    suspects: list[int] = []  # steps whose first round reached no answer, unconfirmed
    while True:
        top = min([end, *suspects])
        if lo < top:
            mid = probe_point(lo, top)
            result = prober.reaches_answer(mid, first_round=True)
            if result is None:
                return lo, n_steps
            if result == REFUSED:
                end = mid
            elif result:
                lo = mid + 1
            else:
                suspects.append(mid)
            continue
        if not suspects or lo != min(suspects):  # the end of what can be probed
            return lo, n_steps
        result = prober.reaches_answer(lo)  # every step before the lowest suspect is cleared: settle it
        if result is None:
            return lo, n_steps
        if not result:
            return lo, lo
        suspects.remove(lo)
        lo += 1


def label_trace(trace: Trace, completer: "Completer", config: AnnotateConfig, grader: "Grader") -> Trace:
    """A copy of `trace` labelled by binary search, with rollouts and `meta["annotation"]`."""
    start = time.perf_counter()
    trace = copy.deepcopy(trace)
    n_steps = len(trace.steps)
    budget = Budget(config.max_rollouts, config.max_tokens, config.max_new_tokens)
    evidence = existing_rollouts(trace, config)

    if config.skip_correct and trace.final_answer is not None \
            and grader.is_equivalent(trace.final_answer, trace.reference_answer):
        _write_labels(trace, evidence, config, lo=n_steps, hi=n_steps)
        trace.meta["annotation"] = annotation_meta(config, budget, time.perf_counter() - start, {},
                                                   first_error=-1, probed=[],
                                                   shortcut="final answer equals the reference")
        return trace

    prober = _Prober(trace, completer, config, grader, budget, evidence)
    lo, hi = find_first_error(prober, n_steps)
    _write_labels(trace, evidence, config, lo, hi)
    first_error = (lo if lo < n_steps else -1) if lo == hi else None
    trace.meta["annotation"] = annotation_meta(config, budget, time.perf_counter() - start, prober.skipped,
                                               first_error=first_error, probed=prober.probed)
    return trace


def _write_labels(trace: Trace, evidence: dict[int, Rollouts], config: AnnotateConfig, lo: int, hi: int) -> None:
    for index, step in enumerate(trace.steps):
        rollouts = evidence.get(index)
        step.rollouts = rollouts
        has_evidence = rollouts is not None and rollouts.total > 0
        if index < lo:
            hard = 1
        elif index == hi:
            hard = 0
        elif index > hi:
            hard = 0 if config.after_error == "negative" else None
            if has_evidence:
                hard = int(rollouts.correct > 0)
        else:  # lo <= index < hi: the budget ran out before the search got here
            hard = 1 if has_evidence and rollouts.correct > 0 else None
        step.hard_label = hard
        step.soft_label = rollouts.correct / rollouts.total if has_evidence else None
        step.label_source = config.label_source if hard is not None or has_evidence else None
