"""`prm calibrate MODEL VALIDATION`: a calibration fitted on GSM8K validation traces (real train
problems and corrupted copies) is saved beside a tiny Qwen2.5-Math-PRM's weights, every scorer
opened from that folder returns calibrated scores, and `prm eval` reports ECE and Brier before
and after."""

import json

import numpy as np
import pytest

from helpers.reward_models import gsm8k_with_errors, make_qwen_prm
from prm.app.cli import main
from prm.app.scorers import load_step_scorer
from prm.io import write_traces
from prm.reward.calibration import CALIBRATION_FILE, CalibratedScorer, Calibrator
from prm.reward.loading import load_scorer


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    folder = tmp_path_factory.mktemp("calibration")
    write_traces(folder / "val.jsonl", gsm8k_with_errors(12, seed=0))
    write_traces(folder / "test.jsonl", gsm8k_with_errors(12, seed=1, start=12))
    return folder


@pytest.mark.parametrize("method", ["isotonic", "platt"])
def test_calibrated_folder_gives_every_scorer_the_mapped_scores(data, tmp_path, method):
    model = make_qwen_prm(tmp_path / "prm")
    items = [("Tom has 3 apples and buys 4 more. How many?", ["3 + 4 = 7", "So 7 apples."])]
    raw = load_scorer(str(model)).score_many(items)[0]
    assert main(["calibrate", str(model), str(data / "val.jsonl"), "--method", method]) == 0
    calibrator = Calibrator.load(model / CALIBRATION_FILE)
    assert calibrator.method == method and calibrator.steps > 20
    expected = calibrator.apply(raw).tolist()
    for scorer in (load_scorer(str(model)), load_step_scorer(str(model)), load_step_scorer(f"{model}+checker:sympy")):
        assert scorer.score_many(items)[0] == pytest.approx(expected)
    assert load_scorer(str(model), calibrated=False).score_many(items)[0] == pytest.approx(raw)
    assert isinstance(load_scorer(str(model)), CalibratedScorer)
    prefixes = load_scorer(str(model)).score_prefixes(items)  # what search calls
    assert prefixes[0].scores == pytest.approx(expected)


def test_isotonic_map_is_monotone_and_within_zero_and_one(data, tmp_path):
    model = make_qwen_prm(tmp_path / "prm")
    assert main(["calibrate", str(model), str(data / "val.jsonl")]) == 0
    calibrator = Calibrator.load(model / CALIBRATION_FILE)
    grid = np.linspace(0, 1, 101)
    mapped = calibrator.apply(grid)
    assert np.all(np.diff(mapped) >= -1e-12) and mapped.min() >= 0 and mapped.max() <= 1


def test_eval_reports_ece_and_brier_before_and_after_calibration(data, tmp_path):
    model = make_qwen_prm(tmp_path / "prm")
    assert main(["calibrate", str(model), str(data / "val.jsonl")]) == 0
    out = tmp_path / "report"
    assert main(["eval", str(model), "--data", str(data / "test.jsonl"), "--val", str(data / "val.jsonl"),
                 "--out", str(out)]) == 0
    change = json.loads((out / "metrics.json").read_text())["calibration_change"]
    assert change["steps"] == json.loads((out / "metrics.json").read_text())["step"]["steps"]
    # The untrained head's scores sit far from the share of good steps; on held-out traces the
    # isotonic map brings them close to it.
    assert change["after"]["ece"] < change["before"]["ece"]
    assert change["after"]["brier"] < change["before"]["brier"]
    report = (out / "report.md").read_text()
    assert "## Calibration (`prm calibrate`)" in report and "raw (before)" in report


def test_calibrate_refuses_validation_without_both_kinds_of_steps(tmp_path, capsys):
    model = make_qwen_prm(tmp_path / "prm")
    good_only = [t for t in gsm8k_with_errors(3) if t.meta["gold_first_error"] == -1]
    write_traces(tmp_path / "val.jsonl", good_only)
    assert main(["calibrate", str(model), str(tmp_path / "val.jsonl")]) == 1
    assert "both good and bad gold labels" in capsys.readouterr().err
    assert not (model / CALIBRATION_FILE).exists()
