"""PRM800K (OpenAI, "Let's Verify Step by Step"): human ratings of solution steps.

A record (phase 1 or phase 2 release layout) has `question` (`problem`,
`ground_truth_answer`, and in phase 2 the `pre_generated_*` solution) and `label`:
`steps`, `finish_reason` (solution, found_error, give_up, bad_problem). At each step the
labeler rated one or more candidate `completions` (rating 1 good, 0 neutral, -1 bad),
then either chose one (`chosen_completion`), wrote a step (`human_completion`) or stopped.

One trace per record: the path the labeler took. At each step: the chosen completion;
else the human-written completion; else (the labeler stopped) the first completion rated
-1 if there is one (the error that was found) and the trace ends there. Other candidate
completions are not kept (lossy).

Labels (label_source "human", also kept as meta gold_labels / gold_first_error):
- rating 1 -> hard 1, soft 1.0; rating -1 -> hard 0, soft 0.0;
- rating 0 (neutral: "reasonable but not helpful") -> soft 0.5 and a hard label chosen
  by `neutral`: "positive" (default: a neutral step is not an error, so the first-error
  position is the first -1), "negative" (0) or "unknown" (None);
- a human-written step has rating null in the release: the labeler wrote it as the right
  continuation, so it gets hard 1 / soft 1.0 (its `corrected_rating`/`rating` is used when
  present). A missing rating elsewhere gives unknown labels.
The raw ratings stay in meta["ratings"].

final_answer is the text after `# Answer` in the last step (None if the labeler did not
get there); reference_answer = ground_truth_answer; outcome_label is None (grading the
answer is the annotator's job). meta: source, phase (1 or 2: `generation` null or not),
finish_reason, labeler. Ids are `prm800k-<file stem>-<row>`. No writer.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

from prm.errors import RecordError
from prm.formats.base import gold_meta, read_rows, require
from prm.io import ReadReport
from prm.records import Step, Trace

NEUTRAL = ("positive", "negative", "unknown")
ANSWER = re.compile(r"#\s*Answer\s*(.*)$", re.DOTALL)
HARD = {1: 1, -1: 0}
SOFT = {1: 1.0, 0: 0.5, -1: 0.0}


def read_prm800k(path: str | os.PathLike, *, skip_invalid: bool = False,
                 report: ReadReport | None = None, limit: int | None = None,
                 neutral: str = "positive") -> list[Trace]:
    """Read a PRM800K phase-1/phase-2 file (JSONL as released, Parquet or `datasets` folder)."""
    if neutral not in NEUTRAL:
        raise ValueError(f"neutral must be one of {NEUTRAL}, got {neutral!r}")
    stem = Path(path).stem
    return read_rows(path, lambda row, i: trace_from_prm800k(row, f"prm800k-{stem}-{i}", neutral),
                     skip_invalid=skip_invalid, report=report, limit=limit)


def trace_from_prm800k(row: Any, trace_id: str, neutral: str = "positive") -> Trace:
    """The labeler's path through one PRM800K record, as a trace."""
    require(row, "question", "label")
    question, label = row["question"], row["label"]
    try:
        require(question, "problem")
    except RecordError as err:
        raise RecordError(err.reason, field=f"question.{err.field or ''}".rstrip(".")) from None
    if not isinstance(label, dict) or not isinstance(label.get("steps"), list):
        raise RecordError("must hold a list of steps", field="label.steps")
    texts, ratings = [], []
    for k, step in enumerate(label["steps"]):
        picked = _pick(step, f"label.steps[{k}]")
        if picked is None:
            break
        (text, rating), last = picked
        texts.append(text)
        ratings.append(rating)
        if last:
            break
    if not texts:
        raise RecordError("empty step list (no rated step on the labeler's path)", field="label.steps")
    hard = [_hard(r, neutral) for r in ratings]
    soft = [SOFT.get(r) for r in ratings]
    steps = [Step(t, hard_label=h, soft_label=s, label_source=None if s is None else "human")
             for t, h, s in zip(texts, hard, soft)]
    answer = ANSWER.search(texts[-1])
    return Trace(id=trace_id, problem=question["problem"], steps=steps,
                 final_answer=answer.group(1).strip() if answer else None,
                 reference_answer=question.get("ground_truth_answer"),
                 meta={"source": "prm800k", "phase": 1 if row.get("generation") is None else 2,
                       "finish_reason": label.get("finish_reason"), "labeler": row.get("labeler"),
                       "ratings": ratings, **gold_meta(hard)})


def _pick(step: Any, where: str) -> tuple[tuple[str, Any], bool] | None:
    """((text, rating), is_last) of the step on the labeler's path, None past its end."""
    if not isinstance(step, dict):
        raise RecordError("must be an object", field=where)
    completions = step.get("completions") or []
    if not isinstance(completions, list):
        raise RecordError("must be a list", field=f"{where}.completions")
    chosen, human = step.get("chosen_completion"), step.get("human_completion")
    if chosen is not None:
        if isinstance(chosen, bool) or not isinstance(chosen, int) or not 0 <= chosen < len(completions):
            raise RecordError(f"no completion {chosen!r} among {len(completions)}",
                              field=f"{where}.chosen_completion")
        return _completion(completions[chosen], f"{where}.completions[{chosen}]"), False
    if human is not None:
        text, rating = _completion(human, f"{where}.human_completion")
        if rating is None:
            rating = human.get("corrected_rating")
        return (text, 1 if rating is None else rating), False
    for i, completion in enumerate(completions):
        if isinstance(completion, dict) and completion.get("rating") == -1:
            return _completion(completion, f"{where}.completions[{i}]"), True
    return None


def _completion(completion: Any, where: str) -> tuple[str, Any]:
    if not isinstance(completion, dict) or not isinstance(completion.get("text"), str):
        raise RecordError("missing required field", field=f"{where}.text")
    rating = completion.get("rating")
    if rating not in (None, -1, 0, 1) or isinstance(rating, bool):
        raise RecordError(f"rating must be -1, 0, 1 or null, got {rating!r}", field=f"{where}.rating")
    return completion["text"], rating


def _hard(rating: int | None, neutral: str) -> int | None:
    if rating == 0:
        return {"positive": 1, "negative": 0, "unknown": None}[neutral]
    return HARD.get(rating)


def load_prm800k_hub(file: str = "phase2_test.jsonl", name: str = "tasksource/PRM800K",
                     neutral: str = "positive") -> list[Trace]:
    """One PRM800K release file from the Hugging Face hub mirror (needs internet).

    `file` is one of phase1_train.jsonl, phase1_test.jsonl, phase2_train.jsonl (456 MB),
    phase2_test.jsonl.
    """
    import datasets

    table = datasets.load_dataset(name, data_files={"train": file}, split="train")
    stem = Path(file).stem
    return [trace_from_prm800k(row, f"prm800k-{stem}-{i}", neutral) for i, row in enumerate(table)]
