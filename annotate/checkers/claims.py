"""Finding the claims a step makes: the equalities (and LaTeX inequalities) it states.

A step may state arithmetic in three ways, found in this order:

1. GSM8K calculator notes `<<48/2=24>>24`: the note's expression must equal its result,
   and the number written right after `>>` must be that result (`note`, `note-result`; a
   fraction there is read whole: `<<3/4=3/4>>3/4`).
2. LaTeX math (`$...$`, `$$...$$`, `\\(...\\)`, `\\[...\\]`): relations split at top-level
   `=`, `\\approx`, `<`, `\\le`, ... with each side parsed by `safe_math.parse_latex`
   (`latex`). A `$` followed by a digit whose partner is also followed by a digit is a
   currency sign, not math (`$5 + $3 = $8`).
3. Plain text: runs of numbers, operators and `=` (`12 x 4 = 48`, `$1,200`, `25%`,
   `3+4 = 7 x 2 = 14`) parsed by `safe_math.parse_plain` (`arithmetic`).

Chains are checked link by link, every link, also one between two numbers once the chain has
an expression in it (`2 + 3 = 5 = 6` is false). A link `a = b op c` also holds under the
"running total" reading `a = b` (people write `3+4 = 7 x 2 = 14` meaning 3+4=7, then 7x2=14),
and a link between two numbers under the "chain's value" reading (`1/3 = 0.33 = 0.333`). A
side written as a percentage may be meant as its number (`10/40*100 = 25%`). These
alternatives are `Reading`s: a claim holds if any reading holds.

Plain text is ambiguous, and a misread claim would become a false refutation, so a side is
used only when it is clearly a whole expression: not cut off by a word that acts as an
operator (`half of 10 + 2`, `5 apples x 3`), not starting or ending with a binary operator,
and a link between two bare numbers outside a chain (`5 packs of 3 = 15`, `1 hour = 60
minutes`) is not a claim at all.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from fractions import Fraction

from annotate.checkers import safe_math
from annotate.checkers.safe_math import Limits, Token, Unsafe
from prm.formats.gsm8k import CALCULATOR_NOTE, WRITTEN_NUMBER

RELATIONS = ("=", "≈", "<", ">", "<=", ">=")

APPROXIMATE = re.compile(
    r"\b(about|approximately|approx|around|roughly|nearly|almost|rounded|rounding|round|"
    r"rounds|estimated?|estimates|nearest)\b|≈|~|\\approx|\\sim", re.IGNORECASE)
# The step says the quantity counts whole things ("100/3 = 33 whole boxes"): a whole number
# stated for a fractional value is then that value rounded, not a different number.
WHOLE_COUNT = re.compile(r"\b(whole|full|complete|entire)\b", re.IGNORECASE)
# The step doubts or rejects what it writes ("So $30025=13689$? I don't think so!"): a false
# equality in it is not an error of the step.
HEDGED = re.compile(
    r"\?|\b(not true|isn't true|not equal|incorrect|wrong|false|contradicts?|contradiction|"
    r"impossible|mistake|not correct|isn't correct|doesn't work|does not work|not possible|"
    r"can't be|cannot be|not the case|don't think|doesn't hold|does not hold|not hold|"
    r"doesn't satisfy|does not satisfy|not satisfy|plug|plugging|plugged|"
    r"substitut\w*|equation)\b", re.IGNORECASE)
ALTERNATIVES = re.compile(r"\b(or|either)\b|\\pm|±", re.IGNORECASE)
BARE_NUMBER = re.compile(r"\s*(?:\\?\$\s*)?(-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?|-?\.\d+)\s*(\\?%)?\s*")

# Words that make the number right after them (or right before them) an operand of a
# verbal expression, so an adjacent side is cut off: "half of 10 + 2 = 7", "$1 / 2 = 50 cents".
WORDS_BEFORE_CUT = frozenset("""of times by per plus minus over than twice half double triple thrice
    quarter third x X multiplied divided into from each""".split())
WORDS_AFTER_CUT = frozenset("""times plus minus divided multiplied over squared cubed percent less
    more x X of cents cent thousand thousands million millions billion billions hundred hundreds
    dozen dozens k K""".split())
# Words after which a number is a label, not a quantity: "Week 2 = 35 + 35", "day 1 * 2".
LABEL_WORDS = frozenset("""day week month year step page room level grade chapter part number no
    round game test quiz box bag item option question line floor row column team group class
    section unit lesson stage phase term trip shelf station house bus car tank jar pile batch
    stop lap exam match period remaining""".split())
# Words that may stand right before a bare number that starts a claim: "so 70 = 35 + 35".
CONNECTORS = frozenset("""so then thus hence is are was were be been gives give get gets got and
    or because since that therefore means mean which equals equal makes make has have had
    now yields leaves as""".split())
_GLUE = frozenset({",", ".", ":"})
_LATEX_CHARS = frozenset("\\_{}|&^'")
_RUN_KINDS = frozenset({"NUM", "PCT", "OP", "LP", "RP", "EQ", "APPROX", "BANG", "SYM", "FUNC", "CUR"})


@dataclass
class Reading:
    """One way to read a claim: `lhs` (relation) `rhs`; `stated` is the bare number written
    on one side, whose decimals decide the rounding tolerance; `percent` says `stated` was
    a percentage read as its number (25% -> 25)."""

    lhs: object
    rhs: object
    stated: str | None = None
    stated_value: Fraction | None = None
    how: str = "as written"  # or "percentage as a number", "running total", "chain's value"


@dataclass
class Claim:
    """One relation a step states, with every reading that would make it true.

    `problem` is set when the claim was found but cannot be checked (a side too large or
    outside the grammar): its verdict is `unknown`.
    """

    text: str
    kind: str  # note | note-result | arithmetic | latex
    relation: str = "="
    readings: list[Reading] = field(default_factory=list)
    approx: bool = False
    whole_count: bool = False  # the step says it counts whole things (`WHOLE_COUNT`)
    problem: str | None = None
    hedged: bool = False  # the step says the claim may be false: a refutation is not an error
    alternatives: bool = False  # the step states alternatives ("x = 3 or x = -3")
    unit: str | None = None  # the unit written after it ("3x = 1 hour"): hours are not minutes

    @property
    def symbolic(self) -> bool:
        return any(r.lhs.free_symbols or r.rhs.free_symbols for r in self.readings)

    @property
    def literal(self) -> Reading | None:
        return self.readings[0] if self.readings else None


# -- entry point -----------------------------------------------------------------------------

def extract_claims(text: str, limits: Limits = safe_math.DEFAULT_LIMITS) -> list[Claim]:
    """Every claim in one step, in the order: calculator notes, LaTeX, plain text.

    Results are cached (the same step is read by several checkers, and earlier steps again
    as hypotheses); treat the claims as read-only.
    """
    return list(_cached_claims(text, limits))


@functools.lru_cache(maxsize=8192)
def _cached_claims(text: str, limits: Limits) -> tuple[Claim, ...]:
    approx = bool(APPROXIMATE.search(text))
    claims = _extract(text, approx, limits)
    without_notes = CALCULATOR_NOTE.sub("", text)
    hedged = bool(HEDGED.search(without_notes))
    alternatives = bool(ALTERNATIVES.search(without_notes))
    whole_count = bool(WHOLE_COUNT.search(without_notes))
    for claim in claims:
        claim.whole_count = whole_count
        # a calculator note is the writer's own computation, never a doubted statement
        claim.hedged = hedged and claim.kind not in ("note", "note-result")
        claim.alternatives = alternatives
    return tuple(claims)


def _extract(text: str, approx: bool, limits: Limits) -> list[Claim]:
    claims = note_claims(text, approx, limits)
    has_notes = bool(claims) or "<<" in text
    plain = CALCULATOR_NOTE.sub("", text).replace("<<", " ").replace(">>", " ")
    spans = [] if has_notes else math_spans(plain)
    for start, end, content in spans:
        inline = plain[start] == "$" and plain[start:start + 2] != "$$"
        claims.extend(latex_claims(content, approx, limits, inline))
    pieces, last = [], 0
    for start, end, _ in spans:
        pieces.append(plain[last:start])
        pieces.append(" ; ")
        last = end
    pieces.append(plain[last:])
    claims.extend(plain_claims("".join(pieces), approx, limits))
    return claims


# -- calculator notes ------------------------------------------------------------------------

def note_claims(text: str, approx: bool, limits: Limits) -> list[Claim]:
    """Claims of GSM8K calculator notes `<<expr=value>>` and of the number written after them."""
    claims = []
    for match in CALCULATOR_NOTE.finditer(text):
        body = match.group(1)
        parts = body.split("=")
        claim = Claim(text=f"<<{body}>>", kind="note", approx=approx)
        claims.append(claim)
        if len(parts) < 2 or not parts[-1].strip():
            claim.problem = "calculator note without a result"
            continue
        result_text = parts[-1].strip()
        try:
            sides = [safe_math.parse_plain(safe_math.tokenize(p), limits) for p in parts]
        except Unsafe as err:
            claim.problem = f"{type(err).__name__}: {err}"
            continue
        stated = _bare_number(result_text)
        for left, right in zip(sides, sides[1:]):
            claim.readings.append(Reading(left, right, result_text if stated is not None else None,
                                          stated))
        if len(sides) > 2:  # a=b=c in one note: check each link, keep them in one claim
            claim.readings = [Reading(sides[0], sides[-1], claim.readings[-1].stated,
                                      claim.readings[-1].stated_value)]
        written = WRITTEN_NUMBER.match(text, match.end())
        if written and written.group(0) and any(ch.isdigit() for ch in written.group(0)):
            number = written.group(0)
            exponent = _EXPONENT.match(text, written.end())  # "<<0.00001*2=2e-05>>2e-05"
            fraction = _written_fraction(text, written, result_text)
            if exponent:
                number += exponent.group(0)
            elif fraction:
                number += fraction.group(0)
            try:
                result_expr = _written_result(number, limits)
            except Unsafe as err:
                claims.append(Claim(text=f"<<{body}>>{number}", kind="note-result",
                                    problem=str(err)))
                continue
            value = _bare_number(number)  # None for "2e-05" or "3/4": then it must be exact
            claims.append(Claim(
                text=f"<<{body}>>{number}", kind="note-result", approx=approx,
                readings=[Reading(sides[-1], result_expr, number if value is not None else None, value)]))
    return claims


_EXPONENT = re.compile(r"[eE][-+]?\d+(?![A-Za-z\d])")
_DENOMINATOR = re.compile(r"/(\d+)")
_MORE_ARITHMETIC = re.compile(r"\s*(?:[-+*/x×÷^=(]|<<|\d)")


def _written_fraction(text: str, written: re.Match, result_text: str) -> re.Match | None:
    """The `/4` of a fraction written after a note (`<<3/4=3/4>>3/4`), when it belongs to
    the written number: the note's own result is a fraction, or nothing arithmetic follows
    (in `<<6+6=12>>12/2=6` the `/2` starts the next computation, and the number is 12)."""
    denominator = _DENOMINATOR.match(text, written.end())
    if denominator is None or "." in written.group(0) or "," in written.group(0):
        return None
    if "/" in result_text or not _MORE_ARITHMETIC.match(text, denominator.end()):
        return denominator
    return None


def _written_result(number: str, limits: Limits):
    """The exact value of the number written after a note: digits, e-notation or `a/b`."""
    numerator, _, denominator = number.partition("/")
    value = safe_math.number_literal(numerator.replace(",", ""), limits)
    if denominator:
        divisor = safe_math.number_literal(denominator, limits)
        if divisor == 0:
            raise safe_math.NotParsed("a written fraction with denominator 0")
        value = safe_math.sympy.Rational(value, divisor)
    return value


def _bare_number(text: str) -> Fraction | None:
    match = BARE_NUMBER.fullmatch(text)
    if not match:
        return None
    value = Fraction(match.group(1).replace(",", ""))
    return value / 100 if match.group(2) else value


def decimals_of(stated: str) -> int:
    match = BARE_NUMBER.fullmatch(stated)
    number = match.group(1) if match else stated
    return len(number.split(".", 1)[1]) if "." in number else 0


FLOAT_DIGITS = 12  # a result written with this many significant digits is a float printout
FLOAT_RELATIVE = Fraction(1, 10 ** 10)  # ... and may carry that float's rounding error


def tolerance(reading: Reading, claim: Claim, exact: Fraction | None) -> Fraction:
    """How far the number a claim states may be from the exact value (`exact`; None when it
    is irrational) and still hold: half a unit of the stated number's last digit, and only
    where the step rounds.

    - A calculator note is exact by definition (`<<100/3=34>>34` is refuted; all 23,716
      notes of GSM8K train are exact), except for the rounding error of a floating-point
      calculator, whose printout has 12 or more significant digits after a decimal point
      (`<<800/3=266.6666666666667>>`, `<<-9.38+10=0.6199999999999992>>`: relative 1e-10).
    - With a rounding word or `≈` in the step ("about", "rounded", "to the nearest", ...):
      half a unit of the last significant digit (`about 100/3 = 30` within 5, `1/3 ≈ 0.33`
      within 0.005).
    - Without one, only where the stated number has fewer decimals than the value needs and
      was written as a rounded figure: a number with decimals (`10/3 = 3.33`, `2/3 = 0.67`),
      a percentage (`1/3 = 33%`), the number written after a note
      (`<<350/15=23.333333333333332>>23`), or a whole number when the step says it counts
      whole things (`100/3 = 33 whole boxes`). A whole number stated for a fractional value
      is otherwise a different number, not a rounding: `1/2 = 0`, `1/2 = 1`, `5/2 = 2`,
      `\\frac{7}{2} = 4` are refuted. An irrational value written as a whole number is never
      a rounding (`\\pi = 4`, `\\pi = 3`, `\\sin(1) = 0`), and an exactly representable
      value gets none (`100/4 = 25.1`).
    - A value exactly halfway rounds away from zero, so it has one rounding only: with
      "about", `1/2 = 1` holds and `1/2 = 0` does not.
    """
    if reading.stated is None:
        return Fraction(0)
    stated = reading.stated.strip()
    slack = _float_slack(stated, exact)
    if claim.kind == "note":
        return slack
    percent = stated.endswith("%")
    places = decimals_of(stated)
    scale = Fraction(1, 100) if percent else Fraction(1)
    unit = Fraction(1, 10 ** places) * scale
    if claim.approx:
        if places == 0:  # "about 30": the trailing zeros were rounded away
            digits = stated.rstrip("%").rstrip("\\").replace(",", "").lstrip("$-").split(".")[0]
            zeros = len(digits) - len(digits.rstrip("0"))
            unit = Fraction(10 ** min(zeros, max(len(digits) - 1, 0))) * scale
        return max(_half_unit(unit, exact, reading.stated_value), slack)
    if exact is None:
        return unit / 2 if places > 0 else Fraction(0)
    if (exact / scale * 10 ** places).denominator == 1:
        return slack  # the value fits in the written decimals: no rounding happened
    if places == 0 and not percent and claim.kind != "note-result" and not claim.whole_count:
        return slack  # a whole number for a fractional value, and nothing says it rounds
    return max(_half_unit(unit, exact, reading.stated_value), slack)


def _half_unit(unit: Fraction, exact: Fraction | None, stated: Fraction | None) -> Fraction:
    """Half a unit, except at a tie rounded toward zero: a value exactly halfway between two
    written numbers rounds away from zero (`0.5` is 1, `-2.5` is -3), so it has one rounding."""
    if exact is not None and stated is not None and abs(exact - stated) == unit / 2 \
            and abs(stated) < abs(exact):
        return Fraction(0)
    return unit / 2


def _float_slack(stated: str, exact: Fraction | None) -> Fraction:
    """The rounding error a floating-point printout such as `266.6666666666667` may carry."""
    if exact is None or "." not in stated:
        return Fraction(0)
    digits = "".join(ch for ch in stated if ch.isdigit()).lstrip("0")
    return abs(exact) * FLOAT_RELATIVE if len(digits) >= FLOAT_DIGITS else Fraction(0)


# -- plain text ------------------------------------------------------------------------------

def plain_claims(text: str, approx: bool, limits: Limits) -> list[Claim]:
    """Claims in the plain-text runs of `text` (chains checked link by link)."""
    tokens = safe_math.tokenize(text)
    claims = []
    for start, end in _runs(tokens):
        run = tokens[start:end]
        if not any(t.kind in ("EQ", "APPROX") for t in run):
            continue
        claims.extend(_chain_claims(tokens, start, end, text, approx, limits))
    return claims


def _runs(tokens: list[Token]) -> list[tuple[int, int]]:
    runs, start = [], None
    for i, token in enumerate(tokens):
        if token.kind in _RUN_KINDS:
            if start is None:
                start = i
        elif start is not None:
            runs.append((start, i))
            start = None
    if start is not None:
        runs.append((start, len(tokens)))
    return runs


def _split_sides(run: list[Token]) -> tuple[list[list[Token]], list[str]]:
    sides, relations, current = [], [], []
    for token in run:
        if token.kind in ("EQ", "APPROX"):
            sides.append(current)
            relations.append("=" if token.kind == "EQ" else "≈")
            current = []
        else:
            current.append(token)
    sides.append(current)
    return sides, relations


def _balance(side: list[Token], first: bool, last: bool) -> list[Token] | None:
    """Drop parentheses left unmatched by the run's edges; None if still unbalanced."""
    side = list(side)
    if first:
        while side and side[0].kind == "LP" and _depth(side) > 0:
            side = side[1:]
    if last:
        while side and side[-1].kind == "RP" and _depth(side) < 0:
            side = side[:-1]
    depth = 0
    for token in side:
        depth += token.kind == "LP"
        depth -= token.kind == "RP"
        if depth < 0:
            return None
    return side if depth == 0 else None


def _depth(side: list[Token]) -> int:
    return sum(t.kind == "LP" for t in side) - sum(t.kind == "RP" for t in side)


def _singular(word: str) -> str:
    word = word.lower()
    return word[:-1] if word.endswith("s") and len(word) > 3 else word


def _first_side_cut(side: list[Token], tokens: list[Token], start: int) -> bool:
    """Whether the text before the run makes its first side a fragment of something larger."""
    before = tokens[start - 1] if start else None
    if before is None:
        return False
    head = side[0]
    if head.kind == "OP" and before.kind in ("WORD", "NUM", "SYM"):
        return True  # "10 apples - 5 = 5": the minus is binary, its left operand is cut off
    if before.kind == "SEP" and before.text in _GLUE and before.end == head.start and start >= 2 \
            and tokens[start - 2].kind == "NUM" and tokens[start - 2].end == before.start:
        return True  # "16,0000/10", "6:00+48", ". 84"
    if before.kind == "SEP" and before.text in _GLUE and start >= 2 and (
            tokens[start - 2].kind == "OP"
            or (tokens[start - 2].kind == "NUM" and tokens[start - 2].end == before.start
                and not _ends_a_claim(before, head))):
        return True  # "14, 400 / 80", ".8 + . 84"
    if before.kind == "SEP" and before.text in _LATEX_CHARS or (
            start >= 2 and tokens[start - 2].kind == "SEP" and tokens[start - 2].text == "\\"):
        return True  # LaTeX written without $...$: "s_2^2=486\\sqrt{3}", "7\\,\\S\\, 2"
    if before.kind != "WORD":
        return False
    word = before.text
    if before.end == head.start:
        return True  # an identifier such as D3
    if word in WORDS_BEFORE_CUT or _singular(word) in LABEL_WORDS:
        return True
    if start >= 2 and tokens[start - 2].kind == "OP" and tokens[start - 2].value in ("*", "/"):
        return True  # "6 * feet 5": a unit inside a longer expression
    if _is_bare(side) and word.lower() not in CONNECTORS:
        return True  # "Week 2 = 35 + 35", "Remaining 10 = ..."
    if word.lower() == "and" and start >= 2 and tokens[start - 2].kind == "NUM" \
            and len(side) >= 3 and side[1].kind == "OP" and side[1].value == "/":
        return True  # a mixed number: "1 and 1/4"
    return False


def _ends_a_claim(glue: Token, head: Token) -> bool:
    """Whether `7, ` or `10. ` before a spaced number ends one claim rather than splits a
    number: a full stop followed by a space ends a sentence (`5 * 2 = 10. 10 + 3 = 14`), and
    a comma does unless three digits follow it, as in a thousands group written with a
    space (`14, 400 / 80`)."""
    if glue.end == head.start:
        return False
    if glue.text == ".":
        return True
    return glue.text == "," and not (head.kind == "NUM" and len(head.text) == 3
                                     and head.text.isdigit())


def _last_side_cut(side: list[Token], tokens: list[Token], end: int) -> bool:
    """Whether the text after the run makes its last side a fragment of something larger."""
    after = tokens[end] if end < len(tokens) else None
    if after is None:
        return False
    tail = side[-1]
    glued = after.start == tail.end
    if after.kind == "WORD":
        if after.text in WORDS_AFTER_CUT:
            return True  # "= 50 cents", "= 5 thousand"
        if after.text.lower() == "and" and _proper_fraction_at(tokens, end + 1):
            return True  # a mixed number: "17/3 = 5 and 2/3 loads"
        following = tokens[end + 1] if end + 1 < len(tokens) else None
        if following is not None and following.kind == "OP" and following.value in ("*", "/", "^"):
            return True  # "= 30 feet / 6": the unit sits inside a longer expression
        if glued and (not _is_bare(side) or len(after.text) == 1
                      or after.text.lower() in ("bn", "mn")):
            return True  # "10+4c", "(1/2)*2M", "= 5k"
    if after.kind == "SEP" and after.text in _LATEX_CHARS:
        return True
    if after.kind == "SEP" and after.text in _GLUE and glued and end + 1 < len(tokens) \
            and tokens[end + 1].kind == "NUM" and tokens[end + 1].start == after.end:
        return True  # "=6:48", "= 1.2.3"
    return False


def _proper_fraction_at(tokens: list[Token], start: int) -> bool:
    """Whether `a/b` with a < b (maybe in parentheses or after a currency sign: `$1/3`)
    starts at `tokens[start]`."""
    while start < len(tokens) and tokens[start].kind in ("LP", "CUR"):
        start += 1
    parts = tokens[start:start + 3]
    if len(parts) < 3 or parts[0].kind != "NUM" or parts[2].kind != "NUM" \
            or parts[1].kind != "OP" or parts[1].value != "/":
        return False
    try:
        return safe_math.number_literal(parts[0].value) < safe_math.number_literal(parts[2].value)
    except Unsafe:
        return False


def _usable_side(side: list[Token], first: bool, last: bool, tokens: list[Token], start: int,
                 end: int) -> list[Token] | None:
    if last:  # "15% of $300" after the last "=": the claim is about the percentage
        cut = next((i for i, t in enumerate(side) if t.kind == "OP" and t.text == "of"), None)
        if cut is not None:
            side = side[:cut]
    side = _balance(side, first, last)
    if not side:
        return None
    head, tail = side[0], side[-1]
    if any(t.kind == "NUM" and len(t.text) > 1 and t.text[0] == "0" and t.text[1].isdigit()
           for t in side):
        return None  # "0900" is a clock time, not a number
    if head.kind in ("BANG", "PCT") or (head.kind == "OP" and head.value not in "+-"):
        return None
    if first and _first_side_cut(side, tokens, start):
        return None
    if tail.kind in ("OP", "FUNC", "CUR", "LP"):
        return None
    if last and _last_side_cut(side, tokens, end):
        return None
    return side


def _is_bare(side: list[Token]) -> bool:
    core = [t for t in side if t.kind not in ("CUR", "PCT")]
    if len(core) == 2 and core[0].kind == "OP" and core[0].value == "-" and core[1].kind == "NUM":
        return True
    return len(core) == 1 and core[0].kind == "NUM"


def _text_of(tokens: list[Token], source: str) -> str:
    return source[tokens[0].start:tokens[-1].end] if tokens else ""


def _chain_claims(tokens: list[Token], start: int, end: int, source: str, approx: bool,
                  limits: Limits) -> list[Claim]:
    raw_sides, relations = _split_sides(tokens[start:end])
    last_index = len(raw_sides) - 1
    sides = [_usable_side(side, i == 0, i == last_index, tokens, start, end)
             for i, side in enumerate(raw_sides)]
    parsed: list[object | Unsafe | None] = []
    tight: list[object | None] = []  # the `25 / 1/3` = 75 reading, when it differs
    for side in sides:
        tight.append(None)
        if side is None:
            parsed.append(None)
            continue
        try:
            parsed.append(safe_math.parse_plain(side, limits))
            other = safe_math.parse_plain(side, limits, tight=True)
            if other != parsed[-1]:
                tight[-1] = other
        except safe_math.NotParsed:
            parsed.append(None)
        except Unsafe as err:
            parsed.append(err)
    # a chain with an expression in it states every link: in `2 + 3 = 5 = 6`, 5 = 6 too
    in_chain = any(side is not None and not _is_bare(side) and value is not None
                   and not isinstance(value, Unsafe) for side, value in zip(sides, parsed))
    claims = []
    for i, relation in enumerate(relations):
        left, right = sides[i], sides[i + 1]
        between_numbers = left is not None and right is not None and _is_bare(left) \
            and _is_bare(right)
        if left is None or right is None or (between_numbers and not in_chain):
            continue
        text = f"{_text_of(left, source)} {'=' if relation == '=' else '≈'} {_text_of(right, source)}"
        claim = Claim(text=text, kind="arithmetic", relation=relation,
                      approx=approx or relation == "≈", unit=_unit_after(tokens, end)
                      if i + 1 == last_index else None)
        claims.append(claim)
        problems = [p for p in (parsed[i], parsed[i + 1]) if isinstance(p, Unsafe)]
        if problems:
            claim.problem = f"{type(problems[0]).__name__}: {problems[0]}"
            continue
        if parsed[i] is None or parsed[i + 1] is None:
            claims.pop()
            continue
        if between_numbers and i + 1 == last_index and _unit_word_after(tokens, end):
            claim.problem = "the chain's last link may change unit (`= 60 = 1 hour`)"
            continue
        # a fraction ending the chain is a number, not a running total: in `2/2 = 1/2` the 1
        # is not a total that `/2` goes on from
        running = None if i + 1 == last_index and _is_fraction(right) else right
        claim.readings = _readings(parsed[i], parsed[i + 1], _bare_text(left, source),
                                   _bare_text(right, source), running, limits)
        if between_numbers:
            claim.readings.extend(_chain_value_readings(
                [parsed[j] for j in range(i, -1, -1) if sides[j] is not None
                 and not _is_bare(sides[j])], claim.readings[0], relation))
        if tight[i] is not None or tight[i + 1] is not None:
            literal = claim.readings[0]
            claim.readings.insert(1, Reading(
                tight[i] if tight[i] is not None else parsed[i],
                tight[i + 1] if tight[i + 1] is not None else parsed[i + 1],
                literal.stated, literal.stated_value, "spaced fraction (a / b/c = a/(b/c))"))
    return claims


def _chain_value_readings(expressions: list, literal: Reading, relation: str) -> list[Reading]:
    """In `1/3 = 0.33 = 0.333` each number after the expression is that expression's value,
    written to some precision: a link between two numbers of a chain also holds if the right
    one is the value of the nearest expression before it (`expressions`, nearest first)."""
    if relation not in ("=", "≈") or not expressions or isinstance(expressions[0], Unsafe) \
            or expressions[0] is None or expressions[0].free_symbols:
        return []
    return [Reading(expressions[0], literal.rhs, literal.stated, literal.stated_value,
                    "chain's value")]


UNIT_NAMES = frozenset("""second minute hour day week month year inch foot feet yard mile meter
    centimeter kilometer gram kilogram pound ounce cup quart gallon liter dozen cent dollar""".split())


def _unit_after(tokens: list[Token], end: int) -> str | None:
    after = tokens[end] if end < len(tokens) else None
    if after is None or after.kind != "WORD":
        return None
    word = _singular(after.text)
    return word if word in UNIT_NAMES or word + "s" in UNIT_NAMES else None


# Abbreviated units: after the last number of a chain they may mean a change of unit.
UNIT_ABBREVIATIONS = frozenset("hr hrs h min mins sec secs s ft yd mi m cm km mm g kg lb lbs oz l ml gal qt pt".split())


def _unit_word_after(tokens: list[Token], end: int) -> bool:
    """Whether a unit follows the run: `2 * 30 = 60 = 1 hour` converts minutes to hours."""
    after = tokens[end] if end < len(tokens) else None
    return _unit_after(tokens, end) is not None or (
        after is not None and after.kind == "WORD" and after.text.lower() in UNIT_ABBREVIATIONS)


def _bare_text(side: list[Token], source: str) -> str | None:
    return _text_of(side, source) if _is_bare(side) else None


def _readings(lhs, rhs, left_bare: str | None, right_bare: str | None, right_tokens, limits):
    """The literal reading, the percent-as-number reading and the running-total reading."""
    stated = right_bare if right_bare is not None else left_bare
    readings = [Reading(lhs, rhs, stated, _bare_number(stated) if stated else None)]
    for bare, this_side, other in ((right_bare, rhs, lhs), (left_bare, lhs, rhs)):
        if bare is not None and bare.rstrip().endswith("%"):
            number = _bare_number(bare.rstrip().rstrip("%").rstrip("\\"))
            if number is not None:
                expr = safe_math.sympy.Rational(number.numerator, number.denominator)
                pair = (other, expr) if this_side is rhs else (expr, other)
                readings.append(Reading(pair[0], pair[1], bare.rstrip().rstrip("%"), number,
                                        "percentage as a number"))
    lead = _leading_number(right_tokens) if right_tokens is not None and not lhs.free_symbols \
        else None
    if lead is not None:
        expr = safe_math.number_literal(lead.value, limits)
        readings.append(Reading(lhs, expr, lead.text, Fraction(lead.value), "running total"))
    return readings


def _is_fraction(side: list[Token]) -> bool:
    """Whether `side` is a number written as a fraction: `1/2`, `$3/4`."""
    core = [t for t in side if t.kind != "CUR"]
    return len(core) == 3 and core[0].kind == "NUM" and core[2].kind == "NUM" \
        and core[1].kind == "OP" and core[1].value == "/"


def _leading_number(side: list[Token]) -> Token | None:
    """The first number of a compound side like `7 x 2` (for the running-total reading)."""
    core = [t for t in side if t.kind != "CUR"]
    if len(core) >= 3 and core[0].kind == "NUM" and core[1].kind == "OP":
        return core[0]
    return None


# -- LaTeX -----------------------------------------------------------------------------------

_DISPLAY = re.compile(r"\$\$(.+?)\$\$|\\\[(.+?)\\\]|\\\((.+?)\\\)|\\begin\{(equation|align|gather|eqnarray)\*?\}(.+?)\\end\{\4\*?\}", re.DOTALL)


def math_spans(text: str) -> list[tuple[int, int, str]]:
    """(start, end, content) of each LaTeX math span, in order.

    Inline `$...$` pairs only when the closing `$` is not followed by a digit: in
    `$5 + $3 = $8` every `$` is a currency sign.
    """
    spans = []
    taken = [False] * (len(text) + 1)
    for match in _DISPLAY.finditer(text):
        content = next(g for g in (match.group(1), match.group(2), match.group(3), match.group(5))
                       if g is not None)
        spans.append((match.start(), match.end(), content))
        for i in range(match.start(), match.end()):
            taken[i] = True
    dollars = [i for i, ch in enumerate(text)
               if ch == "$" and not taken[i] and (i == 0 or text[i - 1] != "\\")]
    i = 0
    while i < len(dollars) - 1:
        start, end = dollars[i], dollars[i + 1]
        closing_ok = end > start + 1 and not (end + 1 < len(text) and text[end + 1].isdigit())
        content = text[start + 1:end]
        if closing_ok and content.strip() and not content.startswith(" "):
            spans.append((start, end + 1, content))
            i += 2
        else:
            i += 1
    spans.sort()
    return spans


_SEPARATOR = re.compile(
    r"\\\\|;|\\(?:quad|qquad|Rightarrow|Longrightarrow|implies|iff|Leftrightarrow|to|rightarrow|"
    r"therefore|because|neq|ne|equiv|pmod|mod|bmod|cup|cap|in|notin|subset|mid)(?![A-Za-z])"
    r"|\\begin\{[^{}]*\}|\\end\{[^{}]*\}")
_TEXT = re.compile(r"\\(?:text|mbox|textbf|textit|textrm|mathrm|operatorname|hbox)\s*\{([^{}]*)\}")
_TEXT_CONNECTORS = frozenset("""and or so since where then if for because hence thus i.e. is gives
    when but which with as while also""".split())
_MATRIX = re.compile(r"\\begin\{([pbvBV]?matrix|smallmatrix|array|cases)\}.*?\\end\{\1\}", re.DOTALL)
_RELATION = re.compile(r"\\approx|\\leq?(?![A-Za-z])|\\geq?(?![A-Za-z])|\\lt(?![A-Za-z])|"
                       r"\\gt(?![A-Za-z])|≤|≥|≈|<|>|=")
_RELATION_NAME = {"=": "=", "\\approx": "≈", "≈": "≈", "<": "<", "\\lt": "<", ">": ">",
                  "\\gt": ">", "\\le": "<=", "\\leq": "<=", "≤": "<=", "\\ge": ">=",
                  "\\geq": ">=", "≥": ">="}
_MIXED_FRACTION = re.compile(r"\d\s*\\[dt]?frac")
_THOUSANDS = re.compile(r"(?<=\d)(?:\{,\}|,)(?=\d{3}(?!\d))")


def _top_level_split(text: str, pattern: re.Pattern) -> list[tuple[str, str | None]]:
    """Split at matches of `pattern` outside braces/brackets: [(piece, separator after)]."""
    depth, pieces, last = 0, [], 0
    position = 0
    while position < len(text):
        ch = text[position]
        if ch in "{([":
            depth += 1
        elif ch in "})]":
            depth -= 1
        if depth == 0:
            match = pattern.match(text, position)
            if match and match.end() > position:
                pieces.append((text[last:position], match.group(0)))
                last = position = match.end()
                continue
        if ch == "\\":  # skip the command name so `\left` or `\le` never splits mid-word
            name = re.match(r"\\[A-Za-z]+", text[position:])
            if name and not pattern.match(text, position):
                position += len(name.group(0))
                continue
        position += 1
    pieces.append((text[last:], None))
    return pieces


def latex_claims(content: str, approx: bool, limits: Limits, inline: bool = True) -> list[Claim]:
    """Claims in one LaTeX math span.

    In display math `\\\\` ends a line (and `&= 5` continues the chain of the line before);
    in inline math it has no meaning, so the sides around it are not used.
    """
    content = re.sub(r"(?<=\d),\\!(?=\d)", ",", content)  # 729,\!000
    content = re.sub(r"(?<=\d)\\[,!](?=\d{3})", "", content)  # 1\,000
    content = content.replace("\\&", " \\unusable ")  # a custom operator such as 9 \& 2
    content = re.sub(r"(?<!\\)\\[,;:! ]", " ", _THOUSANDS.sub("", content))
    content = _MATRIX.sub(lambda _: " \\unusable ", content)  # vectors and matrices are not numbers
    # "\text{ and }" joins two claims; "5\text{ cm}" is a unit, and the side is not a number
    content = _TEXT.sub(lambda m: " ; " if m.group(1).strip().lower() in _TEXT_CONNECTORS
                        else " \\unusable ", content)
    if inline:
        content = content.replace("\\\\", " \\unusable ")
    content = content.replace("&", " ").replace(",", " ; ")  # thousands commas are gone
    claims = []
    previous_side, separator = None, None
    chain_expression = None  # the last side of the chain so far that is not a bare number
    for piece, after in _top_level_split(content, _SEPARATOR):
        parts = _top_level_split(piece, _RELATION)
        sides = [p for p, _ in parts]
        relations = [_RELATION_NAME.get(r.strip(), r) for _, r in parts[:-1]]
        continues = separator == "\\\\" and previous_side is not None
        separator = after
        if not relations:
            previous_side = None if not piece.strip() else sides[0]
            continue
        earlier = None
        if not sides[0].strip() and continues:
            sides[0] = previous_side  # align continuation: "x &= 2+3 \\\\ &= 5"
            earlier = chain_expression
        claims.extend(_latex_chain(sides, relations, approx, limits, earlier))
        previous_side = sides[-1]
        chain_expression = next((side for side in reversed(sides)
                                 if side.strip() and _latex_bare(side) is None), earlier)
    return claims


def _latex_chain(sides: list[str], relations: list[str], approx: bool, limits: Limits,
                 earlier: str | None = None) -> list[Claim]:
    """Claims of one chain `a = b = c`; `earlier` is the last expression of the lines it
    continues (`2+3 &= 5 \\\\ &= 6`), so that a link between two numbers is still a claim."""
    parsed, products = [], []  # products: `2\\frac{1}{3}` read as 2/3 rather than 7/3
    for side in sides:
        products.append(None)
        if not side.strip():
            parsed.append(None)
            continue
        try:
            parsed.append(safe_math.parse_latex(side, limits))
            if _MIXED_FRACTION.search(side):
                products[-1] = safe_math.parse_latex(side, limits, mixed_fractions=False)
        except Unsafe as err:
            parsed.append(err)
    bare = [_latex_bare(side) if side.strip() else None for side in sides]
    expressions = [p for p, b in zip(parsed, bare)
                   if p is not None and b is None and not isinstance(p, Unsafe)]
    before = []  # the expression of the lines this chain continues
    if earlier is not None:
        try:
            before = [safe_math.parse_latex(earlier, limits)]
        except Unsafe as err:
            before = [err]
    claims = []
    for i, relation in enumerate(relations):
        left, right = parsed[i], parsed[i + 1]
        if left is None or right is None:
            continue
        left_bare, right_bare = bare[i], bare[i + 1]
        between_numbers = left_bare is not None and right_bare is not None
        if between_numbers and not expressions and not any(
                not isinstance(p, Unsafe) for p in before):
            continue  # "0 = -12": a contradiction reached on purpose, or a unit ratio; no arithmetic
        claim = Claim(text=f"{sides[i].strip()} {relation} {sides[i + 1].strip()}", kind="latex",
                      relation=relation, approx=approx or relation == "≈")
        claims.append(claim)
        problem = next((p for p in (left, right) if isinstance(p, Unsafe)), None)
        if problem is not None:
            claim.problem = f"{type(problem).__name__}: {problem}"
            continue
        stated = right_bare if right_bare is not None else left_bare
        claim.readings = [Reading(left, right, stated, _bare_number(stated) if stated else None)]
        if between_numbers:  # "2+3 = 5 = 6": a link of a chain with an expression in it
            claim.readings.extend(_chain_value_readings(
                [parsed[j] for j in range(i, -1, -1) if bare[j] is None and parsed[j] is not None]
                + before, claim.readings[0], relation))
        if products[i] is not None or products[i + 1] is not None:
            claim.readings.append(Reading(
                products[i] if products[i] is not None else left,
                products[i + 1] if products[i + 1] is not None else right,
                stated, claim.readings[0].stated_value, "number before a fraction as a product"))
        if relation == "=":
            lead = re.match(r"\s*(\d+(?:\.\d+)?)\s*(?:\\times|\\cdot|\\div|[-+*/])", sides[i + 1])
            last_fraction = i + 1 == len(relations) and _LATEX_FRACTION.fullmatch(sides[i + 1])
            if lead and right_bare is None and not left.free_symbols and not last_fraction:
                claim.readings.append(Reading(left, safe_math.number_literal(lead.group(1), limits),
                                              lead.group(1), Fraction(lead.group(1)),
                                              "running total"))
    return claims


_LATEX_FRACTION = re.compile(r"\s*\d+\s*/\s*\d+\s*")  # `1/2` ending a chain is a number


def _latex_bare(side: str) -> str | None:
    text = safe_math.normalize_latex(side).replace("{", "").replace("}", "")
    return text.strip() if BARE_NUMBER.fullmatch(text) else None
