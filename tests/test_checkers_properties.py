"""The claim extractor tested as a grammar: random claims whose truth is known by construction.

Each strategy writes a step the way people write arithmetic (chains, fractions, calculator
notes, thousands groups, money, percentages, LaTeX) together with whether it is true, computed
here with exact `Fraction`s. Whatever the checkers cannot read may be `unknown`; but a false
step must never be `verified` and a true one never `refuted`, by sympy or by z3. The forms
the checkers are built to read must also be decided (so the test cannot pass by reading
nothing).

Deterministic (`derandomize=True`, no example database) so that CI cannot flake, and small
(60 examples per form) so that the default suite stays fast; `PRM_PROPERTY_EXAMPLES=2000`
searches deeper.
"""

import os
from dataclasses import dataclass
from fractions import Fraction

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from annotate.checkers import get_checker

EXAMPLES = int(os.environ.get("PRM_PROPERTY_EXAMPLES", "60"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.too_slow])
CONNECTORS = st.sampled_from(["", "So ", "Then ", "Thus ", "He pays "])
ENDINGS = st.sampled_from(["", ".", " in total.", ", so"])
REPEATING_DENOMINATORS = (3, 7, 9, 11, 13, 17, 19, 21)  # coprime to 10: no ties when rounding
TERMINATING_DENOMINATORS = (2, 4, 5, 8, 10, 16, 20, 25, 40, 50)


@dataclass
class Case:
    text: str
    true: bool
    decided: bool = True  # both checkers must give verified/refuted, not unknown


@pytest.fixture(scope="module")
def checkers():
    return {name: get_checker(name) for name in ("sympy", "z3")}


def assert_sound(checkers, case: Case) -> None:
    for name, checker in checkers.items():
        verdict = checker.check("", [], case.text)
        wrong = "refuted" if case.true else "verified"
        assert verdict.status != wrong, \
            f"{name} {verdict.status} the {case.true} step {case.text!r}: {verdict.evidence}"
        if case.decided:
            assert verdict.status in ("verified", "refuted"), \
                f"{name} could not decide {case.text!r}: {verdict.evidence}"


def decimal(value: Fraction) -> str:
    """`value` (a terminating fraction) written exactly in decimals: 3/8 -> 0.375."""
    places = 0
    while (value * 10 ** places).denominator != 1:
        places += 1
    scaled = abs(value * 10 ** places).numerator
    digits = str(scaled).rjust(places + 1, "0")
    text = digits if places == 0 else f"{digits[:-places]}.{digits[-places:]}"
    return "-" + text if value < 0 else text


def wrong(value: int, draw) -> int:
    """An integer near `value` or a digit slip of it (8 -> 80), never `value` itself."""
    delta = draw(st.one_of(st.integers(1, 20), st.just(abs(9 * value) or 1)))
    return value + draw(st.sampled_from([1, -1])) * delta


def _expression(draw):
    """`a op b` with an integer value (division only where it is exact)."""
    a, b = draw(st.integers(0, 999)), draw(st.integers(1, 99))
    op = draw(st.sampled_from(["+", "-", "*", "x", "/"]))
    if op == "/":
        a = a * b
    value = {"+": a + b, "-": a - b, "*": a * b, "x": a * b, "/": a // b}[op]
    return f"{a} {op} {b}", value


@st.composite
def chains(draw):
    """`2 + 3 = 5 = 6`: every link after the expression restates (or misstates) its value."""
    expression, value = _expression(draw)
    links = draw(st.lists(st.booleans(), min_size=1, max_size=3))
    written = []
    for holds in links:
        if holds:
            written.append(draw(st.sampled_from([str(value), f"{value}.0"])))
        else:
            written.append(str(wrong(value, draw)))
    text = draw(CONNECTORS) + " = ".join([expression, *written]) + draw(st.sampled_from(["", "."]))
    return Case(text, all(links))


@st.composite
def fractions(draw):
    """`3/4 = 6/8`, `3/8 = 0.375`, `1/3 = 0.33`, and calculator notes `<<3/4=3/4>>3/4`."""
    numerator = draw(st.integers(1, 60))
    form = draw(st.sampled_from(["equal", "note", "decimal", "rounded"]))
    holds = draw(st.booleans())
    if form == "equal":
        denominator = draw(st.integers(2, 60))
        factor = draw(st.integers(1, 5))
        other = numerator * factor + (0 if holds else draw(st.sampled_from([-1, 1, 2])))
        return Case(f"{numerator}/{denominator} = {other}/{denominator * factor}",
                    Fraction(numerator, denominator) == Fraction(other, denominator * factor))
    if form == "note":
        denominator = draw(st.integers(2, 60))
        value = Fraction(numerator, denominator)
        result = f"{value.numerator}/{value.denominator}" if value.denominator > 1 \
            else str(value.numerator)
        if holds:
            return Case(f"The fraction is <<{numerator}/{denominator}={result}>>{result}", True)
        slip = value + draw(st.sampled_from([Fraction(1), Fraction(1, value.denominator + 1)]))
        slipped = f"{slip.numerator}/{slip.denominator}"
        note_wrong = draw(st.booleans())
        return Case(f"<<{numerator}/{denominator}={slipped if note_wrong else result}>>"
                    f"{result if note_wrong else slipped}", False)
    if form == "decimal":
        denominator = draw(st.sampled_from(TERMINATING_DENOMINATORS))
        value = Fraction(numerator, denominator)
        places = len(decimal(value).partition(".")[2])
        stated = value if holds else value + draw(st.sampled_from([1, -1, 3])) / Fraction(10 ** places)
        return Case(f"{numerator}/{denominator} = {_fixed(stated, places)}", holds)
    denominator = draw(st.sampled_from(REPEATING_DENOMINATORS))
    value = Fraction(numerator, denominator)
    if value.denominator == 1:
        value = Fraction(numerator * denominator + 1, denominator)
    places = draw(st.integers(1, 4))
    rounded = round(value, places)  # no ties: the denominator is coprime to 10
    stated = rounded if holds else rounded + draw(st.sampled_from([1, -1, 2])) / Fraction(10 ** places)
    return Case(f"{value.numerator}/{value.denominator} = {_fixed(stated, places)}", holds)


def _fixed(value: Fraction, places: int) -> str:
    """`value` written with exactly `places` decimals (it has at most that many)."""
    text = decimal(value)
    whole, _, digits = text.partition(".")
    return f"{whole}.{digits.ljust(places, '0')}" if places else whole


@st.composite
def thousands(draw):
    """`1,200 + 3,400 = 4,600` and `$1,200 / 4 = $300`: commas group thousands."""
    a, b = draw(st.integers(1000, 999_999)), draw(st.integers(2, 9))
    op = draw(st.sampled_from(["+", "-", "*", "/"]))
    if op in ("+", "-"):
        b = draw(st.integers(1000, 999_999))
        a, b = max(a, b), min(a, b)
    if op == "/":
        a -= a % b
    value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
    holds = draw(st.booleans())
    stated = value if holds else value + draw(st.sampled_from([1, -1, 1000, -100]))
    money = "$" if draw(st.booleans()) else ""
    right = f"{b:,}" if op in ("+", "-") else str(b)
    sign = "-" if stated < 0 else ""
    text = f"{money}{a:,} {op} {money if op in ('+', '-') else ''}{right} = {sign}{money}{abs(stated):,}"
    return Case(draw(CONNECTORS) + text + draw(ENDINGS), holds)


@st.composite
def money(draw):
    """`$1.25 + $2.50 = $3.75`, `$4.50 * 3 = $13.50`: dollars and cents, exact."""
    a, b = draw(st.integers(1, 99_99)), draw(st.integers(1, 99_99))
    op = draw(st.sampled_from(["+", "-", "*"]))
    cents = Fraction(1, 100)
    if op == "*":
        b = draw(st.integers(2, 12))
        value, right = a * b * cents, str(b)
    else:
        value = (a + b if op == "+" else a - b) * cents
        right = f"${_fixed(b * cents, 2)}"
    holds = draw(st.booleans())
    stated = value if holds else value + draw(st.sampled_from([1, -1, 10, 100])) * cents
    sign = "-" if stated < 0 else ""
    text = f"${_fixed(a * cents, 2)} {op} {right} = {sign}${_fixed(abs(stated), 2)}"
    return Case(draw(CONNECTORS) + text + draw(ENDINGS), holds)


@st.composite
def percents(draw):
    """`25% of 80 = 20`, `25% of $80 = $20` and `10/40*100 = 25%`."""
    holds = draw(st.booleans())
    if draw(st.booleans()):
        percent, base = draw(st.integers(1, 200)), draw(st.integers(1, 500))
        value = Fraction(percent * base, 100)
        places = len(decimal(value).partition(".")[2])
        stated = value if holds else value + draw(st.sampled_from([1, -1, 5])) / Fraction(10 ** places)
        money = "$" if draw(st.booleans()) else ""
        return Case(f"{draw(CONNECTORS)}{percent}% of {money}{base} = {money}{_fixed(stated, places)}",
                    holds)
    whole = draw(st.sampled_from([2, 4, 5, 10, 20, 25, 40, 50, 100, 200]))
    part = draw(st.integers(1, whole * 2))
    percent = Fraction(part * 100, whole)
    places = len(decimal(percent).partition(".")[2])
    stated = percent if holds else percent + draw(st.sampled_from([1, -1, 10])) / Fraction(10 ** places)
    return Case(f"{draw(CONNECTORS)}{part}/{whole}*100 = {_fixed(stated, places)}%", holds)


@st.composite
def latex(draw):
    """`$\\frac{1}{2} + \\frac{1}{3} = \\frac{5}{6}$`, `\\(3 \\times 4 = 12 = 12\\)`, `1{,}200`."""
    delimiters = draw(st.sampled_from([("$", "$"), ("$$", "$$"), ("\\(", "\\)"), ("\\[", "\\]")]))
    holds = draw(st.booleans())
    form = draw(st.sampled_from(["fractions", "product chain", "thousands"]))
    if form == "fractions":
        a, b, c, d = (draw(st.integers(1, 30)) for _ in range(4))
        value = Fraction(a, b) + Fraction(c, d)
        stated = value if holds else value + Fraction(1, value.denominator)
        body = f"\\frac{{{a}}}{{{b}}} + \\frac{{{c}}}{{{d}}} = " + (
            f"\\frac{{{stated.numerator}}}{{{stated.denominator}}}" if stated.denominator > 1
            else str(stated.numerator))
    elif form == "product chain":
        a, b = draw(st.integers(0, 99)), draw(st.integers(0, 99))
        links = draw(st.lists(st.booleans(), min_size=1, max_size=3))
        holds = all(links)
        written = [str(a * b) if ok else str(wrong(a * b, draw)) for ok in links]
        op = draw(st.sampled_from(["\\times", "\\cdot"]))
        body = " = ".join([f"{a} {op} {b}", *written])
    else:
        a, b = draw(st.integers(1000, 999_999)), draw(st.integers(1000, 999_999))
        stated = a + b if holds else a + b + draw(st.sampled_from([1, -1, 1000]))
        body = f"{a:,} + {b:,} = {stated:,}".replace(",", "{,}")
    return Case(f"{draw(CONNECTORS)}{delimiters[0]}{body}{delimiters[1]}", holds)


FORMS = {"chain": chains(), "fraction": fractions(), "thousands": thousands(), "money": money(),
         "percent": percents(), "latex": latex()}


@pytest.mark.parametrize("form", FORMS)
@SETTINGS
@given(data=st.data())
def test_no_false_step_is_verified_and_no_true_one_refuted(checkers, form, data):
    assert_sound(checkers, data.draw(FORMS[form], label=form))
