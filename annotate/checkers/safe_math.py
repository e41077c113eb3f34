"""Restricted parsing and bounded evaluation of untrusted arithmetic.

Step texts come from models and data files, so nothing in them is ever executed: no
`eval`, no `sympify`/`parse_expr` on raw strings (both run Python). This module owns the
only ways text becomes a sympy expression:

- `parse_plain(tokens)`: a small recursive-descent grammar for the arithmetic people
  write in plain text (`12 x 4`, `$1,200`, `25%`, `3/4`, `2^10`, `5!`, `2x + 1`), built
  as *unevaluated* sympy trees (`evaluate=False`), with a nesting-depth limit. Written by
  hand because no library parses this informal notation without evaluating it.
- `parse_latex(text)`: LaTeX through latex2sympy2_extended (the maintained parser that
  math-verify uses; it builds trees with `evaluate=False` and never calls `eval`), after a
  whitelist of LaTeX commands and size checks, because a few of its conversions compute
  eagerly (`\\binom{10^9}{5 \\cdot 10^8}` would run for minutes).

and the only ways an expression is evaluated:

- `rational_value(expr)`: exact rational arithmetic (`fractions.Fraction`) that checks
  the size of every power and factorial *before* computing it, so `9**9**9**9` or
  `100000!` raise `TooBig` at once instead of exhausting memory.
- `real_difference(lhs, rhs)`: for irrational values (`\\sqrt{2}`, `\\pi`), sympy's
  arbitrary-precision evaluation, allowed only once every exponent and factorial in the
  tree has passed the same bounds.

Every sympy call also runs under `time_limit`, a CPU-time alarm that interrupts
Python-level work (sympy is pure Python); the size bounds cover the C-level big-integer
operations an alarm cannot interrupt. Anything that does not fit raises `Unsafe`, which
checkers report as `unknown`.
"""

from __future__ import annotations

import functools
import math
import re
import signal
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from fractions import Fraction

import sympy


@dataclass(frozen=True)
class Limits:
    """Size bounds checked before anything is evaluated."""

    max_literal_digits: int = 60  # digits in one written number
    max_result_bits: int = 8000  # bits of any exact intermediate value (~2,400 digits)
    max_exponent: int = 10_000  # |n| in x^n
    max_factorial: int = 500  # n in n! (500! has 1,135 digits)
    max_depth: int = 40  # nesting of parentheses / expression tree
    max_nodes: int = 400  # nodes in one expression tree
    max_chars: int = 600  # characters in one expression


DEFAULT_LIMITS = Limits()


class Unsafe(Exception):
    """The text cannot be checked safely or at all: the verdict is `unknown`."""


class TooBig(Unsafe):
    """A number, power, factorial or tree exceeds `Limits`."""


class NotParsed(Unsafe):
    """The text is not an expression in the restricted grammar."""


class NotRational(Unsafe):
    """The value is not an exact rational (it has symbols, roots, pi, ...)."""


class DivisionByZero(NotRational):
    """The expression divides by zero: its value is undefined, so no claim about it holds."""


class CheckTimeout(Unsafe):
    """The time limit ran out."""


# -- time limits -----------------------------------------------------------------------------

@contextmanager
def time_limit(seconds: float | None):
    """Raise `CheckTimeout` in the block after `seconds` of this process's CPU time.

    Uses SIGPROF (the ITIMER_PROF interval timer, which counts CPU time, not wall-clock
    time), so the verdict of a check does not depend on how busy the machine is: on a loaded
    machine a wall-clock alarm fired on claims that take milliseconds when idle, and two runs
    of the same input disagreed. A check that waits instead of computing is not bounded here;
    `prm check`'s worker pool keeps a hard wall-clock limit per step for that. Works in the
    main thread of a Unix process; elsewhere the block runs without an alarm and only the size
    bounds protect it. Nested calls keep the earlier (outer) deadline if it is sooner.
    """
    usable = (seconds is not None and seconds > 0 and hasattr(signal, "setitimer")
              and threading.current_thread() is threading.main_thread())
    if not usable:
        yield
        return
    outer_remaining, _ = signal.getitimer(signal.ITIMER_PROF)
    if outer_remaining and outer_remaining < seconds:
        yield  # an enclosing limit fires first
        return

    def on_alarm(signum, frame):
        # An exception raised inside a finalizer (z3 objects free themselves in __del__ during
        # garbage collection) would be swallowed; fire again just after it instead.
        caller = frame
        while caller is not None:
            if caller.f_code.co_name == "__del__":
                signal.setitimer(signal.ITIMER_PROF, 0.01)
                return
            caller = caller.f_back
        raise CheckTimeout(f"time limit of {seconds:g} s exceeded")

    previous = signal.signal(signal.SIGPROF, on_alarm)
    started = time.process_time()
    signal.setitimer(signal.ITIMER_PROF, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_PROF, 0)
        signal.signal(signal.SIGPROF, previous)
        if outer_remaining:  # give the enclosing limit back what is left of it
            left = outer_remaining - (time.process_time() - started)
            signal.setitimer(signal.ITIMER_PROF, max(left, 1e-3))


# -- plain-text tokens -----------------------------------------------------------------------

@dataclass
class Token:
    kind: str  # NUM PCT OP LP RP EQ APPROX BANG SYM FUNC WORD SEP CUR
    text: str
    start: int
    end: int
    value: str = ""  # normalised operator ("*", "/", "//", "^", "+", "-") or number digits

    def __repr__(self) -> str:
        return f"{self.kind}({self.text!r})"


_TOKEN = re.compile(r"""
    (?P<NUM>(?:\d+(?:\.\d+)?|\.\d+)[eE][-+]?\d+(?![A-Za-z\d])
           |\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d]|,\d)|\d+(?:\.\d+)?|\.\d+)
  | (?P<SEP>=+>|⇒|->|→|!=|≠|<=|>=|≤|≥|[<>])
  | (?P<APPROX>≈|~=|≃|≅)
  | (?P<EQ>==?)
  | (?P<OP>\*\*|//|[-+*/^×·⋅∙÷∕−]|(?<=\s)–(?=\s))
  | (?P<PCT>%)
  | (?P<BANG>!)
  | (?P<LP>[(\[])
  | (?P<RP>[)\]])
  | (?P<FUNC>√)
  | (?P<CUR>\$|€|£)
  | (?P<WORD>[A-Za-z]+)
  | (?P<SPACE>\s+)
  | (?P<OTHER>.)
""", re.VERBOSE | re.DOTALL)

_OPERATOR = {"**": "^", "^": "^", "//": "//", "*": "*", "×": "*", "·": "*", "⋅": "*", "∙": "*",
             "/": "/", "÷": "/", "∕": "/", "+": "+", "-": "-", "−": "-", "–": "-"}

# Letters written straight after a number that are units or ordinals, never variables.
UNIT_WORDS = frozenset("""
    st nd rd th am pm k m km cm mm g kg mg lb lbs oz ft in yd mi h hr hrs min mins s sec secs
    ms l ml gal qt pt mph kph yr yrs wk wks mo bn mn
""".split())


def tokenize(text: str) -> list[Token]:
    """Split plain text into tokens and decide, from context, what each letter run is.

    `x`/`X` between two numbers is multiplication (`12 x 4`); `sqrt(` is a function; `of`
    after a percentage is multiplication (`25% of 80`); a single letter next to an
    operator or `=` (`x = 3`, `a + b`), or letters glued to a number (`2x`, `3ab`, not
    units like `5kg` or ordinals like `2nd`) are variables; every other word separates
    expressions.
    """
    tokens: list[Token] = []
    for match in _TOKEN.finditer(text):
        kind = match.lastgroup
        piece = match.group()
        if kind == "SPACE":
            continue
        if kind == "OTHER":
            kind = "SEP"
        value = piece.replace(",", "") if kind == "NUM" else _OPERATOR.get(piece, piece)
        tokens.append(Token(kind, piece, match.start(), match.end(), value))
    _classify_words(tokens, text)
    return tokens


def _classify_words(tokens: list[Token], text: str) -> None:
    numeric_end = {"NUM", "RP", "PCT", "BANG"}
    mathy = {"OP", "EQ", "APPROX", "LP", "RP"}
    for i, token in enumerate(tokens):
        if token.kind != "WORD":
            continue
        prev = tokens[i - 1] if i else None
        nxt = tokens[i + 1] if i + 1 < len(tokens) else None
        after = tokens[i + 2] if i + 2 < len(tokens) else None
        word = token.text
        glued_left = prev is not None and prev.end == token.start
        glued_right = nxt is not None and nxt.start == token.end
        next_is_number = nxt is not None and (nxt.kind in ("NUM", "LP", "FUNC") or (
            nxt.kind == "CUR" and after is not None and after.kind == "NUM"))
        if word in ("x", "X") and prev is not None and prev.kind in numeric_end | {"WORD"} \
                and next_is_number:  # 12 x 4, and "5 apples x 3" (whose left side is cut off)
            token.kind, token.value = "OP", "*"
        elif word == "sqrt" and nxt is not None and nxt.kind == "LP" and glued_right:
            token.kind = "FUNC"
        elif word == "of" and prev is not None and prev.kind == "PCT" and next_is_number:
            token.kind, token.value = "OP", "*"
        elif glued_left and prev.kind in ("NUM", "RP") and len(word) <= 3 \
                and word not in UNIT_WORDS:  # case matters: 4S is a variable, 4s seconds
            token.kind = "SYM"
        elif len(word) == 1 and ((prev is not None and prev.kind in mathy)
                                 or (nxt is not None and nxt.kind in mathy)):
            token.kind = "SYM"
        elif len(word) <= 2 and glued_right and nxt.kind == "OP" and nxt.value == "^":
            token.kind = "SYM"


# -- plain-text grammar ----------------------------------------------------------------------

def _neg(expr):
    if isinstance(expr, sympy.Integer) or isinstance(expr, sympy.Rational):
        return -expr
    return sympy.Mul(sympy.Integer(-1), expr, evaluate=False)


MAX_SCIENTIFIC_EXPONENT = 300  # 1e300 has 997 bits, far inside `max_result_bits`


def number_literal(digits: str, limits: Limits = DEFAULT_LIMITS) -> sympy.Rational:
    """An exact sympy number from written digits (`1200`, `0.25`, `.5`, and scientific
    notation as calculators print it: `2e3`, `2e-05`), size-checked."""
    mantissa, _, exponent = digits.lower().partition("e")
    if sum(ch.isdigit() for ch in mantissa) > limits.max_literal_digits:
        raise TooBig(f"number with more than {limits.max_literal_digits} digits")
    if exponent and abs(int(exponent)) > MAX_SCIENTIFIC_EXPONENT:
        raise TooBig(f"power of ten beyond 1e{MAX_SCIENTIFIC_EXPONENT}")
    return sympy.Rational(Fraction(digits))  # exact: 0.1 is 1/10, never a binary float


class _PlainParser:
    """expr := term (('+'|'-') term)*; term := unary (('*'|'/'|'//'|implicit) unary)*;
    unary := ('-'|'+') unary | power; power := postfix ('^' unary)?;
    postfix := atom ('!'|'%')*; atom := NUM | SYM | '(' expr ')' | sqrt atom."""

    def __init__(self, tokens: list[Token], limits: Limits, tight: bool):
        self.tokens, self.pos, self.limits, self.depth = tokens, 0, limits, 0
        self.tight = tight

    def parse(self):
        if not self.tokens:
            raise NotParsed("empty expression")
        expr = self.expr()
        if self.pos != len(self.tokens):
            raise NotParsed(f"unexpected {self.tokens[self.pos].text!r}")
        return expr

    def peek(self, offset: int = 0) -> Token | None:
        index = self.pos + offset
        return self.tokens[index] if index < len(self.tokens) else None

    def take(self) -> Token:
        token = self.peek()
        if token is None:
            raise NotParsed("expression ends too early")
        self.pos += 1
        return token

    def nest(self):
        self.depth += 1
        if self.depth > self.limits.max_depth:
            raise TooBig(f"nested deeper than {self.limits.max_depth}")

    def expr(self):
        self.nest()
        terms = [self.term()]
        while (token := self.peek()) is not None and token.kind == "OP" and token.value in "+-":
            self.take()
            term = self.term()
            terms.append(term if token.value == "+" else _neg(term))
        self.depth -= 1
        return terms[0] if len(terms) == 1 else sympy.Add(*terms, evaluate=False)

    def term(self):
        result = self.unary()
        while (token := self.peek()) is not None:
            if token.kind == "OP" and token.value in ("*", "/", "//"):
                self.take()
                right = self.tight_fraction() if token.value == "/" and self.tight else None
                if right is None:
                    right = self.unary()
                if token.value == "*":
                    result = sympy.Mul(result, right, evaluate=False)
                else:
                    quotient = sympy.Mul(result, sympy.Pow(right, -1, evaluate=False),
                                         evaluate=False)
                    result = quotient if token.value == "/" else sympy.floor(quotient,
                                                                              evaluate=False)
            elif token.kind in ("SYM", "LP", "FUNC") or (
                    token.kind == "NUM" and self.tokens[self.pos - 1].kind in ("RP", "SYM")):
                # implicit multiplication: 2x, 2(3+4), (a+b)(a-b), x2 is not allowed
                result = sympy.Mul(result, self.unary(), evaluate=False)
            else:
                break
        return result

    def tight_fraction(self):
        """`1/3` written without spaces after a spaced `/` is one number: `25 / 1/3` is 75."""
        a, slash, b = self.peek(), self.peek(1), self.peek(2)
        if a is None or slash is None or b is None or a.kind != "NUM" or b.kind != "NUM" \
                or slash.kind != "OP" or slash.value != "/" or a.end != slash.start \
                or slash.end != b.start or self.tokens[self.pos - 1].end == a.start:
            return None
        follower = self.peek(3)
        if follower is not None and follower.kind in ("OP", "BANG", "PCT") \
                and follower.start == b.end:
            return None  # part of a longer tight expression such as 1/3^2
        self.pos += 3
        return sympy.Mul(number_literal(a.value, self.limits),
                         sympy.Pow(number_literal(b.value, self.limits), -1, evaluate=False),
                         evaluate=False)

    def unary(self):
        token = self.peek()
        if token is not None and token.kind == "OP" and token.value in "+-":
            self.take()
            self.nest()
            operand = self.unary()
            self.depth -= 1
            return operand if token.value == "+" else _neg(operand)
        return self.power()

    def power(self):
        base = self.postfix()
        token = self.peek()
        if token is not None and token.kind == "OP" and token.value == "^":
            self.take()
            self.nest()
            exponent = self.unary()  # right-associative: 2^3^2 = 2^(3^2)
            self.depth -= 1
            return sympy.Pow(base, exponent, evaluate=False)
        return base

    def postfix(self):
        result = self.atom()
        while (token := self.peek()) is not None and token.kind in ("BANG", "PCT"):
            self.take()
            if token.kind == "BANG":
                result = sympy.factorial(result, evaluate=False)
            else:
                result = sympy.Mul(result, sympy.Rational(1, 100), evaluate=False)
        return result

    def atom(self):
        token = self.take()
        if token.kind == "CUR":
            token = self.take()
            if token.kind != "NUM":
                raise NotParsed(f"unexpected {token.text!r} after a currency sign")
        if token.kind == "NUM":
            return number_literal(token.value, self.limits)
        if token.kind == "SYM":  # glued letters are a product of one-letter variables: 2ab
            following = self.peek()
            if following is not None and following.kind == "LP" and following.start == token.end:
                raise NotParsed(f"function notation {token.text}(...)")
            letters = [sympy.Symbol(ch) for ch in token.text]
            return letters[0] if len(letters) == 1 else sympy.Mul(*letters, evaluate=False)
        if token.kind == "LP":
            self.nest()
            inner = self.expr()
            closing = self.take()
            if closing.kind != "RP":
                raise NotParsed(f"expected ')' but found {closing.text!r}")
            self.depth -= 1
            return inner
        if token.kind == "FUNC":
            self.nest()
            operand = self.postfix()
            self.depth -= 1
            return sympy.Pow(operand, sympy.Rational(1, 2), evaluate=False)
        raise NotParsed(f"unexpected {token.text!r}")


def parse_plain(tokens: list[Token], limits: Limits = DEFAULT_LIMITS, tight: bool = False):
    """An unevaluated sympy expression from plain-text tokens (see `tokenize`).

    Currency signs are dropped, `25%` is 25/100, `x` between numbers is a product. With
    `tight`, a fraction written without spaces after a spaced `/` is one number
    (`25 / 1/3` = 75), the way people mean it; without, the usual left-to-right reading
    (25/1/3). Raises `NotParsed` outside the grammar and `TooBig` past `limits`.
    """
    tokens = [t for t in tokens if t.kind != "CUR"]
    if sum(len(t.text) for t in tokens) > limits.max_chars:
        raise TooBig(f"expression longer than {limits.max_chars} characters")
    expr = _PlainParser(tokens, limits, tight).parse()
    check_shape(expr, limits)
    return expr


# -- LaTeX -----------------------------------------------------------------------------------

# Commands a LaTeX claim may use; any other command makes it `unknown`.
LATEX_COMMANDS = frozenset("""
    frac dfrac tfrac sqrt cdot times div left right pi circ sin cos tan cot sec csc log ln exp
    lfloor rfloor lceil rceil binom dbinom tbinom % $ { } , ; ! alpha beta gamma delta epsilon
    theta lambda mu sigma phi omega rho tau
""".split())
_COMMAND = re.compile(r"\\([A-Za-z]+|.)")
_BIG_NUMBER = re.compile(r"\d{%d,}")
# f(x), g(2), p(x): function values, which latex2sympy would read as products f*(x).
_FUNCTION_CALL = re.compile(r"(?<![A-Za-z\\])[fghpqFGHPQ]\s*(?:_\{?\w+\}?)?\s*\(")
_SMALL_BINOM = re.compile(r"\\[dt]?binom\s*\{\s*\d{1,3}\s*\}\s*\{\s*\d{1,3}\s*\}")
_LATEX_ALLOWED_CHARS = re.compile(r"[0-9A-Za-z\s+\-*/^_(){}\[\]!.,|=\\%$]*")

# Node types a parsed claim may contain (numbers, arithmetic, elementary functions).
_ALLOWED_NODES = (sympy.Add, sympy.Mul, sympy.Pow, sympy.Rational, sympy.Float, sympy.Symbol,
                  sympy.factorial, sympy.binomial, sympy.floor, sympy.ceiling, sympy.Abs,
                  sympy.Mod, sympy.UnevaluatedExpr, sympy.sin, sympy.cos, sympy.tan, sympy.cot,
                  sympy.sec, sympy.csc, sympy.log, sympy.exp)
_ALLOWED_CONSTANTS = (type(sympy.pi), type(sympy.E))


def normalize_latex(text: str) -> str:
    """Spacing and sizing commands removed, `\\dfrac`->`\\frac`, `\\frac12`->`\\frac{1}{2}`."""
    text = re.sub(r"\\(?:left|right|[bB]igg?[lr]?)(?![A-Za-z])\s*\.?", "", text)
    text = re.sub(r"(?<!\\)\\[,;:! ]|\\(quad|qquad|displaystyle|textstyle)\b|~", " ", text)
    text = re.sub(r"\\[dt]frac", r"\\frac", text)
    text = re.sub(r"\\[dt]binom", r"\\binom", text)
    text = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", text)
    text = re.sub(r"\\frac\s*(\d)\s*\{", r"\\frac{\1}{", text)
    text = text.replace("\\cdot", "\\cdot ").replace("\\times", "\\times ")
    return _explicit_products(text).strip()


def _explicit_products(text: str) -> str:
    """`3(6)`, `(2)(3)`, `\\frac{1}{3}(144)` written with `\\cdot`: latex2sympy reads a number
    before parentheses as a sum (3(6) = 9). A braced subscript before `(` is left alone
    (`\\log_{2}(8)`)."""
    text = re.sub(r"\)\s*(?=\d)", lambda _: ") \\cdot ", text)  # (0)7
    out = []
    for i, ch in enumerate(text):
        if ch == "(" and out:
            before = "".join(out).rstrip()
            if before and (before[-1].isdigit() or before[-1] == ")" or (
                    before[-1] == "}" and not _is_subscript_group(before))):
                out.append(" \\cdot ")
        out.append(ch)
    return "".join(out)


def _is_subscript_group(text: str) -> bool:
    depth = 0
    for i in range(len(text) - 1, -1, -1):
        depth += text[i] == "}"
        depth -= text[i] == "{"
        if depth == 0:
            return i > 0 and text[i - 1] in "_^"
    return True


@functools.lru_cache(maxsize=1)
def _latex_parser():
    """latex2sympy, imported and warmed up once outside any time limit (its first call
    builds the ANTLR parser, which takes longer than a claim's time limit)."""
    from latex2sympy2_extended import latex2sympy
    from latex2sympy2_extended.latex2sympy2 import ConversionConfig

    latex2sympy("1+1", normalization_config=None)
    return latex2sympy, ConversionConfig


def parse_latex(text: str, limits: Limits = DEFAULT_LIMITS, seconds: float | None = 1.0,
                mixed_fractions: bool = True):
    """An unevaluated sympy expression from one LaTeX expression (no relation signs).

    Only whitelisted commands and characters pass; numbers longer than
    `limits.max_literal_digits`, binomials with large arguments and deep braces are
    refused before latex2sympy sees the text; the result may only hold whitelisted node
    types and must pass `check_shape`.
    """
    if _FUNCTION_CALL.search(re.sub(r"\\(?:left|right)(?![A-Za-z])", "", text)):
        raise NotParsed("function notation such as f(x)")
    text = normalize_latex(text)
    if not text:
        raise NotParsed("empty expression")
    if len(text) > limits.max_chars:
        raise TooBig(f"expression longer than {limits.max_chars} characters")
    if not _LATEX_ALLOWED_CHARS.fullmatch(text):
        raise NotParsed("characters outside the LaTeX arithmetic whitelist")
    for command in _COMMAND.findall(text):
        if command not in LATEX_COMMANDS:
            raise NotParsed(f"unsupported LaTeX command \\{command}")
    if re.search(r"\d\s*_", text):
        raise NotParsed("number with a base subscript (31_8)")
    if "binom" in text and len(_SMALL_BINOM.findall(text)) != text.count("binom"):
        raise TooBig("binomial coefficients only with literal arguments below 1000")
    if re.search(r"\d{%d,}" % (limits.max_literal_digits + 1), text):
        raise TooBig(f"number with more than {limits.max_literal_digits} digits")
    depth = 0
    for ch in text:
        depth += ch in "{(["
        depth -= ch in "})]"
        if depth > limits.max_depth:
            raise TooBig(f"nested deeper than {limits.max_depth}")
    latex2sympy, ConversionConfig = _latex_parser()
    config = ConversionConfig(interpret_as_mixed_fractions=mixed_fractions,
                              lowercase_symbols=False)
    try:
        with time_limit(seconds):
            expr = latex2sympy(text, normalization_config=None, convert_degrees=True,
                               conversion_config=config)
    except Unsafe:
        raise
    except RecursionError:
        raise TooBig("nested too deeply for the LaTeX parser") from None
    except Exception as err:  # the parser raises bare Exceptions for syntax errors
        raise NotParsed(f"LaTeX parse error: {str(err).splitlines()[0][:80]}") from None
    if not isinstance(expr, sympy.Expr):
        raise NotParsed(f"not an arithmetic expression ({type(expr).__name__})")
    if expr.has(sympy.zoo, sympy.nan):
        # latex2sympy folds a literal zero denominator (`\frac{1}{0}`) into zoo or nan; put the
        # division back so that evaluating it raises `DivisionByZero` (refuted, not unknown)
        division = sympy.Pow(sympy.Integer(0), -1, evaluate=False)
        expr = expr.xreplace({sympy.zoo: division,
                              sympy.nan: sympy.Mul(sympy.Integer(0), division, evaluate=False)})
    check_shape(expr, limits)
    return _e_as_variable(expr) if expr.has(sympy.E) or expr.has(sympy.exp) else expr


def _e_as_variable(expr):
    """latex2sympy reads a lone `e` as Euler's number; in step texts it is far more often a
    variable (coefficients a..f), and a variable can never cause a false refutation.
    Rebuilt node by node with evaluate=False so nothing is computed."""
    if expr == sympy.E:
        return sympy.Symbol("e")
    if isinstance(expr, sympy.exp):
        return sympy.Pow(sympy.Symbol("e"), _e_as_variable(expr.args[0]), evaluate=False)
    if not expr.args or isinstance(expr, sympy.Rational):
        return expr
    args = [_e_as_variable(arg) for arg in expr.args]
    if isinstance(expr, sympy.UnevaluatedExpr):
        return sympy.UnevaluatedExpr(args[0])
    return expr.func(*args, evaluate=False)


# -- shape and size checks -------------------------------------------------------------------

def check_shape(expr, limits: Limits = DEFAULT_LIMITS) -> None:
    """Refuse trees with unknown node types, too many nodes, or too deep (no recursion)."""
    stack = [(expr, 1)]
    nodes = 0
    while stack:
        node, depth = stack.pop()
        nodes += 1
        if nodes > limits.max_nodes:
            raise TooBig(f"expression with more than {limits.max_nodes} parts")
        if depth > limits.max_depth + 10:
            raise TooBig(f"expression nested deeper than {limits.max_depth}")
        if isinstance(node, _ALLOWED_CONSTANTS):
            continue
        if not isinstance(node, _ALLOWED_NODES):
            raise NotParsed(f"unsupported {type(node).__name__}")
        if isinstance(node, sympy.Rational) and (
                max(node.p.bit_length(), node.q.bit_length()) > limits.max_result_bits):
            raise TooBig("number too large")
        stack.extend((arg, depth + 1) for arg in node.args)


# -- exact rational evaluation ---------------------------------------------------------------

def _bits(value: Fraction) -> int:
    return max(value.numerator.bit_length(), value.denominator.bit_length())


def _checked(value: Fraction, limits: Limits) -> Fraction:
    if _bits(value) > limits.max_result_bits:
        raise TooBig(f"intermediate value with more than {limits.max_result_bits} bits")
    return value


def _integer(value: Fraction, what: str) -> int:
    if value.denominator != 1:
        raise NotRational(f"{what} of a non-integer")
    return value.numerator


def _exact_root(value: int, degree: int) -> int | None:
    if value < 0:
        return None
    root = round(value ** (1 / degree)) if value.bit_length() < 1000 else _int_root(value, degree)
    for candidate in (root - 1, root, root + 1):
        if candidate >= 0 and candidate ** degree == value:
            return candidate
    return None


def _int_root(value: int, degree: int) -> int:
    low, high = 0, 1 << (value.bit_length() // degree + 1)
    while low < high:
        mid = (low + high + 1) // 2
        if mid ** degree <= value:
            low = mid
        else:
            high = mid - 1
    return low


def rational_value(expr, limits: Limits = DEFAULT_LIMITS) -> Fraction:
    """The exact value of a symbol-free expression, or `NotRational` / `TooBig`.

    Powers and factorials are size-checked before they are computed; division by zero
    raises `NotRational` (the value is undefined).
    """
    if isinstance(expr, sympy.Integer):
        return _checked(Fraction(int(expr)), limits)
    if isinstance(expr, sympy.Rational):
        return _checked(Fraction(int(expr.p), int(expr.q)), limits)
    if isinstance(expr, sympy.Float):
        return _checked(Fraction(str(expr)), limits)
    if isinstance(expr, sympy.UnevaluatedExpr):
        return rational_value(expr.args[0], limits)
    if isinstance(expr, sympy.Add):
        total = Fraction(0)
        for arg in expr.args:
            total = _checked(total + rational_value(arg, limits), limits)
        return total
    if isinstance(expr, sympy.Mul):
        product = Fraction(1)
        for arg in expr.args:
            product = _checked(product * rational_value(arg, limits), limits)
        return product
    if isinstance(expr, sympy.Pow):
        return _power(rational_value(expr.args[0], limits), rational_value(expr.args[1], limits),
                      limits)
    if isinstance(expr, sympy.factorial):
        n = _integer(rational_value(expr.args[0], limits), "factorial")
        if n < 0:
            raise NotRational("factorial of a negative number")
        if n > limits.max_factorial:
            raise TooBig(f"factorial of {n} (limit {limits.max_factorial})")
        return Fraction(math.factorial(n))
    if isinstance(expr, sympy.binomial):
        n = _integer(rational_value(expr.args[0], limits), "binomial")
        k = _integer(rational_value(expr.args[1], limits), "binomial")
        if n > limits.max_factorial * 10 or n < 0:
            raise TooBig(f"binomial of {n}")
        return Fraction(math.comb(n, k) if 0 <= k else 0)
    if isinstance(expr, sympy.floor):
        return Fraction(math.floor(rational_value(expr.args[0], limits)))
    if isinstance(expr, sympy.ceiling):
        return Fraction(math.ceil(rational_value(expr.args[0], limits)))
    if isinstance(expr, sympy.Abs):
        return abs(rational_value(expr.args[0], limits))
    if isinstance(expr, sympy.Mod):
        a, b = (rational_value(arg, limits) for arg in expr.args)
        if b == 0:
            raise DivisionByZero("modulo zero")
        return a % b
    raise NotRational(f"{type(expr).__name__} is not a rational operation")


def _power(base: Fraction, exponent: Fraction, limits: Limits) -> Fraction:
    if exponent.denominator != 1:
        degree = exponent.denominator
        if degree > 16 or base < 0:
            raise NotRational("root that is not an exact rational")
        numerator = _exact_root(base.numerator, degree)
        denominator = _exact_root(base.denominator, degree)
        if numerator is None or denominator is None:
            raise NotRational("root that is not an exact rational")
        base, exponent = Fraction(numerator, denominator), Fraction(exponent.numerator)
    n = exponent.numerator
    if base == 0:
        if n < 0:
            raise DivisionByZero("division by zero")
        return Fraction(0 if n else 1)
    if abs(base) == 1:
        return base ** n
    if abs(n) > limits.max_exponent or _bits(base) * abs(n) > limits.max_result_bits:
        raise TooBig(f"power with exponent {n} is too large")
    return base ** n


# -- irrational values -----------------------------------------------------------------------

def check_bounded_powers(expr, limits: Limits = DEFAULT_LIMITS) -> None:
    """Every exponent and factorial argument is a small exact rational, so sympy's own
    evaluation of the tree stays small (the precondition of `real_difference`)."""
    for node in sympy.preorder_traversal(expr):
        if isinstance(node, sympy.Pow):
            exponent = node.args[1]
            if exponent.free_symbols:
                raise NotRational("symbolic exponent")
            value = rational_value(exponent, limits)
            if abs(value) > limits.max_exponent:
                raise TooBig(f"power with exponent {value} is too large")
            if value.denominator == 1 and not node.args[0].free_symbols:
                try:
                    base = rational_value(node.args[0], limits)
                except NotRational:
                    continue
                if _bits(base) * abs(value.numerator) > limits.max_result_bits:
                    raise TooBig(f"power with exponent {value} is too large")
        elif isinstance(node, (sympy.factorial, sympy.binomial)):
            rational_value(node, limits)
        elif isinstance(node, sympy.exp) and not node.args[0].free_symbols:
            if abs(rational_value_or_float(node.args[0], limits)) > 10_000:
                raise TooBig("exponential of a large number")


def rational_value_or_float(expr, limits: Limits) -> float:
    try:
        return float(rational_value(expr, limits))
    except NotRational:
        return float(sympy.N(expr, 15))


def real_difference(lhs, rhs, limits: Limits = DEFAULT_LIMITS, seconds: float | None = 1.0,
                    digits: int = 30):
    """`lhs - rhs` for symbol-free expressions with irrational parts: `0` when sympy proves
    them equal, else a sympy Float accurate to `digits` significant digits.

    Raises `Unsafe` when it cannot decide (unbounded sizes, time limit, precision).
    """
    check_bounded_powers(lhs, limits)
    check_bounded_powers(rhs, limits)
    with time_limit(seconds):
        try:
            difference = sympy.Add(lhs.doit(), -rhs.doit())
            if difference.is_zero is True or difference == 0:
                return sympy.Integer(0)
            if difference.free_symbols or not difference.is_number:
                raise NotRational("not a number")
            if difference.has(sympy.zoo):
                raise DivisionByZero("division by zero")
            if difference.has(sympy.nan, sympy.oo, -sympy.oo):
                raise NotRational("undefined value")
            try:
                value = difference.evalf(digits, strict=True)
            except sympy.core.evalf.PrecisionExhausted:
                simplified = sympy.simplify(difference)
                if simplified == 0:
                    return sympy.Integer(0)
                raise NotRational("could not tell the value from zero") from None
            if value.is_real is not True:
                raise NotRational("not a real number")
            return value
        except Unsafe:
            raise
        except (ValueError, TypeError, ArithmeticError, RecursionError, AttributeError) as err:
            raise NotRational(f"could not evaluate ({type(err).__name__})") from None
