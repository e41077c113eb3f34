"""The formal checker: proves a step's equations from the equations before it, with z3.

The claims of the problem and of the earlier steps that mention variables are hypotheses
H; each claim C of the step is a conclusion. Claims are translated from the unevaluated
sympy trees of `claims.extract_claims` into z3 real arithmetic (powers with small integer
exponents, square roots as fresh variables `s >= 0, s*s = x`, non-zero denominators as
side conditions), and z3 decides:

- H and not C unsatisfiable: C follows, `verified` (`x = 3` therefore `2x + 1 = 7`; an
  identity such as `(a+b)^2 = a^2 + 2ab + b^2` follows from nothing).
- H and C unsatisfiable: C contradicts what was established, `refuted`.
- both satisfiable: C does not follow, `refuted` with z3's counter-example
  (`x^2 = 9` therefore `x = 3` is refuted by x = -3) when `refute="counterexample"`
  (the default); with `refute="contradiction"` only contradictions are refuted and this
  case is `unknown`, for texts whose hypotheses are known to be incomplete.
- a claim whose variables nothing before constrains (`Let y = 2x + 1`, or the first
  equation of a solution) is an assumption: it is added to H and does not count either way.

A claim is added to H after it is checked, unless it would make H inconsistent. Symbol-free
claims are proved the same way (with the rounding tolerance of the symbolic checker). Every
solver call has a timeout; a timeout or an untranslatable claim is `unknown`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from fractions import Fraction

import sympy

from annotate.checkers import safe_math
from annotate.checkers.base import Checker
from annotate.checkers.claims import Claim, extract_claims
from annotate.checkers.safe_math import Limits, NotRational, Unsafe
from annotate.checkers.sympy_checker import ClaimResult, format_number, summarize, tolerance
from prm.records import Verdict

MAX_POWER = 12  # x^n with |n| above this is not expanded for z3
_ARBITRARY = ("7919/13", "1009/17", "2053/19", "4001/23", "6007/29")  # "any value" probes


class Untranslatable(Unsafe):
    """The claim uses something z3's real arithmetic cannot express here."""


@dataclass
class _Translation:
    """A claim as a z3 formula, with the side conditions its terms need (sqrt definitions,
    non-zero denominators) and the variables it mentions."""

    formula: object
    conditions: list = field(default_factory=list)
    symbols: frozenset = frozenset()


class _Translator:
    def __init__(self, limits: Limits):
        import z3

        self.z3, self.limits = z3, limits
        self.variables: dict[str, object] = {}
        self.roots = 0

    def real(self, name: str):
        if name not in self.variables:
            self.variables[name] = self.z3.Real(name)
        return self.variables[name]

    def constant(self, value: Fraction):
        return self.z3.RealVal(f"{value.numerator}/{value.denominator}")

    def term(self, expr, conditions: list):
        z3 = self.z3
        if not expr.free_symbols:
            try:
                return self.constant(safe_math.rational_value(expr, self.limits))
            except NotRational:
                pass  # an irrational constant such as sqrt(2): translated structurally below
        if isinstance(expr, sympy.Symbol):
            return self.real(expr.name)
        if isinstance(expr, sympy.UnevaluatedExpr):
            return self.term(expr.args[0], conditions)
        if isinstance(expr, sympy.Add):
            return z3.Sum([self.term(a, conditions) for a in expr.args])
        if isinstance(expr, sympy.Mul):
            return z3.Product([self.term(a, conditions) for a in expr.args])
        if isinstance(expr, sympy.Pow):
            if expr.args[1].free_symbols:
                raise Untranslatable("variable exponent")
            exponent = safe_math.rational_value(expr.args[1], self.limits)
            base = self.term(expr.args[0], conditions)
            if exponent.denominator == 2:
                self.roots += 1
                root = z3.Real(f"sqrt_{self.roots}")
                conditions += [root >= 0, root * root == base]
                base, exponent = root, Fraction(exponent.numerator)
            if exponent.denominator != 1 or abs(exponent) > MAX_POWER:
                raise Untranslatable(f"power {exponent}")
            n = exponent.numerator
            if n == 0:
                return z3.RealVal(1)
            power = base if abs(n) == 1 else z3.Product([base] * abs(n))
            if n < 0:
                conditions.append(base != 0)
                return 1 / power
            return power
        raise Untranslatable(f"{type(expr).__name__} with variables")

    def claim(self, claim: Claim, literal_only: bool = False) -> _Translation:
        """The claim as a formula: any of its readings (only the literal one if asked)."""
        conditions: list = []
        options = []
        for reading in claim.readings[:1] if literal_only else claim.readings:
            left = self.term(reading.lhs, conditions)
            right = self.term(reading.rhs, conditions)
            unit = Fraction(0)
            if reading.stated is not None and not (reading.lhs.free_symbols
                                                   or reading.rhs.free_symbols):
                unit = self._tolerance(reading, claim)
            options.append(self._relation(claim.relation, left, right, unit))
        symbols = frozenset(s.name for r in claim.readings
                            for s in r.lhs.free_symbols | r.rhs.free_symbols)
        formula = options[0] if len(options) == 1 else self.z3.Or(options)
        return _Translation(formula, conditions, symbols)

    def _tolerance(self, reading, claim: Claim) -> Fraction:
        try:
            left = safe_math.rational_value(reading.lhs, self.limits)
            right = safe_math.rational_value(reading.rhs, self.limits)
            exact = left if reading.stated_value == right else right
        except NotRational:
            exact = None
        return tolerance(reading, exact, claim.approx)

    def _relation(self, relation: str, left, right, unit: Fraction):
        z3 = self.z3
        if relation in ("=", "≈"):
            if unit:
                bound = self.constant(unit)
                return z3.And(left - right < bound, right - left < bound)
            return left == right
        return {"<": left < right, ">": left > right, "<=": left <= right,
                ">=": left >= right}[relation]


@dataclass
class _Hypothesis:
    text: str
    translation: _Translation


class Z3Checker(Checker):
    """Proves each equation of a step from the equations of the problem and earlier steps."""

    name = "z3"

    def __init__(self, limits: Limits = safe_math.DEFAULT_LIMITS, timeout_ms: int = 1000,
                 seconds: float = 10.0, refute: str = "counterexample"):
        if refute not in ("counterexample", "contradiction"):
            raise ValueError("refute must be 'counterexample' or 'contradiction'")
        self.limits, self.timeout_ms, self.seconds, self.refute = limits, timeout_ms, seconds, refute

    @property
    def backend(self) -> str:
        import z3

        return f"z3 {z3.get_version_string()}"

    def available(self) -> bool:
        try:
            import z3  # noqa: F401
        except ImportError:
            return False
        return True

    def check(self, problem: str, previous_steps: list[str], step: str) -> Verdict:
        started = time.perf_counter()
        if not self.available():
            return Verdict(self.name, "unavailable", evidence="z3-solver is not installed",
                           seconds=0.0)
        try:
            with safe_math.time_limit(self.seconds):
                results = self.check_claims(problem, previous_steps, step)
        except Unsafe as err:
            return Verdict(self.name, "unknown", evidence=str(err), backend=self.backend,
                           seconds=time.perf_counter() - started)
        counted = [r for r in results if r.status != "assumption"]
        if results and not counted:
            return Verdict(self.name, "unknown", claim="; ".join(r.claim.text for r in results),
                           evidence="only new equations (assumptions), nothing to prove",
                           backend=self.backend, seconds=time.perf_counter() - started)
        return summarize(self.name, counted, self.backend, time.perf_counter() - started)

    # -- the work ------------------------------------------------------------------------------

    def _claims(self, text: str) -> list[Claim]:
        return extract_claims(text, self.limits)

    def check_claims(self, problem: str, previous_steps: list[str], step: str) -> list[ClaimResult]:
        """The outcome of every claim of `step` (status may also be "assumption")."""
        translator = _Translator(self.limits)
        hypotheses: list[_Hypothesis] = []
        for index, text in enumerate([problem, *previous_steps]):
            for claim in self._claims(text):
                # a question mark in the problem is the question, not doubt about its equations
                doubted = claim.hedged and index > 0
                if claim.problem is None and claim.readings and claim.symbolic and not doubted:
                    self._assume(translator, hypotheses, claim)
        results = []
        for claim in self._claims(step):
            result = self._judge(translator, hypotheses, claim)
            results.append(result)
            if result.status == "assumption" and not claim.hedged:
                self._assume(translator, hypotheses, claim)
        return results

    def _solver(self, facts: list):
        z3 = self.z3
        solver = z3.Solver()
        solver.set("timeout", self.timeout_ms)
        solver.add(*facts)
        return solver

    @property
    def z3(self):
        import z3

        return z3

    def _assume(self, translator: _Translator, hypotheses: list[_Hypothesis], claim: Claim) -> None:
        """Add the claim to the hypotheses (as written if that is consistent with them, else
        as any of its readings), unless it contradicts them."""
        for literal_only in (True, False) if len(claim.readings) > 1 else (True,):
            try:
                translation = translator.claim(claim, literal_only)
            except (Unsafe, ValueError, TypeError, ArithmeticError, RecursionError):
                return
            negated = self.z3.Not(translation.formula)
            if self._solver(translation.conditions + [negated]).check() == self.z3.unsat:
                return  # an identity says nothing about its variables
            candidate = hypotheses + [_Hypothesis(claim.text, translation)]
            if self._solver(_facts(candidate)).check() == self.z3.sat:
                hypotheses.append(candidate[-1])
                return

    def _judge(self, translator: _Translator, hypotheses: list[_Hypothesis], claim: Claim) -> ClaimResult:
        if claim.problem is not None:
            return ClaimResult(claim, "unknown", claim.problem)
        if not claim.readings:
            return ClaimResult(claim, "unknown", "nothing to check")
        try:
            conclusion = translator.claim(claim)
        except Unsafe as err:
            return ClaimResult(claim, "unknown", f"{type(err).__name__}: {err}")
        except (ValueError, TypeError, ArithmeticError, RecursionError) as err:
            return ClaimResult(claim, "unknown", f"cannot translate ({type(err).__name__})")
        z3 = self.z3
        negated = z3.Not(conclusion.formula)
        alone = self._solver(conclusion.conditions + [negated]).check()
        if alone == z3.unsat:
            what = "an identity" if conclusion.symbols else "true"
            return ClaimResult(claim, "verified", f"{what} (z3 proves it)")
        if not conclusion.symbols:
            if alone == z3.sat:
                return self._refuted(claim, _numeric_evidence(claim, self.limits))
            return ClaimResult(claim, "unknown", f"z3: {alone}")
        relevant = _relevant(hypotheses, conclusion.symbols)
        known = frozenset().union(*(h.translation.symbols for h in relevant)) if relevant else frozenset()
        if not relevant or not conclusion.symbols <= known:
            return ClaimResult(claim, "assumption", "new equation: nothing before constrains "
                               + ", ".join(sorted(conclusion.symbols - known)))
        facts = _facts(relevant) + conclusion.conditions
        solver = self._solver(facts + [negated])
        outcome = solver.check()
        used = "; ".join(h.text for h in relevant[:4]) + (" ..." if len(relevant) > 4 else "")
        if outcome == z3.unsat:
            return ClaimResult(claim, "verified", f"follows from {used}")
        if outcome != z3.sat:
            return ClaimResult(claim, "unknown", f"z3: {outcome} (timeout {self.timeout_ms} ms)")
        model = solver.model()
        consistent = self._solver(facts + [conclusion.formula]).check()
        if consistent == z3.unsat:
            return self._refuted(claim, f"contradicts {used}")
        if self._leaves_free(facts, conclusion.symbols):
            return ClaimResult(claim, "assumption", f"new equation: {used} leave "
                               + ", ".join(sorted(conclusion.symbols)) + " free")
        if self.refute == "contradiction":
            return ClaimResult(claim, "unknown", f"does not follow from {used} (not refuted: "
                               "refute='contradiction')")
        if claim.alternatives:
            return ClaimResult(claim, "unknown", f"does not follow from {used} alone, but the "
                               "step states alternatives (or, ±)")
        return self._refuted(claim, f"does not follow from {used}: counter-example "
                             + _show_model(model, conclusion.symbols))

    def _leaves_free(self, facts: list, symbols: frozenset) -> bool:
        """Whether the hypotheses still hold with the claim's variables set to arbitrary
        values: then they do not pin those variables down, and a claim about them that
        neither follows nor contradicts is new information (`7S = 847` after `S + 2S + 4S =
        7S`), not an error. `x^2 = 9` pins x to {3, -3}, so `x = 3` is refuted."""
        z3 = self.z3
        pinned = [z3.Real(name) == z3.RealVal(f"{_ARBITRARY[i % len(_ARBITRARY)]}")
                  for i, name in enumerate(sorted(symbols))]
        return self._solver(facts + pinned).check() == z3.sat

    def _refuted(self, claim: Claim, detail: str) -> ClaimResult:
        if claim.hedged:
            return ClaimResult(claim, "unknown", detail + ", but the step itself questions or "
                               "rejects it")
        return ClaimResult(claim, "refuted", detail)


def _facts(hypotheses: list[_Hypothesis]) -> list:
    facts = []
    for h in hypotheses:
        facts.extend(h.translation.conditions)
        facts.append(h.translation.formula)
    return facts


def _relevant(hypotheses: list[_Hypothesis], symbols: frozenset) -> list[_Hypothesis]:
    """The hypotheses connected to `symbols` through shared variables."""
    reached, chosen = set(symbols), []
    remaining = list(hypotheses)
    changed = True
    while changed:
        changed = False
        for h in list(remaining):
            if h.translation.symbols & reached:
                reached |= h.translation.symbols
                chosen.append(h)
                remaining.remove(h)
                changed = True
    return [h for h in hypotheses if h in chosen]


def _show_model(model, symbols: frozenset) -> str:
    shown = []
    for declaration in sorted(model.decls(), key=lambda d: d.name()):
        if declaration.name() in symbols:
            value = model[declaration]
            text = value.as_decimal(6) if hasattr(value, "as_decimal") else str(value)
            shown.append(f"{declaration.name()} = {text.rstrip('?')}")
    return ", ".join(shown) or "(any values)"


def _numeric_evidence(claim: Claim, limits: Limits) -> str:
    reading = claim.readings[0]
    try:
        left = safe_math.rational_value(reading.lhs, limits)
        right = safe_math.rational_value(reading.rhs, limits)
        return f"false: left side is {format_number(left)}, right side is {format_number(right)}"
    except Unsafe:
        return "false"
