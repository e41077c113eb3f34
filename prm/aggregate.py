"""Step scores -> one solution score.

The published PRMs disagree on how to do it: Math-Shepherd took the minimum, PRM800K and
Qwen the product, RLHFlow the mean; an ORM (and a PRM read as a value function) uses the
last step. Unknown scores (None, e.g. steps dropped by truncation) are skipped by min,
prod and mean; `last` is None when the last step was not scored (a truncated solution has
no end score). A solution with no known score gets None.
"""

from __future__ import annotations

import math

AGGREGATIONS = ("min", "prod", "last", "mean")


def aggregate(scores: list[float | None], how: str = "min") -> float | None:
    """Combine per-step probabilities into one solution score."""
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {how!r}")
    if how == "last":
        return scores[-1] if scores else None
    known = [s for s in scores if s is not None]
    if not known:
        return None
    if how == "min":
        return min(known)
    if how == "prod":
        return math.prod(known)
    return sum(known) / len(known)
