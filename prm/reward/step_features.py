"""Per-step input features read from the records: checker verdicts as inputs to a reward model.

A hybrid PRM reads, besides the text, a few numbers per step that something else already
decided, e.g. whether a symbolic checker refuted the step. The reward layer does not run
checkers (it may not import `annotate`); it reads the verdicts that `prm check` (or
`annotate.checkers`) wrote into `Step.verdicts`, so training data and scored traces must
carry them. With `RewardModelOptions.step_features = "refuted,refuted_so_far"` the model's
head gets these values next to the hidden state at each step's end.

Features (each 0.0 or 1.0):

- ``refuted``: some checker refuted this step.
- ``refuted_so_far``: some checker refuted this step or an earlier one. A step after a wrong
  one inherits its error (its label is 0 too), but a checker judges each step on its own
  and usually verifies it; this feature carries the refutation forward.
- ``verified``: some checker verified this step and none refuted it.
- ``checked``: some checker gave a verdict other than unknown/unavailable (verified or
  refuted): tells "verified" apart from "nothing to check".

`INITIAL_WEIGHTS` gives the head's starting weight for each feature: a refutation starts as
strong evidence of a bad step, so the head does not have to climb there with steps of
about one learning rate each (the same reason `lm_features` start at weight 1).
"""

from __future__ import annotations

from prm.records import Step

STEP_FEATURES = ("refuted", "refuted_so_far", "verified", "checked")
INITIAL_WEIGHTS = {"refuted": -2.0, "refuted_so_far": -2.0, "verified": 0.0, "checked": 0.0}


def parse_step_features(names: str | None) -> list[str]:
    """Feature names from a comma-separated string ("" or None: none); ValueError on an unknown one."""
    parsed = [name.strip() for name in (names or "").split(",") if name.strip()]
    unknown = [name for name in parsed if name not in STEP_FEATURES]
    if unknown:
        raise ValueError(f"step_features: unknown feature(s) {unknown}; choose from {STEP_FEATURES}")
    return parsed


def step_feature_values(steps: list[Step], names: list[str]) -> list[list[float]]:
    """One row of feature values per step (columns in the order of `names`)."""
    rows, refuted_before = [], False
    for step in steps:
        statuses = {verdict.status for verdict in step.verdicts}
        refuted = "refuted" in statuses
        refuted_before = refuted_before or refuted
        values = {"refuted": refuted, "refuted_so_far": refuted_before,
                  "verified": "verified" in statuses and not refuted,
                  "checked": bool(statuses & {"verified", "refuted"})}
        rows.append([float(values[name]) for name in names])
    return rows
