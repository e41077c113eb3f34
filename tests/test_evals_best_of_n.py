"""Best-of-N and weighted voting on a small set whose answers are worked out by hand."""

import pytest

from evals.best_of_n import best_of_n_curves, default_ns
from prm.records import Step, Trace


def solution(trace_id, problem, answer, correct, scores, orm):
    return Trace(id=trace_id, problem=problem, steps=[Step(f"step {i}", score=s) for i, s in enumerate(scores)],
                 final_answer=answer, outcome_label=correct, meta={"orm_score": orm})


def hand_set():
    return [
        # Problem P: the one right answer "5" is outvoted, but t1 has the best min/prod/mean.
        #            aggregates (min, prod, last, mean)
        solution("t1", "P", "5", 1, [0.95, 0.9], orm=0.2),   # .9   .855 .9   .925
        solution("t2", "P", "7", 0, [0.99, 0.3], orm=0.9),   # .3   .297 .3   .645
        solution("t3", "P", "7", 0, [0.5, 0.97], orm=0.1),   # .5   .485 .97  .735
        solution("t4", "P", "7", 0, [0.4, 0.4], orm=0.3),    # .4   .16  .4   .4
        # Problem Q: "3" wins the vote; the single best-scored trace u3 is wrong.
        solution("u1", "Q", "3", 1, [0.6, 0.6], orm=0.9),    # .6   .36  .6   .6
        solution("u2", "Q", " 3 ", 1, [0.7, 0.5], orm=0.5),  # .5   .35  .5   .6   (same answer)
        solution("u3", "Q", "4", 0, [0.9, 0.8], orm=0.4),    # .8   .72  .8   .85
        solution("u4", "Q", None, 0, [0.1, 0.1], orm=0.1),   # no answer: takes no part in votes
        # Problem R has too few traces for N=4 and is left out; an unlabelled trace too.
        solution("r1", "R", "1", 1, [0.9], orm=0.9),
        solution("r2", "R", "2", 0, [0.1], orm=0.1),
        solution("x1", "Q", "3", None, [0.9, 0.9], orm=0.9),
    ]


def test_solve_rates_with_all_four_solutions_match_hand_computation():
    curves = best_of_n_curves(hand_set(), ns=[4], repeats=8)
    assert curves["problems"] == 2 and curves["traces"] == 8 and curves["unlabelled_traces"] == 1
    rates = {name: values[0] for name, values in curves["methods"].items()}
    expected = {
        "oracle": 1.0,            # both problems have a right solution
        "majority": 0.5,          # P: "7" 3-1 wrong; Q: "3" 2-1 right
        "orm": 0.5,               # P: t2 (.9) wrong; Q: u1 (.9) right
        "prm_min": 0.5,           # P: t1 right; Q: u3 wrong
        "prm_prod": 0.5,          # P: t1 right; Q: u3 wrong
        "prm_last": 0.0,          # P: t3 (.97) wrong; Q: u3 wrong
        "prm_mean": 0.5,          # P: t1 right; Q: u3 wrong
        "weighted_min": 0.5,      # P: "5" .9 < "7" 1.2; Q: "3" 1.1 > "4" .8
        "weighted_prod": 0.0,     # P: .855 < .942; Q: "3" .71 < "4" .72
        "weighted_last": 0.5,     # P: .9 < 1.67; Q: 1.1 > .8
        "weighted_mean": 0.5,     # P: .925 < 1.78; Q: 1.2 > .85
    }
    assert rates == pytest.approx(expected)
    assert curves["orm_source"] == "meta.orm_score"


def test_with_one_solution_every_method_is_the_same_pick():
    curves = best_of_n_curves(hand_set(), ns=[1, 4], repeats=400, seed=3)
    at_one = {name: values[0] for name, values in curves["methods"].items()}
    assert len(set(at_one.values())) == 1
    # In expectation: P has 1 right of 4, Q 2 of 4.
    assert at_one["oracle"] == pytest.approx((1 / 4 + 2 / 4) / 2, abs=0.05)


def test_curves_are_reproducible_with_a_seed_and_oracle_never_decreases():
    traces = hand_set()
    a = best_of_n_curves(traces, ns=[1, 2, 4], repeats=32, seed=11)
    b = best_of_n_curves(traces, ns=[1, 2, 4], repeats=32, seed=11)
    assert a["methods"] == b["methods"]
    oracle = a["methods"]["oracle"]
    assert oracle == sorted(oracle)


def test_orm_falls_back_to_last_step_score():
    traces = hand_set()
    for trace in traces:
        del trace.meta["orm_score"]
    curves = best_of_n_curves(traces, ns=[4])
    assert curves["orm_source"] == "last step score"
    assert curves["methods"]["orm"] == curves["methods"]["prm_last"]


def test_without_scores_only_oracle_and_majority_remain():
    traces = hand_set()
    for trace in traces:
        trace.meta.clear()
        for step in trace.steps:
            step.score = None
    assert set(best_of_n_curves(traces, ns=[4])["methods"]) == {"oracle", "majority"}


def test_default_sizes_are_powers_of_two_up_to_the_median_group():
    assert default_ns([8, 8, 8]) == [1, 2, 4, 8]
    assert default_ns([5, 6, 5]) == [1, 2, 4, 5]
    assert default_ns([]) == []
