"""Calibrated step scores: a map from a scorer's raw scores to probabilities that a step is good.

PRM scores rank steps but are not probabilities (the demo's implicit PRM puts most steps between
0.4 and 0.6). `prm calibrate MODEL VALIDATION` fits a monotone map on labelled validation steps
with scikit-learn and saves it beside the weights as `calibration.json`; from then on
`prm.reward.loading.load_scorer` wraps every scorer of that folder in `CalibratedScorer`, so
`prm score`, `eval`, `search`, `serve-reward` and the RL rewards all see calibrated scores.

- `isotonic`: `sklearn.isotonic.IsotonicRegression` (a non-decreasing step function, clipped to
  the fitted range); saved as its thresholds and applied with linear interpolation between them,
  which is what `IsotonicRegression.predict` does.
- `platt`: Platt scaling, `sklearn.linear_model.LogisticRegression` on the logit of the score;
  saved as its slope and intercept.

The file is plain JSON (no pickle: a model folder may come from anyone).
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np

from prm.reward.scorer import StepScorer

CALIBRATION_FILE = "calibration.json"
METHODS = ("isotonic", "platt")
_EPSILON = 1e-6


def _logit(p: np.ndarray) -> np.ndarray:
    p = np.clip(np.asarray(p, dtype=float), _EPSILON, 1 - _EPSILON)
    return np.log(p / (1 - p))


@dataclass
class Calibrator:
    """A fitted calibration map (see the module docstring)."""

    method: str
    thresholds_x: list[float] = field(default_factory=list)  # isotonic
    thresholds_y: list[float] = field(default_factory=list)
    slope: float | None = None  # platt
    intercept: float | None = None
    steps: int = 0  # validation steps it was fitted on
    fitted_on: str | None = None

    def apply(self, scores) -> np.ndarray:
        """Calibrated probabilities of an array of raw scores."""
        scores = np.asarray(scores, dtype=float)
        if self.method == "isotonic":
            return np.interp(scores, self.thresholds_x, self.thresholds_y)
        return 1.0 / (1.0 + np.exp(-(self.slope * _logit(scores) + self.intercept)))

    def calibrate(self, scores: list[float | None]) -> list[float | None]:
        """One list of step scores calibrated; None stays None."""
        known = [s for s in scores if s is not None]
        mapped = iter(self.apply(known).tolist()) if known else iter(())
        return [None if s is None else float(next(mapped)) for s in scores]

    def save(self, folder: str | Path) -> Path:
        from prm.io import atomic_write

        path = Path(folder) / CALIBRATION_FILE
        with atomic_write(path) as handle:  # a scorer never reads half a file
            handle.write(json.dumps(asdict(self), indent=1) + "\n")
        return path

    @classmethod
    def load(cls, path: str | Path) -> "Calibrator":
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        if not isinstance(data, dict) or data.get("method") not in METHODS:
            raise ValueError(f"{path}: not a calibration file (method must be one of {METHODS})")
        calibrator = cls(**data)
        if calibrator.method == "isotonic" and not calibrator.thresholds_x:
            raise ValueError(f"{path}: an isotonic calibration without thresholds")
        if calibrator.method == "platt" and (calibrator.slope is None or calibrator.intercept is None):
            raise ValueError(f"{path}: a Platt calibration without slope and intercept")
        return calibrator


def fit_calibrator(scores, labels, method: str = "isotonic", fitted_on: str | None = None) -> Calibrator:
    """Fit `method` on raw step scores and their gold labels (1 good, 0 bad)."""
    scores = np.asarray(scores, dtype=float)
    labels = np.asarray(labels, dtype=int)
    if method not in METHODS:
        raise ValueError(f"calibration method must be one of {METHODS}, got {method!r}")
    if scores.size == 0 or len(set(labels.tolist())) < 2:
        raise ValueError("calibration needs scored steps with both good and bad gold labels")
    if method == "isotonic":
        from sklearn.isotonic import IsotonicRegression

        fitted = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip").fit(scores, labels)
        return Calibrator(method, fitted.X_thresholds_.tolist(), fitted.y_thresholds_.tolist(),
                          steps=int(scores.size), fitted_on=fitted_on)
    from sklearn.linear_model import LogisticRegression

    fitted = LogisticRegression(C=1e6).fit(_logit(scores).reshape(-1, 1), labels)
    return Calibrator(method, slope=float(fitted.coef_[0, 0]), intercept=float(fitted.intercept_[0]),
                      steps=int(scores.size), fitted_on=fitted_on)


def saved_calibrator(folder: str | Path) -> Calibrator | None:
    """The calibration saved in a model folder, or None."""
    path = Path(folder) / CALIBRATION_FILE
    return Calibrator.load(path) if path.is_file() else None


class CalibratedScorer(StepScorer):
    """Another scorer's step scores passed through a `Calibrator`. Everything else (batching,
    prefix caches, token counts, attributes) is the wrapped scorer's."""

    def __init__(self, base: StepScorer, calibrator: Calibrator):
        self.base = base
        self.calibrator = calibrator

    @property
    def aggregation(self) -> str:
        return self.base.aggregation

    def __getattr__(self, name):
        if name in ("base", "calibrator"):  # not set yet (e.g. while unpickling)
            raise AttributeError(name)
        return getattr(self.base, name)

    def score_many(self, items, batch_size=None, progress=False):
        return [self.calibrator.calibrate(row) for row in self.base.score_many(items, batch_size, progress)]

    def score_prefixes(self, items, parents=None, batch_size=None):
        return [replace(result, scores=self.calibrator.calibrate(result.scores))
                for result in self.base.score_prefixes(items, parents, batch_size)]

    def raw_and_calibrated(self, items, batch_size=None, progress=False):
        """(raw scores, calibrated scores) of the items, scored once."""
        raw = self.base.score_many(items, batch_size, progress)
        return raw, [self.calibrator.calibrate(row) for row in raw]
