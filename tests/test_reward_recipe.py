"""bench/train_recipe.py's metrics (recall at a good-step accuracy, first-error F1) and its notes-only view."""

import importlib.util
from pathlib import Path

import pytest

from prm.records import Step, Trace

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("train_recipe", ROOT / "bench" / "train_recipe.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scored(i, labels, scores):
    return Trace(id=f"t{i}", problem="p", steps=[Step(f"s{j}", hard_label=l, score=s)
                                                 for j, (l, s) in enumerate(zip(labels, scores))])


def test_recall_at_good_step_accuracy_and_first_error_f1_by_hand(recipe):
    # 10 good steps scored 0.91..1.00 plus 0.05 (one good step looks bad), 4 bad steps 0.1, 0.2, 0.3, 0.95
    traces = [scored(0, [1, 1, 0, 0], [0.99, 0.98, 0.1, 0.2]),      # first error found (step 2)
              scored(1, [1, 0, 0], [0.97, 0.3, 0.95]),              # first error found (step 1)
              scored(2, [1, 1, 1], [0.96, 0.95, 0.94]),             # no error, none predicted
              scored(3, [1, 1, 1, 1], [0.93, 0.05, 0.92, 0.91])]    # no error, one predicted: wrong
    m = recipe.evaluate(traces)
    assert m["steps"] == 14
    # keeping 90% of the 10 good steps good allows one good step below the threshold (0.05):
    # threshold 0.3 then catches 3 of 4 bad steps; at 95% no good step may fall, so only 0.05 < t is out
    assert m["recall_at_good90"] == pytest.approx(0.75)
    assert m["threshold_at_good90"] == pytest.approx(0.3)
    assert m["recall_at_good95"] == pytest.approx(0.0)
    # ProcessBench F1 at 0.5: 2/2 erroneous right, 1/2 correct right -> 2 * 1 * 0.5 / 1.5
    assert m["first_error_f1"]["f1"] == pytest.approx(2 / 3)
    # at the good90 threshold (0.3, "<"): trace 1's step 1 (0.3) counts as bad too
    assert m["first_error_f1_at_good90"]["error_accuracy"] == pytest.approx(1.0)


def test_unscored_steps_are_left_out_and_counted(recipe):
    traces = [scored(0, [1, 0], [0.9, None]), scored(1, [1, 0], [0.8, 0.2]), scored(2, [1, 1], [0.7, 0.6])]
    m = recipe.evaluate(traces)
    assert m["unscored_steps"] == 1 and m["steps"] == 5
    assert m["first_error_f1"]["error_traces"] == 1  # the trace with an unscored step is left out


def test_the_notes_view_keeps_only_calculator_notes(recipe):
    trace = Trace(id="t", problem="p", steps=[Step("Half of 36 is 36 / 2 = <<36/2=18>>18 items.", hard_label=1),
                                              Step("So the answer is 18.", hard_label=1)])
    view = recipe.notes_view([trace])[0]
    assert view.step_texts == ["<<36/2=18>>18", "So the answer is 18."]
    assert trace.steps[0].text.startswith("Half")  # the original is not changed
