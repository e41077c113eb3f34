"""What the checkers report: the outcome of one claim, and one verdict for a step.

Shared by every checker that judges the claims of `claims.extract_claims` (sympy, z3), so
that they word their evidence and combine their claim outcomes the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import sympy

from annotate.checkers.claims import Claim
from prm.records import Verdict


@dataclass
class ClaimResult:
    """The outcome for one claim: `status` verified/refuted/unknown (z3 also "assumption")
    and a one-line reason."""

    claim: Claim
    status: str
    detail: str

    def describe(self) -> str:
        return f"{self.claim.text}: {self.detail}"


def format_number(value: Fraction | sympy.Expr) -> str:
    """A short exact rendering: `24`, `0.2`, `10/3 (≈ 3.333333)`."""
    if isinstance(value, Fraction):
        if value.denominator == 1:
            return str(value.numerator)
        denominator = value.denominator
        for prime in (2, 5):
            while denominator % prime == 0:
                denominator //= prime
        if denominator == 1 and len(str(value.denominator)) <= 12:
            digits = len(str(value.denominator))
            text = f"{value.numerator / value.denominator:.{digits}f}" if digits < 15 else None
            if text is not None and Fraction(text) == value:
                return text.rstrip("0").rstrip(".")
        return f"{value.numerator}/{value.denominator} (≈ {float(value):.6g})"
    return str(sympy.N(value, 12))


def summarize(checker: str, results: list[ClaimResult], backend: str, seconds: float) -> Verdict:
    """One verdict for a step from its claim outcomes (refuted > unknown > verified)."""
    if not results:
        return Verdict(checker, "unknown", claim=None, evidence="no checkable claim in the step",
                       backend=backend, seconds=seconds)
    refuted = [r for r in results if r.status == "refuted"]
    undecided = [r for r in results if r.status == "unknown"]
    if refuted:
        status, shown = "refuted", refuted
    elif undecided:
        status, shown = "unknown", undecided
    else:
        status, shown = "verified", results
    claim_text = "; ".join(r.claim.text for r in results)
    evidence = "; ".join(r.describe() for r in shown)
    return Verdict(checker, status, claim=claim_text, evidence=evidence, backend=backend,
                   seconds=seconds)
