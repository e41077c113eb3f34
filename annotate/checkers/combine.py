"""Combining checker verdicts with Monte Carlo (or any other) step labels.

Two ways, both reporting what they did as counts:

- `override_refuted`: a step a checker refutes is bad, whatever the rollouts said. Its hard
  label becomes 0 (a soft label, if any, 0.0) and its label source `checker:<name>`.
  Rollout counts stay on the step, so nothing Monte Carlo found is lost.
- `consensus_filter`: keep only the traces where the labels and the checkers agree on the
  first error (the consensus filter of Qwen's "The Lessons of Developing Process Reward
  Models in Mathematical Reasoning", with a symbolic checker in the judge's place). The
  labels' first error is `Trace.first_error()` (-1 if every step is good); the checkers'
  is the first refuted step (-1 if none). A checker only sees arithmetic and algebra, so
  a trace whose first error is of another kind is dropped: expect a strict filter.

Run the filter before the override (the override makes the labels agree by construction).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from prm import agreement
from prm.records import Trace


def add_verdicts(traces: list[Trace], checker) -> list[Trace]:
    """Check every step of `traces` in this process with `checker` (a `Checker`), replacing
    any earlier verdict of the same checker; returns the traces, changed in place. For a few
    hundred traces (the demo, benchmarks); `prm check` runs worker processes for more."""
    for trace in traces:
        for i, step in enumerate(trace.steps):
            step.verdicts = [v for v in step.verdicts if v.checker != checker.name]
            step.verdicts.append(checker.check(trace.problem, trace.step_texts[:i], step.text))
    return traces


def _refuting(step, checkers: list[str] | None):
    return [v for v in step.verdicts
            if v.status == "refuted" and (checkers is None or v.checker in checkers)]


def checker_first_error(trace: Trace, checkers: list[str] | None = None) -> int:
    """0-based index of the first step a checker refutes, -1 if none is refuted."""
    return agreement.checker_first_error(trace, checkers)


@dataclass
class OverrideCounts:
    refuted_steps: int = 0  # steps with at least one refuting verdict
    overridden: int = 0  # of those, labels changed to 0 (from 1 or unknown)
    from_good: int = 0  # ... that were labelled 1
    from_unknown: int = 0  # ... that had no label
    already_bad: int = 0  # refuted steps already labelled 0
    traces_changed: int = 0

    def as_dict(self) -> dict:
        return asdict(self)


def override_refuted(traces: list[Trace], checkers: list[str] | None = None) -> OverrideCounts:
    """Label every step refuted by one of `checkers` (all checkers if None) as bad, in place."""
    counts = OverrideCounts()
    for trace in traces:
        changed = False
        for step in trace.steps:
            refuting = _refuting(step, checkers)
            if not refuting:
                continue
            counts.refuted_steps += 1
            if step.hard_label == 0:
                counts.already_bad += 1
            else:
                counts.overridden += 1
                counts.from_good += step.hard_label == 1
                counts.from_unknown += step.hard_label is None
                changed = True
            step.hard_label = 0
            if step.soft_label is not None:
                step.soft_label = 0.0
            step.label_source = f"checker:{refuting[0].checker}"
        counts.traces_changed += changed
    return counts


@dataclass
class ConsensusCounts:
    kept: int = 0
    dropped: int = 0
    agree_no_error: int = 0  # kept: no error per labels, nothing refuted
    agree_on_step: int = 0  # kept: both put the first error at the same step
    dropped_unlabeled: int = 0  # the labels do not tell the first error (unknown labels)
    dropped_checker_earlier: int = 0  # a checker refutes a step before the labels' first error
    dropped_checker_later: int = 0  # the checkers find the first error later, or not at all

    def as_dict(self) -> dict:
        return asdict(self)


def consensus_filter(traces: list[Trace], checkers: list[str] | None = None
                     ) -> tuple[list[Trace], ConsensusCounts]:
    """The traces whose labels and checkers agree on the first error, and the counts."""
    kept, counts = [], ConsensusCounts()
    for trace in traces:
        labelled = trace.first_error()
        found = checker_first_error(trace, checkers)
        if labelled is None:
            counts.dropped_unlabeled += 1
        elif labelled == found:
            kept.append(trace)
            if found == -1:
                counts.agree_no_error += 1
            else:
                counts.agree_on_step += 1
            continue
        elif found != -1 and (labelled == -1 or found < labelled):
            counts.dropped_checker_earlier += 1
        else:
            counts.dropped_checker_later += 1
    counts.kept = len(kept)
    counts.dropped = len(traces) - len(kept)
    return kept, counts
