"""`prm calibrate MODEL VALIDATION`: fit a calibration of MODEL's step scores on labelled
validation traces and save it beside the weights (MODEL/calibration.json).

    prm calibrate runs/prm validation.jsonl                    # isotonic regression
    prm calibrate runs/prm validation.jsonl --method platt     # Platt scaling

From then on every scorer opened from MODEL (`prm score`, `eval`, `search`, `serve-reward`, the
RL rewards) returns calibrated scores; `prm eval` reports ECE and Brier before and after.
Deleting the file undoes it. Gold labels come from `--gold` as in `prm eval` (meta by default).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from prm.errors import RecordError
from prm.reward.calibration import METHODS


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="a model folder (the calibration is saved in it)")
    parser.add_argument("validation", metavar="VALIDATION",
                        help="labelled validation traces (any format prm convert reads)")
    parser.add_argument("--method", choices=METHODS, default="isotonic",
                        help="isotonic regression or Platt scaling (default: isotonic)")
    parser.add_argument("--gold", default="meta",
                        help="where the gold step labels are: meta (default), labels, or a label source")
    parser.add_argument("--batch-size", type=int, default=16, help="scoring batch size (default 16)")


def run(args: argparse.Namespace) -> int:
    from evals.gold import gold_step_labels
    from evals.step_metrics import calibration_table, expected_calibration_error
    from prm import formats
    from prm.app.scorers import load_model_scorer
    from prm.io import refuse_output_over_inputs
    from prm.reward.calibration import CALIBRATION_FILE, fit_calibrator

    if not Path(args.model).is_dir():
        raise RecordError("not a model folder (the calibration is saved beside its weights)", path=args.model)
    refuse_output_over_inputs(Path(args.model) / CALIBRATION_FILE, [args.validation])
    traces = formats.read(args.validation)
    scorer = load_model_scorer(args.model, calibrated=False)
    scores = scorer.score_many([(t.problem, t.step_texts) for t in traces], args.batch_size, progress=True)
    raw, labels = [], []
    for trace, row in zip(traces, scores):
        for score, label in zip(row, gold_step_labels(trace, args.gold)):
            if score is not None and label is not None:
                raw.append(score)
                labels.append(label)
    try:
        calibrator = fit_calibrator(raw, labels, args.method, fitted_on=str(args.validation))
    except ValueError as err:
        raise RecordError(f"{err} (gold={args.gold!r})", path=args.validation) from None
    path = calibrator.save(args.model)
    after = calibrator.apply(raw)

    def ece_brier(values) -> str:
        values = np.asarray(values, dtype=float)
        ece = expected_calibration_error(calibration_table(values, np.asarray(labels)))
        return f"ECE {ece:.3f}, Brier {float(np.mean((values - np.asarray(labels)) ** 2)):.3f}"

    print(f"fitted {args.method} calibration on {len(raw)} validation steps; saved {path}")
    print(f"on those steps: before {ece_brier(raw)}; after {ece_brier(after)} (in-sample: measure on "
          f"held-out traces with prm eval)")
    return 0
