"""Where a learned verifier has to earn its keep: the errors a checker cannot see, and the
alarms a verifier raises on solutions that have no error.

- `checker_blind_subset(traces, checker)`: the flawed traces on which `checker` refutes no
  step, together with every clean trace. A checker (sympy, z3, Lean) catches the errors it
  can read, such as wrong arithmetic; what it passes over (a wrong quantity copied from the
  problem, a wrong operation with correct arithmetic) only a learned verifier can catch.
  ProcessBench-style first-error F1 on this subset (`evals.first_error.first_error_metrics`)
  measures exactly that, and the clean traces keep the measure honest: a verifier that
  flags every trace gets no credit for them.
- `false_alarm_rate(traces, threshold)`: the share of fully correct traces (gold first
  error -1) with at least one step scored below `threshold`. Take the threshold from
  validation traces (`choose_first_error_threshold`), never from the traces measured. A
  verifier that cries wolf on correct solutions drags min-aggregated best-of-N toward
  majority vote however good its step AUROC is.

The checker's verdicts are read from the steps (`Step.verdicts`, as written by `prm check`
or `annotate.checkers`), so the subset is computed on your own data with your own checker:

    prm check traces.jsonl checked.jsonl --checkers sympy     # verdicts on every step
    blind = checker_blind_subset(read_traces("checked.jsonl"), "sympy")
    first_error_metrics(blind, threshold)["overall"]["f1"]
"""

from __future__ import annotations

from prm.errors import RecordError
from prm.records import Trace

from evals.gold import DEFAULT_GOLD, gold_first_error


def refuted_by(trace: Trace, checker: str | None = None) -> bool:
    """True when `checker` (any checker if None) refutes at least one step of `trace`."""
    return any(v.status == "refuted" and (checker is None or v.checker == checker)
               for step in trace.steps for v in step.verdicts)


def _checked_by(trace: Trace, checker: str | None) -> bool:
    return any(checker is None or v.checker == checker for step in trace.steps for v in step.verdicts)


def checker_blind_subset(traces: list[Trace], checker: str | None = None,
                         gold: str = DEFAULT_GOLD) -> list[Trace]:
    """The flawed traces (gold first error >= 0) on which `checker` refutes no step, and the
    clean traces (gold first error -1), in input order. Traces with unknown gold are left out.

    `checker` is a checker name as stored in `Verdict.checker` ("sympy", "z3", ...); None
    counts a refutation by any checker. A flawed trace that `checker` never looked at would
    look blind without being so, so every flawed trace must carry at least one of its
    verdicts (a `RecordError` names the first that does not).
    """
    kept = []
    for trace in traces:
        first = gold_first_error(trace, gold)
        if first is None:
            continue
        if first == -1:
            kept.append(trace)
            continue
        if not _checked_by(trace, checker):
            raise RecordError(f"trace {trace.id!r} has no verdict from checker {checker or 'any'!r}: run the "
                              "checker first (prm check) so that a blind trace is not confused with an unchecked one",
                              field="steps.verdicts")
        if not refuted_by(trace, checker):
            kept.append(trace)
    return kept


def false_alarm_rate(traces: list[Trace], threshold: float, gold: str = DEFAULT_GOLD) -> dict:
    """Among fully correct traces (gold first error -1, every step scored), the share with at
    least one step scored below `threshold`.

    Returns {"threshold", "correct_traces", "alarms", "rate"} ("rate" None when there is no
    fully correct scored trace).
    """
    clean = [t for t in traces if gold_first_error(t, gold) == -1 and all(s.score is not None for s in t.steps)]
    alarms = sum(any(s.score < threshold for s in t.steps) for t in clean)
    return {"threshold": float(threshold), "correct_traces": len(clean), "alarms": alarms,
            "rate": alarms / len(clean) if clean else None}
