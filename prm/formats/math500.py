"""MATH500: the 500-problem MATH test subset (`problem`, `solution`, `answer`, `subject`,
`level`, `unique_id`), as released with PRM800K.

MATH solutions are prose with LaTeX, not one step a line: 349 of the 500 solutions are a
single paragraph and a line break often sits inside a formula. Steps are therefore
**sentences**: the solution is cut into paragraphs at blank lines, and each paragraph
into sentences where a `.`, `?` or `!` (maybe closing a formula: `.$`, `.\\]`) is
followed by white space and a capital letter or `$`, never inside `$...$`, `$$...$$`,
`\\[...\\]`, `\\(...\\)` or a `\\begin{..}...\\end{..}` environment. An `[asy]...[/asy]`
diagram is joined to the step before it.
Hand-written because sentence splitters (nltk, spaCy) break on LaTeX and are heavy
dependencies for one rule.

reference_answer = final_answer = `answer`; outcome_label is 1 (reference solutions);
step labels are unknown (None): a sentence is not a verified step. meta: source,
subject, level, unique_id. Ids are `math500-<unique_id>`. No writer.
"""

from __future__ import annotations

import os
import re
from typing import Any

from prm.errors import RecordError
from prm.formats.base import read_rows, require, string_field
from prm.io import ReadReport
from prm.records import Step, Trace

PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
ASY_BLOCK = re.compile(r"(\[asy\].*?\[/asy\])", re.DOTALL)
ENVIRONMENT = re.compile(r"\\begin\{([^{}]*)\}")
MATH_OPEN = {"$$": "$$", "$": "$", "\\[": "\\]", "\\(": "\\)"}
SENTENCE_END = (".", "?", "!")


def split_sentences(solution: str) -> list[str]:
    """The steps of a MATH solution: its sentences, paragraph by paragraph (see above)."""
    steps: list[str] = []
    for part in ASY_BLOCK.split(solution):
        if part.startswith("[asy]"):
            if steps:
                steps[-1] += "\n\n" + part
            else:
                steps.append(part)
            continue
        for paragraph in _paragraphs(part):
            steps.extend(_sentences(paragraph))
    return steps


def _paragraphs(text: str) -> list[str]:
    """Blank-line separated paragraphs, never cutting a `\\begin{..}...\\end{..}` block."""
    paragraphs: list[str] = []
    for chunk in PARAGRAPH_BREAK.split(text):
        if paragraphs and _open_environment(paragraphs[-1]):
            paragraphs[-1] += "\n\n" + chunk
        else:
            paragraphs.append(chunk)
    return [p.strip() for p in paragraphs if p.strip()]


def _open_environment(text: str) -> bool:
    return any(f"\\end{{{match.group(1)}}}" not in text[match.end():]
               for match in ENVIRONMENT.finditer(text))


def _sentences(text: str) -> list[str]:
    sentences, start, i, closing = [], 0, 0, None
    while i < len(text):
        environment = ENVIRONMENT.match(text, i) if closing is None else None
        if environment:  # a display environment (align*, ...) is one piece of math
            end = text.find(f"\\end{{{environment.group(1)}}}", environment.end())
            i = len(text) if end < 0 else end + len(environment.group(1)) + 6
            continue
        if text[i] == "\\" and closing is None and text[i:i + 2] in ("\\[", "\\("):
            closing, i = MATH_OPEN[text[i:i + 2]], i + 2
            continue
        if text[i] == "\\" and closing is not None and text[i:i + 2] == closing:
            closing, i = None, i + 2
            continue
        if text[i] == "\\":  # an escaped character (\$, \\, \{...) is never a delimiter
            i += 2
            continue
        if text[i] == "$":
            token = "$$" if text[i:i + 2] == "$$" else "$"
            if closing is None:
                closing = MATH_OPEN[token]
            elif closing == token:
                closing = None
            i += len(token)
            continue
        if closing is None and text[i].isspace() and _ends_sentence(text[start:i]):
            rest = text[i:].lstrip()
            if rest[:1].isupper() or rest[:1] == "$":
                sentences.append(text[start:i].strip())
                start = i = len(text) - len(rest)
                continue
        i += 1
    sentences.append(text[start:].strip())
    return [s for s in sentences if s]


def _ends_sentence(text: str) -> bool:
    """Does `text` end with sentence punctuation, maybe inside a closing formula or bracket?"""
    text = text.rstrip(")\"'")
    for closer in ("$$", "$", "\\]", "\\)"):
        if text.endswith(closer):
            text = text[:-len(closer)].rstrip()
            break
    return text.endswith(SENTENCE_END)


def read_math500(path: str | os.PathLike, *, skip_invalid: bool = False,
                 report: ReadReport | None = None, limit: int | None = None) -> list[Trace]:
    """Read MATH500 (or any MATH-style `problem`/`solution`/`answer` JSONL) into traces."""
    return read_rows(path, lambda row, i: trace_from_math(row, i),
                     skip_invalid=skip_invalid, report=report, limit=limit)


def trace_from_math(row: Any, index: int) -> Trace:
    """One MATH record as a trace with sentence steps."""
    require(row, "problem", "solution")
    steps = split_sentences(string_field(row, "solution"))
    if not steps:
        raise RecordError("empty step list", field="solution")
    answer = row.get("answer")
    if answer is not None and not isinstance(answer, str):
        raise RecordError(f"must be a string, got {type(answer).__name__}", field="answer")
    meta = {"source": "math500", **{k: row[k] for k in ("subject", "level", "unique_id") if k in row}}
    return Trace(id=f"math500-{row.get('unique_id', index)}", problem=string_field(row, "problem"),
                 steps=[Step(s) for s in steps], final_answer=answer, reference_answer=answer,
                 outcome_label=1 if answer is not None else None, meta=meta)


def load_math500_hub(split: str = "test", name: str = "HuggingFaceH4/MATH-500") -> list[Trace]:
    """MATH500 from the Hugging Face hub (needs internet)."""
    import datasets

    table = datasets.load_dataset(name, split=split)
    return [trace_from_math(row, i) for i, row in enumerate(table)]
