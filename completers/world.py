"""The embedded default world: GSM8K-style word problems with exactly known step labels.

`generate_problems(n, seed)` draws problems from ten templates (shopping, rates, sharing,
ages, savings, travel, baking, reading, farming, sports) with random names and numbers.
Each problem carries its reference program: the solution lines, written exactly in
GSM8K's answer format (one step a line, one `<<expr=value>>` calculator note per step, a
last line `#### answer`), and the set of values that program computes. All numbers are
integers (divisions are exact) and small (97% of the computed values are below 100, all
below 200; every product has a one-digit factor) so that a 1M-parameter model can
learn the arithmetic. Problems have 2 to 6 steps and 100-160 characters of question.

Gold step labels for a sampled solution (`gold_labels`, `trace_from_sample`)
-------------------------------------------------------------------------------
The generator knows the program, so the label of every step of any solution is exact:

1. A step with calculator notes is correct when every note verifies and is needed:
   - its expression (numbers, + - * / and parentheses; `x` counts as `*`) evaluates,
     with exact fractions, to the value written after `=` inside the note;
   - the number written right after `>>` equals that value (the visible result);
   - that value is one the reference program computes (`needed_values`: its intermediate
     results and its answer), so the right answer is still reachable from it.
   A malformed note (no `=`, unparsable expression, `<<` without `>>`) is wrong.
2. A step without any calculator note makes no checkable computation; it is correct when
   every number in its text is a number of the problem (`given_values`) or a needed
   value (so "So she spends $30." with a wrong 30 is wrong, "Add them up." is right).
3. The first step that breaks 1 or 2 is the first error; it and every later step are
   labelled 0 (later steps build on a wrong state; this is the PRM800K / ProcessBench
   convention and the one `prm.formats.gsm8k.inject_calculator_error` uses).
4. The `#### answer` line is not a step. A solution whose steps are all correct can still
   end on a wrong or missing answer (it stopped early, or copied the wrong value): its
   labels are all 1, `gold_first_error` is -1, `outcome_label` is 0 and
   `meta["gold_answer_error"]` is True.

Limits of the rule: a correct but differently decomposed computation (e.g. adding three
numbers in one step where the program adds two at a time) gets a 0, because its result is
not among the program's values; the tiny model imitates the reference decomposition, so
this is rare in its samples.

Arithmetic in model output is untrusted text: it is evaluated by a small `ast` walk over
numbers and + - * / (`evaluate_expression`), never by `eval`.
"""

from __future__ import annotations

import ast
import random
import re
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from prm.formats.gsm8k import CALCULATOR_NOTE, parse_gsm8k_answer, split_note
from prm.records import Step, Trace

if TYPE_CHECKING:  # completers.base is light, but keep the import where it is needed
    from completers.base import Completer, SamplingParams

SOURCE = "tiny-gsm-world"

# --------------------------------------------------------------------------------------
# Problems
# --------------------------------------------------------------------------------------


@dataclass
class WorldProblem:
    """One generated problem with its reference program."""

    id: str
    template: str
    question: str
    steps: list[str]  # reference solution lines, without the `#### answer` line
    answer: int
    needed_values: list[int]  # every value the reference program computes (answer included)
    given_values: list[int]  # every number stated in the question

    @property
    def solution(self) -> str:
        """The reference solution in GSM8K's answer format."""
        return "\n".join(self.steps + [f"#### {self.answer}"])

    def to_trace(self) -> Trace:
        """The reference solution as a trace: every step gold-labelled 1."""
        n = len(self.steps)
        return Trace(
            id=self.id, problem=self.question,
            steps=[Step(s, hard_label=1, label_source="gold") for s in self.steps],
            final_answer=str(self.answer), reference_answer=str(self.answer), outcome_label=1,
            meta={"source": SOURCE, "template": self.template,
                  "needed_values": list(self.needed_values),
                  "given_values": list(self.given_values),
                  "gold_labels": [1] * n, "gold_first_error": -1})


class _Program:
    """Collects the steps of a reference solution while a template writes them."""

    def __init__(self):
        self.steps: list[str] = []
        self.values: list[int] = []

    def calc(self, a: int, op: str, b: int, dollars: bool = False) -> tuple[str, int]:
        """`a op b = <<a op b=v>>v` (`$<<` for dollars) and v; divisions must be exact."""
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b if b and a % b == 0 else None}[op]
        if value is None or value < 0:
            raise ValueError(f"{a} {op} {b} is not a whole non-negative number")
        self.values.append(value)
        return f"{a} {op} {b} = {'$' if dollars else ''}<<{a}{op}{b}={value}>>{value}", value

    def step(self, text: str) -> None:
        self.steps.append(text)


NAMES = [("Mia", "she"), ("Leo", "he"), ("Ava", "she"), ("Sam", "he"), ("Zoe", "she"),
         ("Ben", "he"), ("Lily", "she"), ("Max", "he"), ("Emma", "she"), ("Tom", "he"),
         ("Nora", "she"), ("Jack", "he"), ("Ella", "she"), ("Omar", "he"), ("Ruby", "she"),
         ("Luis", "he"), ("Ivy", "she"), ("Noah", "he"), ("Maya", "she"), ("Eli", "he")]
ITEMS = ["pens", "books", "apples", "cups", "hats", "toys", "plates", "socks", "balls",
         "cards", "kites", "mugs"]
CONTAINERS = ["bags", "boxes", "jars", "bowls"]
MAKERS = [("machine", "toys"), ("printer", "pages"), ("robot", "boxes"), ("bakery", "rolls"),
          ("factory", "chairs")]
BAKED = ["muffins", "cookies", "cupcakes", "rolls", "tarts"]
TREES = ["apple", "pear", "lemon", "plum", "peach"]
VEHICLES = ["bus", "car", "train", "truck", "van"]
RELATIVES = ["aunt", "uncle", "grandma", "grandpa", "mom", "dad"]
FRACTIONS = {2: "half", 3: "1/3", 4: "1/4", 5: "1/5"}
POSSESSIVE = {"she": "her", "he": "his"}
OBJECT = {"she": "her", "he": "him"}


def _shopping(rng: random.Random, p: _Program) -> tuple[str, int]:
    name, pron = rng.choice(NAMES)
    n_kinds = rng.choice([1, 2, 2, 3])
    kinds = rng.sample(ITEMS, n_kinds)
    counts = [rng.randint(2, 6) for _ in kinds]
    prices = [rng.randint(2, 9) for _ in kinds]
    phrases = [f"{c} {k} at ${pr} each" for c, k, pr in zip(counts, kinds, prices)]
    bought = phrases[0] if n_kinds == 1 else ", ".join(phrases[:-1]) + " and " + phrases[-1]
    costs = []
    for c, k, pr in zip(counts, kinds, prices):
        text, cost = p.calc(c, "*", pr, dollars=True)
        p.step(f"The {k} cost {text}.")
        costs.append(cost)
    total = costs[0]
    for cost in costs[1:]:
        text, total = p.calc(total, "+", cost, dollars=True)
        p.step(f"In all {pron} spends {text}.")
    bill = next(b for b in (10, 20, 50, 100, 200) if b > total)
    text, change = p.calc(bill, "-", total, dollars=True)
    p.step(f"{pron.capitalize()} gets {text} back.")
    return (f"{name} buys {bought}. {pron.capitalize()} pays with a ${bill} bill. "
            f"How much change does {pron} get?"), change


def _rates(rng: random.Random, p: _Program) -> tuple[str, int]:
    maker, things = rng.choice(MAKERS)
    per_hour = rng.randint(2, 9)
    hours = rng.randint(2, 6)
    days = rng.randint(2, 3)
    text, per_day = p.calc(per_hour, "*", hours)
    p.step(f"It makes {text} {things} a day.")
    text, made = p.calc(per_day, "*", days)
    p.step(f"In {days} days it makes {text} {things}.")
    question = (f"A {maker} makes {per_hour} {things} an hour. It works {hours} hours a day. ")
    if rng.random() < 0.5:
        return question + f"How many {things} does it make in {days} days?", made
    broken = rng.randint(2, min(9, made - 1))
    text, good = p.calc(made, "-", broken)
    p.step(f"So {text} {things} are good.")
    return question + (f"In {days} days, {broken} of its {things} are bad. "
                       f"How many good {things} does it make in {days} days?"), good


def _sharing(rng: random.Random, p: _Program) -> tuple[str, int]:
    name, pron = rng.choice(NAMES)
    thing = rng.choice(["candies", "stickers", "marbles", "grapes", "coins"])
    while True:
        part = rng.choice([2, 3, 4])
        friends = rng.randint(2, 5)
        each = rng.randint(2, 9)
        rest = each * friends
        if rest % (part - 1) == 0:
            break
    total = rest * part // (part - 1)
    text, kept = p.calc(total, "/", part)
    p.step(f"{name} eats {text} {thing}.")
    text, left = p.calc(total, "-", kept)
    p.step(f"That leaves {text} {thing}.")
    text, share = p.calc(left, "/", friends)
    p.step(f"Each friend gets {text} {thing}.")
    return (f"{name} has {total} {thing}. {pron.capitalize()} eats {FRACTIONS[part]} of them "
            f"and shares the rest equally among {friends} friends. "
            f"How many {thing} does each friend get?"), share


def _ages(rng: random.Random, p: _Program) -> tuple[str, int]:
    name, _ = rng.choice(NAMES)
    age = rng.randint(3, 9)
    times = rng.randint(2, 4)
    older = rng.randint(15, 30)
    years = rng.randint(2, 9)
    text, cousin = p.calc(age, "*", times)
    p.step(f"The cousin is {text} years old.")
    text, uncle = p.calc(cousin, "+", older)
    p.step(f"The uncle is {text} years old.")
    question = (f"{name} is {age} years old. {name}'s cousin is {times} times as old as {name}. "
                f"Their uncle is {older} years older than the cousin. ")
    if rng.random() < 0.5:
        text, later = p.calc(uncle, "+", years)
        p.step(f"In {years} years he will be {text}.")
        return question + f"How old will the uncle be in {years} years?", later
    text, both = p.calc(age, "+", cousin)
    p.step(f"{name} and the cousin are {text} years old together.")
    text, total = p.calc(both, "+", uncle)
    p.step(f"All three are {text} years old together.")
    return question + "What is the sum of their three ages?", total


def _savings(rng: random.Random, p: _Program) -> tuple[str, int]:
    name, pron = rng.choice(NAMES)
    relative = rng.choice(RELATIVES)
    weekly = rng.randint(3, 9)
    weeks = rng.randint(3, 9)
    text, saved = p.calc(weekly, "*", weeks, dollars=True)
    p.step(f"{name} saves {text}.")
    game = rng.randint(2, saved // 3)
    book = rng.randint(2, saved // 3)
    text, spent = p.calc(game, "+", book, dollars=True)
    p.step(f"{pron.capitalize()} spends {text}.")
    text, left = p.calc(saved, "-", spent, dollars=True)
    p.step(f"{pron.capitalize()} has {text} left.")
    question = (f"{name} saves ${weekly} a week for {weeks} weeks. {pron.capitalize()} spends "
                f"${game} on a game and ${book} on a book. ")
    if rng.random() < 0.4:
        return question + f"How much money does {pron} have left?", left
    times = 2
    text, gift = p.calc(spent, "*", times, dollars=True)
    p.step(f"{pron.capitalize()} gets {text}.")
    text, now = p.calc(left, "+", gift, dollars=True)
    p.step(f"Now {pron} has {text}.")
    return question + (f"Then {POSSESSIVE[pron]} {relative} gives "
                       f"{OBJECT[pron]} twice what {pron} spent. How much does {pron} have now?"), now


def _travel(rng: random.Random, p: _Program) -> tuple[str, int]:
    vehicle = rng.choice(VEHICLES)
    speed1, hours1 = rng.randint(2, 6) * 5, rng.randint(2, 3)
    speed2, hours2 = rng.randint(2, 6) * 5, rng.randint(2, 3)
    text, first = p.calc(speed1, "*", hours1)
    p.step(f"First it goes {text} miles.")
    text, second = p.calc(speed2, "*", hours2)
    p.step(f"Then it goes {text} miles.")
    text, total = p.calc(first, "+", second)
    p.step(f"It goes {text} miles in all.")
    question = (f"A {vehicle} goes {speed1} miles an hour for {hours1} hours, then "
                f"{speed2} miles an hour for {hours2} hours. ")
    if rng.random() < 0.5:
        return question + "How many miles does it go in all?", total
    trip = (total // 10 + rng.randint(1, 9)) * 10
    text, left = p.calc(trip, "-", total)
    p.step(f"It has {text} miles left.")
    return question + f"The trip is {trip} miles long. How many miles are left?", left


def _baking(rng: random.Random, p: _Program) -> tuple[str, int]:
    name, pron = rng.choice(NAMES)
    baked = rng.choice(BAKED)
    plural = rng.choice(CONTAINERS)
    while True:
        trays, per_tray = rng.randint(2, 4), rng.randint(4, 12)
        made = trays * per_tray
        box = rng.randint(2, 5)
        sold = rng.randint(1, made - box)
        if (made - sold) % box == 0:
            break
    text, made = p.calc(trays, "*", per_tray)
    p.step(f"{name} bakes {text} {baked}.")
    text, rest = p.calc(made, "-", sold)
    p.step(f"{pron.capitalize()} has {text} {baked} left.")
    text, boxes = p.calc(rest, "/", box)
    p.step(f"{pron.capitalize()} fills {text} {plural}.")
    return (f"{name} bakes {trays} trays of {per_tray} {baked}. {pron.capitalize()} sells {sold} "
            f"of them and puts the rest in {plural} of {box}. How many {plural} does "
            f"{pron} fill?"), boxes


def _reading(rng: random.Random, p: _Program) -> tuple[str, int]:
    name, pron = rng.choice(NAMES)
    per_day, days = rng.randint(3, 12), rng.randint(2, 6)
    text, read = p.calc(per_day, "*", days)
    p.step(f"{pron.capitalize()} reads {text} pages.")
    question = f"{name} reads {per_day} pages a day for {days} days"
    if rng.random() < 0.5:
        extra = rng.randint(5, 20)
        text, read = p.calc(read, "+", extra)
        p.step(f"In all {pron} reads {text} pages.")
        question += f" and {extra} pages on Sunday"
    pages = read + rng.randint(1, 9) * 10
    text, left = p.calc(pages, "-", read)
    p.step(f"{pron.capitalize()} has {text} pages left.")
    return (f"A book has {pages} pages. {question}. "
            f"How many pages does {pron} still have to read?"), left


def _farming(rng: random.Random, p: _Program) -> tuple[str, int]:
    name, pron = rng.choice(NAMES)
    tree = rng.choice(TREES)
    while True:
        rows, per_row = rng.randint(2, 9), rng.randint(2, 9)
        more = rng.randint(2, 20)
        part = rng.choice([2, 3, 4])
        if (rows * per_row + more) % part == 0:
            break
    text, planted = p.calc(rows, "*", per_row)
    p.step(f"{name} plants {text} trees first.")
    text, total = p.calc(planted, "+", more)
    p.step(f"Then there are {text} trees.")
    text, special = p.calc(total, "/", part)
    p.step(f"So {text} are {tree} trees.")
    question = (f"{name} plants {rows} rows of {per_row} trees, then {more} more trees. "
                f"{FRACTIONS[part].capitalize()} of all the trees are {tree} trees. ")
    if rng.random() < 0.5:
        return question + f"How many {tree} trees are there?", special
    text, others = p.calc(total, "-", special)
    p.step(f"And {text} are not {tree} trees.")
    return question + f"How many trees are not {tree} trees?", others


def _sports(rng: random.Random, p: _Program) -> tuple[str, int]:
    (name, _), (friend, _) = rng.sample(NAMES, 2)
    goals, goal_pts = rng.randint(2, 9), rng.randint(2, 3)
    shots, shot_pts = rng.randint(2, 9), rng.choice([1, 2])
    times = rng.randint(2, 3)
    text, from_goals = p.calc(goals, "*", goal_pts)
    p.step(f"{name} gets {text} points from goals.")
    text, from_shots = p.calc(shots, "*", shot_pts)
    p.step(f"{name} gets {text} points from shots.")
    text, mine = p.calc(from_goals, "+", from_shots)
    p.step(f"{name} scores {text} points.")
    text, theirs = p.calc(mine, "*", times)
    p.step(f"{friend} scores {text} points.")
    text, total = p.calc(mine, "+", theirs)
    p.step(f"Together they score {text} points.")
    return (f"{name} scores {goals} goals worth {goal_pts} points each and {shots} shots worth "
            f"{shot_pts} point{'s' if shot_pts > 1 else ''} each. {friend} scores {times} times as "
            f"many points as {name}. How many points do they score together?"), total


TEMPLATES: dict[str, Callable[[random.Random, _Program], tuple[str, int]]] = {
    "shopping": _shopping, "rates": _rates, "sharing": _sharing, "ages": _ages,
    "savings": _savings, "travel": _travel, "baking": _baking, "reading": _reading,
    "farming": _farming, "sports": _sports,
}

_NUMBER = re.compile(r"\d+(?:,\d{3})*(?:\.\d+)?")


def _numbers_in(text: str) -> list[Fraction]:
    return [Fraction(m.group().replace(",", "")) for m in _NUMBER.finditer(text)]


def generate_problem(rng: random.Random, problem_id: str, template: str | None = None) -> WorldProblem:
    """One problem from the named template (a random one if None), drawn with `rng`."""
    name = template or rng.choice(sorted(TEMPLATES))
    program = _Program()
    question, answer = TEMPLATES[name](rng, program)
    if program.values[-1] != answer:
        raise AssertionError(f"template {name} does not end on its answer")
    return WorldProblem(
        id=problem_id, template=name, question=question, steps=program.steps, answer=answer,
        needed_values=sorted(set(program.values)),
        given_values=sorted({int(v) for v in _numbers_in(question)}))


def generate_problems(n: int, seed: int = 0, templates: list[str] | None = None) -> list[WorldProblem]:
    """`n` problems, reproducible from `seed`; ids are `tiny-gsm-<seed>-<i>`."""
    rng = random.Random(seed)
    names = sorted(templates or TEMPLATES)
    unknown = set(names) - set(TEMPLATES)
    if unknown:
        raise ValueError(f"unknown template(s) {sorted(unknown)}; known: {sorted(TEMPLATES)}")
    return [generate_problem(rng, f"tiny-gsm-{seed}-{i}", rng.choice(names)) for i in range(n)]


# --------------------------------------------------------------------------------------
# Safe arithmetic and calculator notes
# --------------------------------------------------------------------------------------

_MAX_EXPRESSION = 200
_BINARY = {ast.Add: lambda a, b: a + b, ast.Sub: lambda a, b: a - b,
           ast.Mult: lambda a, b: a * b, ast.Div: lambda a, b: a / b}


def evaluate_expression(text: str) -> Fraction | None:
    """The exact value of an arithmetic expression (numbers, + - * / and parentheses;
    `x`/`×` for `*`, `÷` for `/`, `,` thousands separators, `$` and `%` signs ignored),
    or None if it is anything else or divides by zero. Never runs the text."""
    cleaned = (text.replace("×", "*").replace("÷", "/").replace("$", "").replace("%", "")
               .replace("x", "*").replace("X", "*"))
    cleaned = re.sub(r"(?<=\d),(?=\d{3})", "", cleaned).strip()
    if not cleaned or len(cleaned) > _MAX_EXPRESSION:
        return None
    try:
        tree = ast.parse(cleaned, mode="eval")
    except (SyntaxError, ValueError):
        return None

    def walk(node: ast.AST) -> Fraction:
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            return Fraction(str(node.value)) if isinstance(node.value, float) else Fraction(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
            value = walk(node.operand)
            return -value if isinstance(node.op, ast.USub) else value
        if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
            return _BINARY[type(node.op)](walk(node.left), walk(node.right))
        raise ValueError("not arithmetic")

    try:
        return walk(tree.body)
    except (ValueError, ZeroDivisionError):
        return None


@dataclass
class CalculatorNote:
    """One `<<expression=value>>` note and the number written right after it."""

    expression: str
    value_text: str
    after_text: str | None  # the number right after `>>`, None if there is none

    @property
    def value(self) -> Fraction | None:
        return evaluate_expression(self.value_text)

    @property
    def verifies(self) -> bool:
        """The expression equals the value and the visible result repeats it."""
        value = self.value
        if value is None or evaluate_expression(self.expression) != value:
            return False
        return self.after_text is not None and Fraction(self.after_text.replace(",", "")) == value


# a calculator note and the number written after it
_NOTE = re.compile(CALCULATOR_NOTE.pattern + r"(\s*\$?\s*)(\d+(?:,\d{3})*(?:\.\d+)?)?")


def calculator_notes(step: str) -> list[CalculatorNote] | None:
    """The notes of a step ([] if it has none), or None if a note is malformed
    (no `=` inside, or an unmatched `<<` / `>>`)."""
    notes = []
    for match in _NOTE.finditer(step):
        parts = split_note(match.group(1))
        if parts is None:
            return None
        expression, value_text = parts
        notes.append(CalculatorNote(expression.strip(), value_text.strip(), match.group(3)))
    leftover = _NOTE.sub("", step)
    if "<<" in leftover or ">>" in leftover:
        return None
    return notes


# --------------------------------------------------------------------------------------
# Gold labels for sampled solutions
# --------------------------------------------------------------------------------------


def step_is_correct(problem: WorldProblem, step: str) -> bool:
    """Rules 1 and 2 of the module docstring for one step, regardless of earlier steps."""
    notes = calculator_notes(step)
    if notes is None:
        return False
    needed = {Fraction(v) for v in problem.needed_values}
    if notes:
        return all(note.verifies and note.value in needed for note in notes)
    allowed = needed | {Fraction(v) for v in problem.given_values}
    return all(number in allowed for number in _numbers_in(step))


def gold_labels(problem: WorldProblem, steps: list[str]) -> list[int]:
    """1/0 per step: correct steps until the first error, 0 from it on (rule 3)."""
    labels, broken = [], False
    for step in steps:
        broken = broken or not step_is_correct(problem, step)
        labels.append(0 if broken else 1)
    return labels


def parse_answer(text: str | None) -> Fraction | None:
    """The number in a final answer such as `42`, `$1,200` or `7.5`, else None."""
    if text is None:
        return None
    cleaned = text.strip().replace("$", "").replace(",", "").rstrip(".").strip()
    try:
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def trace_from_sample(problem: WorldProblem, text: str, trace_id: str) -> Trace:
    """A sampled solution (the text after `Answer:`) as a gold-labelled trace.

    Steps get the gold labels as hard labels (source "gold"); the same labels are kept in
    `meta["gold_labels"]` / `meta["gold_first_error"]` so annotation can overwrite the steps.
    A sample with no step line keeps its whole text as its single step.
    """
    steps, final = parse_gsm8k_answer(text)
    if not steps:
        steps = [text.strip() or "(empty)"]
    labels = gold_labels(problem, steps)
    reached = parse_answer(final) == problem.answer
    first_error = labels.index(0) if 0 in labels else -1
    return Trace(
        id=trace_id, problem=problem.question,
        steps=[Step(s, hard_label=label, label_source="gold") for s, label in zip(steps, labels)],
        final_answer=final, reference_answer=str(problem.answer), outcome_label=int(reached),
        meta={"source": SOURCE, "template": problem.template, "problem_id": problem.id,
              "needed_values": list(problem.needed_values),
              "given_values": list(problem.given_values),
              "gold_labels": labels, "gold_first_error": first_error,
              "gold_answer_error": first_error == -1 and not reached})


def sample_in_chunks(completer: "Completer", problems: list[WorldProblem], samples_per_problem: int,
                     folder: Path, params: SamplingParams, seed_of_chunk: Callable[[int], int], *,
                     chunk: int = 100, split: str | None = None, progress: bool = True) -> list[Trace]:
    """`sample_traces` for many problems, resumable: `chunk` problems at a time, each chunk's
    traces written whole (atomically) to `folder/<first>-<end>.jsonl` (its problems' indices)
    once it is sampled, so an interrupted run loses at most the chunk it was in and samples
    only the missing chunks when run again (a run over more problems reuses every whole chunk). Chunk `start`'s sampling seed is `seed_of_chunk(start)`:
    the traces do not depend on how many sittings they took. Every trace records its
    `meta["split"]` (when given) and `meta["sample_cpu_seconds"]`, its chunk's process
    CPU-seconds per trace. Returns the traces of all chunks, in problem order."""
    import time
    from dataclasses import replace

    from prm.io import read_traces, write_traces
    from prm.progress import progress_bar

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    starts = range(0, len(problems), chunk)
    traces: list[Trace] = []
    with progress_bar(total=len(starts), desc=f"sample {folder.name}", unit="chunk", enabled=progress) as bar:
        for start in starts:
            these = problems[start:start + chunk]
            part = folder / f"{start:07d}-{start + len(these):07d}.jsonl"
            if not part.exists():
                began = time.process_time()
                sampled = sample_traces(completer, these, samples_per_problem,
                                        replace(params, seed=seed_of_chunk(start)))
                cpu = (time.process_time() - began) / max(1, len(sampled))
                for trace in sampled:
                    trace.meta["sample_cpu_seconds"] = round(cpu, 5)
                    if split is not None:
                        trace.meta["split"] = split
                write_traces(part, sampled)
            traces += read_traces(part)
            bar.update(1)
    return traces


def sample_traces(completer: "Completer", problems: list[WorldProblem], samples_per_problem: int,
                  params: "SamplingParams | None" = None) -> list[Trace]:
    """Sample `samples_per_problem` solutions per problem with any completer and label them
    with gold labels; trace ids are `<problem id>-s<j>`."""
    from dataclasses import replace

    from completers.base import CompletionRequest, SamplingParams

    params = replace(params or SamplingParams(), n=samples_per_problem)
    requests = [CompletionRequest(p.question, []) for p in problems]
    results = completer.complete_many(requests, params)
    return [trace_from_sample(problem, completion.text, f"{problem.id}-s{j}")
            for problem, completions in zip(problems, results)
            for j, completion in enumerate(completions)]
