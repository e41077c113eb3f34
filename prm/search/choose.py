"""Finished solutions (`Candidate`) and the rules that pick one: best score, score-weighted
vote, majority vote. Ties are broken deterministically: by `order`, the position where the
candidate was generated (earlier wins), never at random.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fractions import Fraction

RULES = ("best", "vote", "majority")


@dataclass
class Candidate:
    """A (possibly unfinished) solution: its steps, answer and scores.

    scores: the scorer's score of each step (and of the answer line when it was scored);
    score: their aggregate (None when nothing was scored); order: generation position
    (tie-breaker); tokens: generated tokens of this solution's own samples.
    """

    steps: list[str]
    answer: str | None
    scores: list[float | None] = field(default_factory=list)
    score: float | None = None
    order: tuple = ()
    tokens: int = 0
    finished: bool = True
    correct: bool | None = None

    def summary(self) -> dict:
        return {"answer": self.answer, "score": self.score, "steps": len(self.steps), "tokens": self.tokens,
                "correct": self.correct}


def answer_key(answer: str | None) -> str | None:
    """The answer as votes compare it: `$1,200.`, `1200` and `1200.0` are one answer."""
    if answer is None:
        return None
    cleaned = answer.strip().replace("$", "").replace(",", "").rstrip(".").strip()
    if not cleaned:
        return None
    try:
        return str(Fraction(cleaned))
    except (ValueError, ZeroDivisionError):
        return cleaned


def rank_key(candidate: Candidate) -> tuple:
    """Sort key: higher score first, unscored last, then earlier generation first."""
    return (candidate.score is None, -(candidate.score or 0.0), candidate.order)


def choose(candidates: list[Candidate], rule: str = "best") -> Candidate | None:
    """The chosen candidate: "best" (highest score), "vote" (the answer with the largest sum
    of scores), "majority" (the most frequent answer). A vote returns the best-ranked
    candidate giving the winning answer; candidates without an answer do not vote (if none
    has one, the best-ranked candidate is returned)."""
    if rule not in RULES:
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    if not candidates:
        return None
    ranked = sorted(candidates, key=rank_key)
    if rule == "best":
        return ranked[0]
    totals: dict[str, float] = {}
    first: dict[str, tuple] = {}
    for candidate in sorted(candidates, key=lambda c: c.order):
        key = answer_key(candidate.answer)
        if key is None:
            continue
        weight = 1.0 if rule == "majority" else (candidate.score or 0.0)
        totals[key] = totals.get(key, 0.0) + weight
        first.setdefault(key, candidate.order)
    if not totals:
        return ranked[0]
    winner = min(totals, key=lambda key: (-totals[key], first[key]))
    return next(c for c in ranked if answer_key(c.answer) == winner)
