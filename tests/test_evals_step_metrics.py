"""Step-level metrics against hand computations and scikit-learn; thresholds from validation only."""

import random

import numpy as np
import pytest
from sklearn.calibration import calibration_curve
from sklearn.metrics import accuracy_score, f1_score

from evals.gold import attach_gold, gold_first_error, gold_step_labels
from evals.report import EvalConfig, evaluate
from evals.step_metrics import (calibration_table, choose_threshold, expected_calibration_error,
                                split_by_id, step_metrics, step_pairs)
from prm.errors import RecordError
from prm.records import Step, Trace


def scored(trace_id, scores, gold, **meta):
    return Trace(id=trace_id, problem="p", steps=[Step(f"s{i}", score=s) for i, s in enumerate(scores)],
                 meta={"gold_labels": gold, **meta})


def hand_set():
    # (score, gold) pairs: good 0.9 0.8 0.6 0.4 0.7; bad 0.3 0.2 0.1 0.45; one unknown gold left out.
    return [scored("a", [0.9, 0.8, 0.3], [1, 1, 0]), scored("b", [0.6, 0.4], [1, 1]),
            scored("c", [0.7, 0.2, 0.1], [1, 0, 0]), scored("d", [0.45, 0.9], [0, None])]


def test_step_metrics_match_hand_computation():
    m = step_metrics(hand_set(), threshold=0.5, bins=2)
    assert m["steps"] == 9 and m["bad_steps"] == 4
    # flagged (score < 0.5): 0.3 0.2 0.1 0.45 (bad) and 0.4 (good): TP 4, FP 1, FN 0, TN 4
    assert m["accuracy"] == pytest.approx(8 / 9)
    assert m["precision"] == pytest.approx(4 / 5)
    assert m["recall"] == pytest.approx(1.0)
    assert m["f1"] == pytest.approx(8 / 9)
    assert m["balanced_accuracy"] == pytest.approx((1 + 4 / 5) / 2)
    # AUROC: of the 5 x 4 (good, bad) pairs only (0.4, 0.45) is ordered wrongly
    assert m["auroc"] == pytest.approx(19 / 20)
    # AP of finding bad steps, ranked by rising score: hits at ranks 1, 2, 3, 5
    assert m["average_precision"] == pytest.approx((1 + 1 + 1 + 4 / 5) / 4)
    assert m["brier"] == pytest.approx((0.01 + 0.04 + 0.16 + 0.36 + 0.09 + 0.09 + 0.04 + 0.01 + 0.2025) / 9)
    # ECE, 2 bins: [0, .5) mean score .29, good 1/5; [.5, 1] mean .75, good 1
    assert m["ece"] == pytest.approx(5 / 9 * 0.09 + 4 / 9 * 0.25)
    low, high = m["calibration"]
    assert (low["count"], high["count"]) == (5, 4)
    assert low["mean_predicted"] == pytest.approx(0.29) and low["fraction_good"] == pytest.approx(0.2)


def test_calibration_table_agrees_with_scikit_learn():
    rng = np.random.default_rng(1)
    probs = rng.random(500)
    labels = (rng.random(500) < probs).astype(int)
    table = calibration_table(probs, labels, bins=10)
    prob_true, prob_pred = calibration_curve(labels, probs, n_bins=10, strategy="uniform")
    filled = [row for row in table if row["count"]]
    assert [row["fraction_good"] for row in filled] == pytest.approx(prob_true)
    assert [row["mean_predicted"] for row in filled] == pytest.approx(prob_pred)
    assert sum(row["count"] for row in table) == 500
    by_hand = sum(r["count"] / 500 * abs(r["mean_predicted"] - r["fraction_good"]) for r in filled)
    assert expected_calibration_error(table) == pytest.approx(by_hand)


def test_threshold_is_chosen_on_validation_and_only_applied_to_test():
    # Validation separates at 0.35; test would be best split at 0.65.
    val = [scored(f"v{i}", [0.1, 0.2, 0.3, 0.4, 0.5], [0, 0, 0, 1, 1]) for i in range(3)]
    test = [scored(f"t{i}", [0.5, 0.6, 0.7, 0.8], [0, 0, 1, 1]) for i in range(3)]
    assert choose_threshold(val) == pytest.approx(0.35)
    assert choose_threshold(test) == pytest.approx(0.65)
    metrics, measured_on = evaluate(test, EvalConfig(), val_traces=val)
    assert metrics["threshold"]["step"] == pytest.approx(0.35)
    assert metrics["threshold"]["chosen_on"] == "validation set"
    assert measured_on is test
    # at 0.35 no test step is flagged: half the test steps are right
    assert metrics["step"]["accuracy"] == pytest.approx(0.5)
    assert metrics["step"]["steps"] == 12


def test_without_validation_the_input_is_split_by_trace_id_and_measured_on_the_other_half():
    rng = random.Random(3)
    traces = []
    for i in range(60):
        gold = [rng.choice([0, 1]) for _ in range(4)]
        traces.append(scored(f"trace-{i}", [min(1, max(0, g * 0.6 + rng.random() * 0.5)) for g in gold], gold))
    val, test = split_by_id(traces)
    metrics, measured_on = evaluate(traces, EvalConfig())
    assert metrics["threshold"]["chosen_on"] == "split by trace id"
    assert [t.id for t in measured_on] == [t.id for t in test]
    assert metrics["threshold"]["step"] == pytest.approx(choose_threshold(val))
    assert metrics["step"]["steps"] == 4 * len(test)


def test_split_by_id_is_disjoint_stable_and_independent_of_order():
    traces = [scored(f"id-{i}", [0.5], [1]) for i in range(200)]
    val, test = split_by_id(traces, 0.3)
    shuffled = traces[::-1]
    val2, test2 = split_by_id(shuffled, 0.3)
    assert {t.id for t in val} == {t.id for t in val2}
    assert not {t.id for t in val} & {t.id for t in test}
    assert len(val) + len(test) == 200 and 40 <= len(val) <= 80


@pytest.mark.parametrize("objective", ["accuracy", "balanced_accuracy", "f1"])
def test_chosen_threshold_is_as_good_as_any_threshold_on_a_fine_grid(objective):
    rng = np.random.default_rng(7)
    traces = []
    for i in range(40):
        gold = rng.integers(0, 2, size=5).tolist()
        traces.append(scored(f"x{i}", np.clip(np.array(gold) * 0.3 + rng.random(5) * 0.7, 0, 1).tolist(), gold))
    scores, labels = step_pairs(traces)

    def value(t):
        bad, flagged = 1 - labels, (scores < t).astype(int)
        if objective == "accuracy":
            return accuracy_score(bad, flagged)
        if objective == "f1":
            return f1_score(bad, flagged, zero_division=0)
        return (flagged[bad == 1].mean() + (1 - flagged[bad == 0]).mean()) / 2

    # every distinct outcome of "score < t" on a grid finer than the gaps between scores
    grid = np.unique(np.searchsorted(np.sort(scores), np.linspace(0, 1.01, 2001)))
    thresholds = [np.sort(scores)[i] if i < len(scores) else 1.01 for i in grid]
    best = choose_threshold(traces, objective=objective)
    assert value(best) >= max(value(t) for t in thresholds) - 1e-12


def test_gold_from_a_label_source_or_another_file():
    trace = Trace(id="t", problem="p", steps=[Step("a", hard_label=1, label_source="human", score=0.9),
                                              Step("b", hard_label=0, label_source="monte-carlo", score=0.2),
                                              Step("c", hard_label=0, label_source="human", score=0.1)])
    assert gold_step_labels(trace, "human") == [1, None, 0]
    assert gold_step_labels(trace, "labels") == [1, 0, 0]
    assert gold_first_error(trace, "human") is None  # unknown before the first known 0
    twin = Trace(id="t", problem="p", steps=[Step("a", 1), Step("b", 1), Step("c", 0)], outcome_label=0)
    assert attach_gold([trace], [twin]) == 1
    assert trace.meta["gold_labels"] == [1, 1, 0] and trace.meta["gold_first_error"] == 2
    assert trace.outcome_label == 0


def test_gold_labels_of_the_wrong_length_name_the_field():
    trace = scored("bad", [0.5, 0.5], [1])
    with pytest.raises(RecordError, match="gold_labels"):
        step_metrics([trace], 0.5)
