"""GSM8K: grade-school math word problems with line-by-line reference solutions.

Two layouts are read (the reader tells them apart by their fields):

- train/test (`question`, `answer`): the answer has one reasoning step a line, with
  calculator notes like `<<48/2=24>>`, and ends with `#### <final answer>`. Steps are the
  non-blank lines before `####`; that line gives `final_answer` and `reference_answer` and
  is not a step. These are reference solutions, so every step is labelled 1
  (label_source "import"), outcome_label is 1, and meta gold_labels / gold_first_error (-1)
  are set.
- model solutions (`example_model_solutions.jsonl`: `question`, `ground_truth` and four
  model entries `{is_correct, solution}`): one trace per (question, model). Steps are the
  solution lines before the last-line `A: <answer>`; outcome_label comes from `is_correct`;
  step labels are unknown (None). `reference_answer` is the answer of `ground_truth`.
  A few solutions were cut off by the generator and have no `A:` line: their
  final_answer is None.

Ids are `gsm8k-<file stem>-<row>` (row 0-based), plus `-<model>` for model solutions.

`inject_calculator_error` makes step-labelled negatives out of correct traces: it changes
the result of one calculator note, so the error and its first step are known exactly.

Writing GSM8K (`question`/`answer`) keeps the calculator notes and `#### answer`; labels,
outcome and meta are lost (the layout has no place for them).
"""

from __future__ import annotations

import copy
import os
import random
import re
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from prm.errors import RecordError
from prm.formats.base import gold_meta, read_rows, require, string_field, write_rows
from prm.io import ReadReport
from prm.records import Step, Trace

MODELS = ("6b_finetuning", "6b_verification", "175b_finetuning", "175b_verification")

# A calculator note `<<expression=result>>` (group 1: what is inside). The one pattern for
# notes: the checkers (`annotate.checkers.claims`) and the world (`completers.world`) use it.
CALCULATOR_NOTE = re.compile(r"<<([^<>]*)>>")
PLAIN_NUMBER = re.compile(r"-?(\d+(\.\d*)?|\.\d+)")
# The number written right after a note, as GSM8K writes it (maybe with thousands commas).
WRITTEN_NUMBER = re.compile(r"-?(\d{1,3}(,\d{3})+|\d+)?(\.\d+)?")


def parse_gsm8k_answer(answer_text: str) -> tuple[list[str], str | None]:
    """Split a GSM8K answer into its steps and its final answer.

    Steps are the non-blank lines (stripped) before the `#### x` line; the final answer
    is `x` stripped, or None when there is no `####` line (then every line is a step).
    """
    steps: list[str] = []
    for line in answer_text.split("\n"):
        if line.lstrip().startswith("####"):
            return steps, line.lstrip()[4:].strip()
        if line.strip():
            steps.append(line.strip())
    return steps, None


def read_gsm8k(path: str | os.PathLike, *, skip_invalid: bool = False,
               report: ReadReport | None = None, limit: int | None = None) -> list[Trace]:
    """Read a GSM8K train/test file or the model-solutions file into traces."""
    stem = Path(path).stem

    def convert(row: Any, index: int) -> Trace | list[Trace]:
        require(row, "question")
        if "answer" in row:
            return _reference_trace(row, f"gsm8k-{stem}-{index}")
        if "ground_truth" in row:
            return _model_traces(row, f"gsm8k-{stem}-{index}")
        raise RecordError("missing required field (a GSM8K row has `answer` or `ground_truth`)",
                          field="answer")

    return read_rows(path, convert, skip_invalid=skip_invalid, report=report, limit=limit)


def _reference_trace(row: dict, trace_id: str) -> Trace:
    question, answer = string_field(row, "question"), string_field(row, "answer")
    steps, final = parse_gsm8k_answer(answer)
    if final is None:
        raise RecordError("no `#### answer` line", field="answer")
    if not steps:
        raise RecordError("empty step list (no line before `####`)", field="answer")
    labels = [1] * len(steps)
    return Trace(id=trace_id, problem=question,
                 steps=[Step(text, hard_label=1, label_source="import") for text in steps],
                 final_answer=final, reference_answer=final, outcome_label=1,
                 meta={"source": "gsm8k", **gold_meta(labels)})


def _model_traces(row: dict, trace_id: str) -> list[Trace]:
    question = string_field(row, "question")
    _, reference = _split_model_solution(string_field(row, "ground_truth"))
    traces = []
    for model in MODELS:
        require(row, model)
        entry = row[model]
        require(entry, "solution", "is_correct")
        where = f"{model}.solution"
        if not isinstance(entry["solution"], str):
            raise RecordError("must be a string", field=where)
        if not isinstance(entry["is_correct"], bool):
            raise RecordError("must be true or false", field=f"{model}.is_correct")
        steps, final = _split_model_solution(entry["solution"])
        if not steps:
            raise RecordError("empty step list", field=where)
        traces.append(Trace(id=f"{trace_id}-{model}", problem=question,
                            steps=[Step(text) for text in steps], final_answer=final,
                            reference_answer=reference, outcome_label=int(entry["is_correct"]),
                            meta={"source": "gsm8k-model-solutions", "generator": model}))
    return traces


def _split_model_solution(text: str) -> tuple[list[str], str | None]:
    """Steps and final answer of a model solution ending with an `A: x` line."""
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    if lines and lines[-1].startswith("A:"):
        return lines[:-1], lines[-1][2:].strip()
    return lines, None


def write_gsm8k(path: str | os.PathLike, traces: list[Trace], **_options) -> int:
    """Write traces as GSM8K `question`/`answer` rows (labels are not kept)."""
    rows = []
    for trace in traces:
        answer = "\n".join(trace.step_texts)
        final = trace.final_answer if trace.final_answer is not None else trace.reference_answer
        if final is not None:
            answer += f"\n#### {final}"
        rows.append({"question": trace.problem, "answer": answer})
    return write_rows(path, rows)


def load_gsm8k_hub(split: str = "test", config: str = "main") -> list[Trace]:
    """GSM8K from the Hugging Face hub ("openai/gsm8k"), as traces (needs internet)."""
    import datasets

    table = datasets.load_dataset("openai/gsm8k", config, split=split)
    return [_reference_trace(row, f"gsm8k-{split}-{i}") for i, row in enumerate(table)]


# -- negatives with a known first error ------------------------------------------------------

def inject_calculator_error(trace: Trace, rng: random.Random) -> Trace | None:
    """A copy of `trace` with one calculator result changed by a random +-1..10.

    One note `<<expr=v>>` (chosen with `rng` among the notes whose v is a plain number)
    gets v changed inside the note and in the number written right after `>>` (when that
    number is v, with or without thousands commas). That step and every later step are
    labelled 0, earlier steps 1 (label_source "gold"); meta gold_labels / gold_first_error
    and meta["injected"] say what was changed; outcome_label is 0. Returns None when the
    trace has no calculator note with a numeric result.
    """
    notes = [(i, match, parts) for i, step in enumerate(trace.steps)
             for match in CALCULATOR_NOTE.finditer(step.text)
             if (parts := split_note(match.group(1))) and PLAIN_NUMBER.fullmatch(parts[1].strip())]
    if not notes:
        return None
    index, note, (expression, result) = notes[rng.randrange(len(notes))]
    delta = rng.choice([d for d in range(-10, 11) if d != 0])
    old = result.strip()
    new = _shift(old, delta)
    text = trace.steps[index].text
    after = note.end()
    written = WRITTEN_NUMBER.match(text, after)
    tail = text[after:]
    if written and written.group(0) and _same_number(written.group(0), old):
        tail = _format_like(new, written.group(0)) + text[written.end():]
    changed = text[:note.start()] + f"<<{expression}={new}>>" + tail

    result = copy.deepcopy(trace)
    result.id = f"{trace.id}-calc-error"
    result.steps[index].text = changed
    labels = [1 if i < index else 0 for i in range(len(result.steps))]
    for step, label in zip(result.steps, labels):
        step.hard_label, step.soft_label, step.label_source = label, None, "gold"
        step.verdicts, step.rollouts, step.score = [], None, None
    result.outcome_label = 0
    result.meta = {**result.meta, **gold_meta(labels),
                   "injected": {"step": index, "original": old, "new": new, "delta": delta}}
    return result


def split_note(inside: str) -> tuple[str, str] | None:
    """(expression, result) of a note's inside `48/2=24`, or None unless it has one `=`."""
    if inside.count("=") != 1:
        return None
    expression, result = inside.split("=")
    return expression, result


def _shift(number: str, delta: int) -> str:
    """`number` + `delta`, exactly, written with as many decimals as `number` had."""
    return format(Decimal(number) + delta, "f")


def _same_number(written: str, plain: str) -> bool:
    try:
        return Decimal(written.replace(",", "")) == Decimal(plain)
    except InvalidOperation:
        return False


def _format_like(plain: str, written: str) -> str:
    """`plain` written with thousands commas if `written` had them."""
    if "," not in written:
        return plain
    sign = "-" if plain.startswith("-") else ""
    whole, _, decimals = plain.lstrip("-").partition(".")
    return sign + f"{int(whole):,}" + (f".{decimals}" if decimals else "")
