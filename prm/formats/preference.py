"""Step-level preference pairs from Monte Carlo labels: Step-DPO and TRL DPO rows.

Monte Carlo labelling (`prm annotate --method mc --keep-texts`) samples continuations from the
prefix ending at each step and keeps their texts in `Step.rollouts.texts`. Two continuations of
the same prefix, one that reached the reference answer and one that did not, are a preference
pair a policy can train on with DPO. Two ways to pair:

- `rollouts` (default): at every prefix with kept texts, a continuation that reached the answer
  (chosen) against one that did not (rejected).
- `first-error`: a trace labelled wrong from step k on is rejected from step k, against the
  continuations sampled from the prefix before it (step k-1's rollouts) that reached the answer
  (chosen). A first error at step 0 has no sampled alternatives (rollouts start after a step)
  and gives no pair.

The value of a next step is the Monte Carlo estimate of reaching the answer after it: for a
sampled continuation, the share of the prefix's continuations that begin with the same first
step and reached the answer; for the trace's own step, its soft label (its hard label when it
has none). A pair's margin is value(chosen step) - value(rejected step); pairs whose margin is
not above 0 and at least `min_margin` are left out (so are pairs whose first steps are the same
text, which tell a step-level learner nothing). `pairs_per_prefix` caps the pairs of a prefix,
taking continuations in sampling order with no continuation used twice; traces that share a
prefix (a corrupted copy of a solution, say) share its cap, and a pair already taken from
another trace is not repeated.

Which continuation reached the answer is decided by `is_correct(answer, reference)` on the
extracted answers stored in `Rollouts.answers` (the app passes `annotate.grading.Grader`'s
`is_equivalent`, the grader that counted `Rollouts.correct`).

Rows:
- `step-dpo`: the fields of Step-DPO's `xinlai/Math-Step-DPO-10K`: dataset, prompt,
  initial_reason_steps (the prefix, each step followed by a newline), chosen and rejected (the
  next step only), full_chosen and full_rejected (the whole continuation), answer. Step-DPO's
  trainer reads prompt + initial_reason_steps as the prompt and chosen/rejected as completions.
- `trl-dpo`: TRL's standard preference format: prompt (the problem, a newline, then the prefix
  steps, each followed by a newline), chosen and rejected (the whole continuations). It loads
  with `datasets` and trains with `trl.DPOTrainer` as it is.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from prm.formats.base import WriteReport
from prm.records import Trace

PAIRINGS = ("rollouts", "first-error")
PREFERENCE_FORMATS = ("step-dpo", "trl-dpo")


@dataclass
class Continuation:
    """One way to go on from a prefix: its text, its first step, and the value of that step."""

    text: str
    value: float
    reached_answer: bool

    @property
    def first_step(self) -> str:
        return first_line(self.text)


@dataclass
class PreferencePair:
    """Two continuations of the same prefix of one trace; `chosen` is the better."""

    trace: Trace
    prefix_length: int  # steps of the trace before the continuations (0: the bare problem)
    chosen: Continuation
    rejected: Continuation

    @property
    def margin(self) -> float:
        return self.chosen.value - self.rejected.value

    @property
    def prefix_steps(self) -> list[str]:
        return self.trace.step_texts[:self.prefix_length]


def first_line(text: str) -> str:
    """The first non-empty line of a continuation, stripped (its first step)."""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def preference_pairs(traces: list[Trace], is_correct: Callable[[str | None, str | None], bool], *,
                     pairing: str = "rollouts", pairs_per_prefix: int = 1, min_margin: float = 0.0,
                     report: WriteReport | None = None) -> list[PreferencePair]:
    """The preference pairs of `traces` (see the module docstring). Traces that give none are
    counted in `report.dropped` with the reason."""
    if pairing not in PAIRINGS:
        raise ValueError(f"pairing must be one of {PAIRINGS}, got {pairing!r}")
    if pairs_per_prefix < 1:
        raise ValueError(f"pairs per prefix must be at least 1, got {pairs_per_prefix}")
    report = report if report is not None else WriteReport()
    pairs: list[PreferencePair] = []
    taken: Counter = Counter()  # pairs per (problem, prefix): traces may share a prefix
    seen: set = set()
    for trace in traces:
        if trace.reference_answer is None:
            report.dropped.append(f"{trace.id}: no reference answer to grade its continuations against")
            continue
        if not any(s.rollouts is not None and s.rollouts.texts for s in trace.steps):
            report.dropped.append(f"{trace.id}: no rollout texts (label with `prm annotate --keep-texts`)")
            continue
        found = (_rollout_pairs(trace, is_correct, pairs_per_prefix) if pairing == "rollouts"
                 else _first_error_pairs(trace, is_correct, pairs_per_prefix))
        kept = []
        for pair in found:
            prefix = (trace.problem, tuple(pair.prefix_steps))
            key = (prefix, pair.chosen.text, pair.rejected.text)
            if (pair.margin > 0 and pair.margin >= min_margin and pair.chosen.first_step != pair.rejected.first_step
                    and taken[prefix] < pairs_per_prefix and key not in seen):
                taken[prefix] += 1
                seen.add(key)
                kept.append(pair)
        if not kept:
            report.dropped.append(f"{trace.id}: no pair " + (
                "(every prefix's continuations all reached the answer or all missed it)" if not found
                else f"with a margin above 0 and at least {min_margin} between different first steps"))
        pairs += kept
    return pairs


def _continuations(trace: Trace, index: int, is_correct) -> list[Continuation]:
    """The sampled continuations of the prefix ending at step `index`, valued by first step."""
    rollouts = trace.steps[index].rollouts
    if rollouts is None or not rollouts.texts or len(rollouts.texts) != len(rollouts.answers):
        return []
    reached = [bool(is_correct(answer, trace.reference_answer)) for answer in rollouts.answers]
    tally: dict[str, list[int]] = {}
    for text, ok in zip(rollouts.texts, reached):
        counts = tally.setdefault(first_line(text), [0, 0])
        counts[0] += ok
        counts[1] += 1
    return [Continuation(text.strip(), tally[first_line(text)][0] / tally[first_line(text)][1], ok)
            for text, ok in zip(rollouts.texts, reached)]


def _rollout_pairs(trace: Trace, is_correct, most: int) -> list[PreferencePair]:
    pairs = []
    for index in range(len(trace.steps)):
        continuations = _continuations(trace, index, is_correct)
        good = [c for c in continuations if c.reached_answer]
        bad = [c for c in continuations if not c.reached_answer]
        pairs += [PreferencePair(trace, index + 1, chosen, rejected)
                  for chosen, rejected in list(zip(good, bad))[:most]]
    return pairs


def _first_error_pairs(trace: Trace, is_correct, most: int) -> list[PreferencePair]:
    error = trace.first_error()
    if error is None or error <= 0:
        return []
    step = trace.steps[error]
    value = step.soft_label if step.soft_label is not None else float(step.hard_label)
    rejected = Continuation("\n".join(trace.step_texts[error:]), value, False)
    good = [c for c in _continuations(trace, error - 1, is_correct) if c.reached_answer]
    return [PreferencePair(trace, error, chosen, rejected) for chosen in good[:most]]


def _prefix_text(steps: list[str]) -> str:
    return "".join(step + "\n" for step in steps)


def step_dpo_row(pair: PreferencePair) -> dict[str, Any]:
    """A row with the fields of Step-DPO's Math-Step-DPO-10K."""
    return {"dataset": str(pair.trace.meta.get("source") or "prm-toolkit"),
            "prompt": pair.trace.problem,
            "initial_reason_steps": _prefix_text(pair.prefix_steps),
            "chosen": pair.chosen.first_step, "rejected": pair.rejected.first_step,
            "full_chosen": pair.chosen.text, "full_rejected": pair.rejected.text,
            "answer": pair.trace.reference_answer}


def trl_dpo_row(pair: PreferencePair) -> dict[str, Any]:
    """A row of TRL's standard preference format (prompt, chosen, rejected)."""
    return {"prompt": pair.trace.problem.strip() + "\n" + _prefix_text(pair.prefix_steps),
            "chosen": pair.chosen.text, "rejected": pair.rejected.text}


ROW_MAKERS = {"step-dpo": step_dpo_row, "trl-dpo": trl_dpo_row}


def preference_rows(pairs: list[PreferencePair], format: str) -> list[dict[str, Any]]:
    """The rows of `pairs` in the named format (`step-dpo` or `trl-dpo`)."""
    return [ROW_MAKERS[format](pair) for pair in pairs]
