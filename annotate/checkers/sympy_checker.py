"""The symbolic checker: verifies the arithmetic a step states, exactly.

Each claim found by `claims.extract_claims` is evaluated with exact rationals
(`safe_math.rational_value`), or with sympy's proven-precision evaluation for irrational
values (`\\sqrt{8} = 2\\sqrt{2}`), or, for claims with variables, by expanding both sides
(`(a+b)^2 = a^2 + 2ab + b^2` is an identity). Claims that are equations rather than
identities (`2x + 1 = 7`) are left to the z3 checker: here they are `unknown`.

Tolerance exists only for values the step itself rounds (`claims.tolerance`): a calculator
note is exact; a stated number with fewer decimals than the value needs may be off by half a
unit of its last decimal (`10/3 = 3.33`), a whole number only when the step says it counts
whole things (`100/3 = 33` whole boxes; `1/2 = 0` is refuted); with "about",
"approximately", "≈" in the step, by half a unit of its last significant digit (`about 30`).
An exact value is never given a tolerance, so `48/2 = 25` is refuted. A claim that divides
by zero (`<<10/0=3>>`) is refuted: its value is undefined.

A step is `refuted` if any claim is refuted, `verified` if it has claims and all are
verified, otherwise `unknown` (no claim, or one that could not be decided).
"""

from __future__ import annotations

import time
from fractions import Fraction

import sympy

from annotate.checkers import safe_math
from annotate.checkers.base import Checker
from annotate.checkers.claims import Claim, Reading, extract_claims, tolerance
from annotate.checkers.results import ClaimResult, format_number, summarize
from annotate.checkers.safe_math import DivisionByZero, Limits, NotRational, Unsafe
from prm.records import Verdict

MAX_IDENTITY_DEGREE = 40  # (a+b)^n with larger n is not expanded


class SympyChecker(Checker):
    """Exact verification of the arithmetic claims in a step (calculator notes, plain text,
    LaTeX), with size bounds and a time limit on every evaluation."""

    name = "sympy"

    def __init__(self, limits: Limits = safe_math.DEFAULT_LIMITS, seconds: float = 5.0,
                 claim_seconds: float = 1.0):
        self.limits, self.seconds, self.claim_seconds = limits, seconds, claim_seconds
        self.backend = f"sympy {sympy.__version__}"

    def check(self, problem: str, previous_steps: list[str], step: str) -> Verdict:
        started = time.perf_counter()
        try:
            with safe_math.time_limit(self.seconds):
                results = self.check_claims(step)
        except Unsafe as err:  # the whole-step limit ran out
            return Verdict(self.name, "unknown", claim=None, evidence=str(err),
                           backend=self.backend, seconds=time.perf_counter() - started)
        return summarize(self.name, results, self.backend, time.perf_counter() - started)

    def check_claims(self, step: str) -> list[ClaimResult]:
        """Every claim of `step` with its own outcome."""
        try:
            found = extract_claims(step, self.limits)
        except Unsafe as err:
            return [ClaimResult(Claim(text=step[:80], kind="step", problem=str(err)), "unknown",
                                str(err))]
        return [self.judge(claim) for claim in found]

    def judge(self, claim: Claim) -> ClaimResult:
        if claim.problem is not None:
            return ClaimResult(claim, "unknown", claim.problem)
        outcomes = [self._judge_reading(r, claim) for r in claim.readings]
        for index, (status, detail) in enumerate(outcomes):
            if status == "verified":
                if index > 0:
                    detail += f" (read as a {claim.readings[index].how})"
                return ClaimResult(claim, "verified", detail)
        if outcomes and all(status == "refuted" for status, _ in outcomes):
            if claim.hedged:
                return ClaimResult(claim, "unknown", outcomes[0][1] + ", but the step itself "
                                   "questions or rejects it")
            return ClaimResult(claim, "refuted", outcomes[0][1])
        unknown = next((d for s, d in outcomes if s == "unknown"), "nothing to check")
        return ClaimResult(claim, "unknown", unknown)

    def _judge_reading(self, reading: Reading, claim: Claim) -> tuple[str, str]:
        lhs, rhs = reading.lhs, reading.rhs
        try:
            with safe_math.time_limit(self.claim_seconds):
                if lhs.free_symbols or rhs.free_symbols:
                    return self._judge_symbolic(lhs, rhs, claim.relation)
                try:
                    left = safe_math.rational_value(lhs, self.limits)
                    right = safe_math.rational_value(rhs, self.limits)
                except DivisionByZero:
                    raise
                except NotRational:
                    return self._judge_real(reading, claim)
                return _compare(left, right, reading, claim)
        except DivisionByZero as err:
            return "refuted", f"undefined: {err}"
        except Unsafe as err:
            return "unknown", f"{type(err).__name__}: {err}"
        except (ValueError, TypeError, ArithmeticError, RecursionError, AttributeError) as err:
            return "unknown", f"could not evaluate ({type(err).__name__})"

    def _judge_symbolic(self, lhs, rhs, relation: str) -> tuple[str, str]:
        if relation != "=":
            return "unknown", "inequality with variables (left to z3)"
        safe_math.check_bounded_powers(lhs, self.limits)
        safe_math.check_bounded_powers(rhs, self.limits)
        for node in sympy.preorder_traversal(sympy.Add(lhs, rhs, evaluate=False)):
            if isinstance(node, sympy.Pow) and node.args[0].free_symbols \
                    and abs(node.args[1]) > MAX_IDENTITY_DEGREE:
                raise safe_math.TooBig("power of a polynomial too high to expand")
        difference = sympy.expand(lhs.doit() - rhs.doit())
        if difference == 0:
            return "verified", "identity (both sides expand to the same polynomial)"
        if sympy.simplify(difference) == 0:
            return "verified", "identity (sympy simplifies the difference to 0)"
        names = ", ".join(sorted(str(s) for s in difference.free_symbols)) or "its variables"
        return "unknown", f"an equation in {names}, not an identity (left to z3)"

    def _judge_real(self, reading: Reading, claim: Claim) -> tuple[str, str]:
        difference = safe_math.real_difference(reading.lhs, reading.rhs, self.limits,
                                               self.claim_seconds)
        if difference == 0:
            return _holds_or_not(claim.relation, 0, "equal (sympy proves it)")
        value = float(difference)
        unit = tolerance(reading, claim, None)
        if claim.relation in ("=", "≈") and abs(value) <= unit:
            return "verified", f"holds to the stated precision (difference {value:.3g})"
        return _holds_or_not(claim.relation, value,
                             f"the difference of the two sides is {sympy.N(difference, 8)}")


def _compare(left: Fraction, right: Fraction, reading: Reading, claim: Claim) -> tuple[str, str]:
    difference = left - right
    if claim.relation not in ("=", "≈"):
        return _holds_or_not(claim.relation, difference,
                             f"{format_number(left)} vs {format_number(right)}")
    if difference == 0:
        return "verified", f"= {format_number(left)}"
    if reading.stated_value is not None:
        exact = left if reading.stated_value == right else right
        stated = right if reading.stated_value == right else left
        unit = tolerance(reading, claim, exact)
        if abs(exact - stated) <= unit:
            return "verified", f"= {format_number(exact)}, rounded to {reading.stated.strip()}"
        return "refuted", f"computed {format_number(exact)}, stated {reading.stated.strip()}"
    return "refuted", f"left side is {format_number(left)}, right side is {format_number(right)}"


def _holds_or_not(relation: str, difference, detail: str) -> tuple[str, str]:
    holds = {"=": difference == 0, "≈": difference == 0, "<": difference < 0,
             ">": difference > 0, "<=": difference <= 0, ">=": difference >= 0}[relation]
    return ("verified" if holds else "refuted"), detail
