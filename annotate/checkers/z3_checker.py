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
claims are proved the same way (with the rounding tolerance of `claims.tolerance`). Every
solver call has a timeout; a timeout or an untranslatable claim is `unknown`.

A claim whose side conditions cannot hold is never verified (no values satisfy them, so none
would falsify it): one that divides by zero whatever its variables (`<<10/0=3>>`, `x/0 = 5`)
is refuted; one whose denominator is zero only given H (`1/(x-3) = 7` after `x = 3`) is
`unknown`, as H is read from free text.

Solutions reason in ways a plain conjunction of equations does not capture, so:

- "does not follow" is refuted only when H pins every variable of the claim to a few values
  (none of several probe values fits it): `x^2 = 9` pins x, so `x = 3` is refuted; after
  `ar^4 = 7!` the claim `ar^7 = 8!` is new information, not an error. A contradiction is
  refuted only when H pins every variable involved (the unsat core's): equations that leave a
  variable free describe a curve or hold for all x, and letters get reused.
- hypotheses come from the problem and the last `window` (5) steps only.
- a new value for a variable (`Let's try n = 2` after `n = 1`) replaces the old one and what
  was derived from it; steps that try or suppose ("let's", "try", "suppose", "check") add
  nothing to H; a step with "if" is checked on its own equations only; claims followed by a
  unit (`3x = 1 hour`, then `3x = 60 minutes`) are not hypotheses.
- in a word problem (a problem text without LaTeX math) variables count things: they are
  assumed non-negative (`A^2 = 25` gives `A = 5`), unless that contradicts H.
- a step that states alternatives ("x = 3 or x = -3", `\\pm`) or doubts itself is not refuted,
  nor is an inequality with variables (usually a case: "the case n - 3 < 0"); `i`, `omega`,
  `z` are taken for complex numbers and not translated.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from fractions import Fraction

import sympy

from annotate.checkers import safe_math
from annotate.checkers.base import Checker
from annotate.checkers.claims import Claim, extract_claims, math_spans, tolerance
from annotate.checkers.results import ClaimResult, format_number, summarize
from annotate.checkers.safe_math import Limits, NotRational, Unsafe
from prm.records import Verdict

MAX_POWER = 12  # x^n with |n| above this is not expanded for z3
# Values a variable that the hypotheses leave free can take (signs, sizes, non-integers).
_PROBES = ("7/3", "-5/2", "1/7", "-3/11", "97/7", "-89/9", "7919/13", "-6007/29", "1000003/7")


# Words that make a step a trial whose equations hold only inside it ("Let's try n=2").
TRIAL = re.compile(r"\b(try|trying|tried|let's|let us|suppose|assume|assuming|test|testing|"
                   r"check|checking|plug|plugging|guess|case|cases|wlog|whether)\b", re.IGNORECASE)
# Names that stand for complex numbers, which z3's real arithmetic would misread.
COMPLEX_NAMES = frozenset({"i", "omega", "zeta", "z"})


CONDITIONAL = re.compile(r"\bif\b", re.IGNORECASE)


class Untranslatable(Unsafe):
    """The claim uses something z3's real arithmetic cannot express here."""


@dataclass
class _Translation:
    """A claim as a z3 formula, with the side conditions its terms need (sqrt definitions,
    non-zero denominators) and the variables it mentions."""

    formula: object
    conditions: list = field(default_factory=list)
    symbols: frozenset = frozenset()
    divisors: list = field(default_factory=list)  # the `d != 0` among the conditions


class _Translator:
    def __init__(self, limits: Limits):
        import z3

        self.z3, self.limits = z3, limits
        self.variables: dict[str, object] = {}
        self.roots = 0
        self.divisors: list = []  # `d != 0` of the claim being translated

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
            if expr.name in COMPLEX_NAMES:
                raise Untranslatable(f"{expr.name} is (probably) a complex number")
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
                self.divisors.append(base != 0)
                return 1 / power
            return power
        raise Untranslatable(f"{type(expr).__name__} with variables")

    def claim(self, claim: Claim, literal_only: bool = False) -> _Translation:
        """The claim as a formula: any of its readings (only the literal one if asked)."""
        conditions: list = []
        self.divisors = []
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
        return _Translation(formula, conditions, symbols, self.divisors)

    def _tolerance(self, reading, claim: Claim) -> Fraction:
        try:
            left = safe_math.rational_value(reading.lhs, self.limits)
            right = safe_math.rational_value(reading.rhs, self.limits)
            exact = left if reading.stated_value == right else right
        except NotRational:
            exact = None
        return tolerance(reading, claim, exact)

    def _relation(self, relation: str, left, right, unit: Fraction):
        z3 = self.z3
        if relation in ("=", "≈"):
            if unit:
                bound = self.constant(unit)
                return z3.And(left - right <= bound, right - left <= bound)
            return left == right
        return {"<": left < right, ">": left > right, "<=": left <= right,
                ">=": left >= right}[relation]


@dataclass
class _Hypothesis:
    text: str
    translation: _Translation
    assigns: str | None = None  # "n" for `n = 2`: a value given to a variable, which a later
    # `n = 3` replaces (solutions try values: "Let's try n=2", "If a=1")
    origin: int = 0  # 0: the problem; k: the k-th step (1-based)


def _assigned_variable(claim: Claim) -> str | None:
    """The variable of a claim `v = <number>` (or `<number> = v`), else None."""
    if claim.relation != "=" or not claim.readings:
        return None
    reading = claim.readings[0]
    for var, value in ((reading.lhs, reading.rhs), (reading.rhs, reading.lhs)):
        if isinstance(var, sympy.Symbol) and not value.free_symbols:
            return var.name
    return None


class Z3Checker(Checker):
    """Proves each equation of a step from the equations of the problem and earlier steps."""

    name = "z3"

    def __init__(self, limits: Limits = safe_math.DEFAULT_LIMITS, timeout_ms: int = 1000,
                 seconds: float = 10.0, refute: str = "counterexample",
                 nonnegative: bool | None = None, window: int | None = 5):
        if refute not in ("counterexample", "contradiction"):
            raise ValueError("refute must be 'counterexample' or 'contradiction'")
        self.limits, self.timeout_ms, self.seconds, self.refute = limits, timeout_ms, seconds, refute
        self._last = None  # (problem, previous steps), translator, hypotheses of the last call
        self.nonnegative = nonnegative  # variables >= 0; None: yes for word problems (no LaTeX)
        self.window = window  # hypotheses from the problem and the last `window` steps only

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
        translator, hypotheses = self._hypotheses(problem, previous_steps)
        if CONDITIONAL.search(step):  # "if 100 + 100x = 120 then x = .2": its own context
            hypotheses = []
        if self.window is not None:  # letters get reused: only the problem and recent steps
            oldest = len(previous_steps) + 1 - self.window
            hypotheses = [h for h in hypotheses if h.origin == 0 or h.origin >= oldest]
        here = len(previous_steps) + 1
        nonnegative = self.nonnegative
        if nonnegative is None:  # a word problem counts things; a LaTeX problem may not
            nonnegative = bool(problem.strip()) and not math_spans(problem)
        results = []
        for claim in self._claims(step):
            result = self._judge(translator, hypotheses, claim, nonnegative)
            results.append(result)
            if result.status == "assumption" and _usable_hypothesis(claim, True):
                self._assume(translator, hypotheses, claim, here)
        return results

    def _hypotheses(self, problem: str, previous_steps: list[str]):
        """The translator and hypotheses after the problem and `previous_steps`, built
        incrementally when the steps of one trace are checked in order."""
        key = (problem, tuple(previous_steps))
        last = self._last
        if last is not None and last[0] == key:
            return last[1], list(last[2])
        if last is not None and previous_steps and last[0] == (problem, tuple(previous_steps[:-1])):
            translator, hypotheses = last[1], list(last[2])
            texts = [(len(previous_steps), previous_steps[-1])]
        else:
            translator, hypotheses = _Translator(self.limits), []
            texts = list(enumerate([problem, *previous_steps]))
        for index, text in texts:
            # a trial ("Let's try n = 2", "If a = 1") holds only inside its own step
            if index > 0 and TRIAL.search(text):
                continue
            for claim in self._claims(text):
                # a question mark in the problem is the question, not doubt about its equations
                if _usable_hypothesis(claim, index > 0):
                    self._assume(translator, hypotheses, claim, index)
        self._last = (key, translator, list(hypotheses))
        return translator, hypotheses

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

    def _assume(self, translator: _Translator, hypotheses: list[_Hypothesis], claim: Claim,
                origin: int = 0) -> None:
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
            assigns = _assigned_variable(claim)
            if assigns is not None:  # a new value for the variable replaces the old one
                hypotheses[:] = _without_value_of(hypotheses, assigns)
            candidate = hypotheses + [_Hypothesis(claim.text, translation, assigns, origin)]
            if self._solver(_facts(candidate)).check() == self.z3.sat:
                hypotheses.append(candidate[-1])
                return

    def _judge(self, translator: _Translator, hypotheses: list[_Hypothesis], claim: Claim,
               nonnegative: bool = False) -> ClaimResult:
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
        undefined = self._undefined(conclusion, claim)
        if undefined is not None:
            return undefined
        negated = z3.Not(conclusion.formula)
        alone = self._solver(conclusion.conditions + [negated]).check()
        if alone == z3.unsat:
            what = "an identity" if conclusion.symbols else "true"
            return ClaimResult(claim, "verified", f"{what} (z3 proves it)")
        if not conclusion.symbols:
            if alone == z3.sat:
                return self._refuted(claim, _numeric_evidence(claim, self.limits))
            return ClaimResult(claim, "unknown", f"z3: {alone}")
        assigns = _assigned_variable(claim)
        if assigns is not None:  # `n = 2` after `n = 1`: trying another value, not an error
            hypotheses = _without_value_of(hypotheses, assigns)
        relevant = _relevant(hypotheses, conclusion.symbols)
        known = frozenset().union(*(h.translation.symbols for h in relevant)) if relevant else frozenset()
        if not relevant or not conclusion.symbols <= known:
            return ClaimResult(claim, "assumption", "new equation: nothing before constrains "
                               + ", ".join(sorted(conclusion.symbols - known)))
        facts = _facts(relevant) + conclusion.conditions
        if self._solver(facts).check() == z3.unsat:  # H and C's side conditions exclude each other
            what = "divides by zero" if conclusion.divisors else "is undefined (a negative root?)"
            return ClaimResult(claim, "unknown", f"{what} given {used_texts(relevant)}: never "
                               "verified; not refuted, since hypotheses from free text may be wrong")
        if nonnegative:  # quantities of a word problem: x^2 = 25 gives x = 5
            names = conclusion.symbols.union(*(h.translation.symbols for h in relevant))
            signs = [z3.Real(name) >= 0 for name in sorted(names)]
            if self._solver(facts + signs).check() == z3.sat:  # never from inconsistent facts
                facts += signs
        solver = self._solver(facts + [negated])
        outcome = solver.check()
        used = used_texts(relevant)
        if outcome == z3.unsat:
            return ClaimResult(claim, "verified", f"follows from {used}")
        if outcome != z3.sat:
            return ClaimResult(claim, "unknown", f"z3: {outcome} (timeout {self.timeout_ms} ms)")
        model = solver.model()
        consistent = self._solver(facts + [conclusion.formula]).check()
        if claim.alternatives or claim.relation not in ("=", "≈"):
            # "x^2 = 64 or x^2 = 1", "the case n - 3 < 0": cases and choices, not errors
            what = "states alternatives" if claim.alternatives else "is an inequality (a case?)"
            return ClaimResult(claim, "unknown", f"does not follow from {used}, but the step {what}")
        if consistent == z3.unsat:
            core = self._core(relevant, conclusion)
            tried = [h.text for h in core if h.assigns is not None] if assigns else []
            if tried:
                return ClaimResult(claim, "unknown", "conflicts with the earlier value(s) "
                                   + "; ".join(tried) + " (values tried in turn are not an error)")
            involved = conclusion.symbols.union(*(h.translation.symbols for h in core))
            free = [name for name in sorted(involved) if name not in self._pinned(facts, {name})]
            if free:
                return ClaimResult(claim, "unknown", "conflicts with " + "; ".join(h.text for h in core)
                                   + ", which leave " + ", ".join(free) + " free (a curve, an "
                                   "identity in x, a reused letter?): not refuted")
            return self._refuted(claim, "contradicts " + "; ".join(h.text for h in core[:4]))
        pinned = self._pinned(facts, conclusion.symbols)
        if not pinned:
            return ClaimResult(claim, "assumption", f"new equation: {used} leave "
                               + ", ".join(sorted(conclusion.symbols)) + " free")
        if len(pinned) < len(conclusion.symbols):  # about a free variable too: not decided
            return ClaimResult(claim, "unknown", f"does not follow from {used}, but "
                               + ", ".join(sorted(conclusion.symbols - set(pinned))) + " are free")
        if self.refute == "contradiction":
            return ClaimResult(claim, "unknown", f"does not follow from {used} (not refuted: "
                               "refute='contradiction')")
        return self._refuted(claim, f"does not follow from {used}: counter-example "
                             + _show_model(model, conclusion.symbols))

    def _undefined(self, conclusion: _Translation, claim: Claim) -> ClaimResult | None:
        """A claim whose terms are undefined whatever the values of its variables: one that
        divides by zero (`<<10/0=3>>`, `x/0 = 5`) is refuted, one that needs the square root
        of a negative number is unknown (it may be about complex numbers). Without this, z3
        would verify it: no values satisfy its side conditions, so none falsify it."""
        z3 = self.z3
        if self._solver(conclusion.conditions).check() != z3.unsat:
            return None
        roots_only = [c for c in conclusion.conditions
                      if not any(c.eq(d) for d in conclusion.divisors)]
        if conclusion.divisors and self._solver(roots_only).check() != z3.unsat:
            return self._refuted(claim, "undefined: it divides by zero")
        return ClaimResult(claim, "unknown", "undefined in the reals (the square root of a "
                           "negative number)")

    def _core(self, relevant: list[_Hypothesis], conclusion) -> list[_Hypothesis]:
        """The hypotheses the claim conflicts with (a z3 unsat core)."""
        z3 = self.z3
        solver = self._solver(conclusion.conditions + [conclusion.formula])
        labels = {}
        for number, hypothesis in enumerate(relevant):
            label = z3.Bool(f"hypothesis_{number}")
            labels[str(label)] = hypothesis
            solver.assert_and_track(z3.And(*hypothesis.translation.conditions,
                                           hypothesis.translation.formula), label)
        if solver.check() != z3.unsat:
            return list(relevant)
        return [labels[str(label)] for label in solver.unsat_core() if str(label) in labels]

    def _pinned(self, facts: list, symbols: frozenset) -> list[str]:
        """The claim's variables that the hypotheses pin down to a few values: none of the
        probe values (spread over signs and magnitudes) is possible for them.

        A claim that neither follows nor contradicts is refuted only if it is about such a
        variable (`x^2 = 9` pins x to 3 or -3, so `x = 3` does not follow). When every
        variable can still take the probe values, the claim is new information (`ar^7 = 8!`
        after `ar^4 = 7!`, `7S = 847` after `S + 2S + 4S = 7S`), not an error.
        """
        z3 = self.z3
        pinned = []
        for name in sorted(symbols):
            variable = z3.Real(name)
            if not any(self._solver(facts + [variable == z3.RealVal(probe)]).check() == z3.sat
                       for probe in _PROBES):
                pinned.append(name)
        return pinned

    def _refuted(self, claim: Claim, detail: str) -> ClaimResult:
        if claim.hedged:
            return ClaimResult(claim, "unknown", detail + ", but the step itself questions or "
                               "rejects it")
        return ClaimResult(claim, "refuted", detail)


def used_texts(hypotheses: list[_Hypothesis]) -> str:
    """The first few hypotheses, for evidence."""
    return "; ".join(h.text for h in hypotheses[:4]) + (" ..." if len(hypotheses) > 4 else "")


def _without_value_of(hypotheses: list[_Hypothesis], variable: str) -> list[_Hypothesis]:
    """The hypotheses without the last value given to `variable` and without what was
    derived about `variable` after it (`2n + 1 = 5` after `n = 2`), before a new value."""
    last = max((i for i, h in enumerate(hypotheses) if h.assigns == variable), default=None)
    if last is None:
        return list(hypotheses)
    return [h for i, h in enumerate(hypotheses)
            if h.assigns != variable and not (i > last and variable in h.translation.symbols)]


def _usable_hypothesis(claim: Claim, doubtable: bool) -> bool:
    """A claim with variables that can serve as a hypothesis: parsed, not doubted by its step,
    and without a unit after it (`3x = 1 hour` and `3x = 60 minutes` are both right)."""
    return (claim.problem is None and bool(claim.readings) and claim.symbolic
            and not (doubtable and claim.hedged) and claim.unit is None)


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
