"""The checker-blind subset and the false-alarm rate, on hand-built traces whose answers are
worked out by hand."""

import pytest

from evals.checker_blind import checker_blind_subset, false_alarm_rate, refuted_by
from evals.first_error import first_error_metrics
from prm.errors import RecordError
from prm.records import Step, Trace, Verdict


def trace(id, gold, scores, verdicts):
    """`gold`: gold label per step; `verdicts`: sympy status per step ("-" for no verdict)."""
    steps = [Step(text=f"s{i}", score=score,
                  verdicts=[] if status == "-" else [Verdict(checker="sympy", status=status)])
             for i, (score, status) in enumerate(zip(scores, verdicts))]
    first = gold.index(0) if 0 in gold else -1
    return Trace(id=id, problem=f"p{id}", steps=steps,
                 meta={"gold_labels": list(gold), "gold_first_error": first})


TRACES = [
    # flawed, sympy refutes its bad step: visible to the checker, left out
    trace("seen", [1, 0], [0.9, 0.1], ["verified", "refuted"]),
    # flawed, sympy passes every step (a wrong quantity with right arithmetic): blind, kept
    trace("blind-caught", [1, 0, 0], [0.9, 0.2, 0.1], ["verified", "verified", "unknown"]),
    trace("blind-missed", [0, 0], [0.8, 0.7], ["verified", "-"]),
    # clean traces: kept whatever the checker said
    trace("clean-quiet", [1, 1], [0.9, 0.8], ["verified", "verified"]),
    trace("clean-alarm", [1, 1, 1], [0.9, 0.3, 0.9], ["verified", "-", "-"]),
    trace("clean-refuted", [1, 1], [0.6, 0.7], ["refuted", "verified"]),  # a false refutation
]


def test_blind_subset_keeps_unrefuted_flawed_traces_and_every_clean_trace():
    blind = checker_blind_subset(TRACES, "sympy")
    assert [t.id for t in blind] == ["blind-caught", "blind-missed", "clean-quiet", "clean-alarm",
                                     "clean-refuted"]


def test_first_error_f1_on_blind_subset_by_hand():
    # threshold 0.5: blind-caught predicts 1 (gold 1, right); blind-missed predicts -1 (gold 0,
    # wrong): error accuracy 1/2. Clean: quiet right, alarm wrong (predicts 1), refuted right:
    # correct accuracy 2/3. F1 = 2 (1/2)(2/3) / (1/2 + 2/3) = 4/7.
    row = first_error_metrics(checker_blind_subset(TRACES, "sympy"), 0.5)["overall"]
    assert (row["error_traces"], row["correct_traces"]) == (2, 3)
    assert row["f1"] == pytest.approx(4 / 7)


def test_a_refutation_by_another_checker_does_not_hide_a_trace_from_sympy():
    z3_only = trace("z3", [1, 0], [0.9, 0.9], ["verified", "verified"])
    z3_only.steps[1].verdicts.append(Verdict(checker="z3", status="refuted"))
    assert refuted_by(z3_only) and not refuted_by(z3_only, "sympy")
    assert [t.id for t in checker_blind_subset([z3_only], "sympy")] == ["z3"]
    assert checker_blind_subset([z3_only]) == []  # None: any checker's refutation counts


def test_an_unchecked_flawed_trace_is_an_error_not_a_blind_trace():
    unchecked = trace("never-checked", [1, 0], [0.9, 0.1], ["-", "-"])
    with pytest.raises(RecordError, match="never-checked"):
        checker_blind_subset([unchecked], "sympy")


def test_false_alarm_rate_counts_clean_traces_with_any_low_step():
    # clean traces' lowest scores: 0.8, 0.3, 0.6. Below 0.5: one of three; below 0.7: two.
    assert false_alarm_rate(TRACES, 0.5) == {"threshold": 0.5, "correct_traces": 3, "alarms": 1,
                                             "rate": pytest.approx(1 / 3)}
    assert false_alarm_rate(TRACES, 0.7)["alarms"] == 2
    assert false_alarm_rate(TRACES[:3], 0.5)["rate"] is None  # no clean trace
