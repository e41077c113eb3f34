"""PRMBench: correct solutions with errors of a named class inserted into some steps.

A record has `original_question`/`original_process` (a correct solution from PRM800K),
`modified_question`/`modified_process` (the same solution with inserted errors),
`error_steps` (which steps of `modified_process` are wrong), `modified_steps`,
`classification` (error class: circular, confidence, counterfactual, deception,
domain_inconsistency, missing_condition, redundency, step_contradiction), `reason` and
`idx`.

**error_steps are 1-based.** Checked on all 8 files of the train-derived release (3,203
records): no 0 ever appears, the smallest number is 1, and 636 records name the step
numbered len(modified_process), which only exists counting from 1; the `reason` texts
agree ("Steps 2, 3, and 4 introduce circular logic" points at the 2nd-4th steps), and
PRMBench's own evaluator subtracts 1 before indexing.

Reading (one trace per record, problem = modified_question, steps = modified_process):
PRMBench scores every step, so steps named in error_steps get hard label 0 and all other
steps 1 (label_source "import"; also meta gold_labels / gold_first_error, 0-based).
outcome_label is None: an inserted error (a redundant step, say) need not change the
final answer, and PRMBench does not say whether it did. meta: source, error_class,
reason, idx, error_steps and modified_steps as released (1-based).

57 released records name error steps beyond the end of modified_process (the generator
numbered them against the longer original). By default (`out_of_range="ignore"`, as
PRMBench's evaluator does) those numbers are left out of the labels and kept in
meta["error_steps_out_of_range"]; when none is left in range (12 records) the step labels
are unknown (None) rather than all-correct. `out_of_range="error"` raises a RecordError
naming the field instead.

`include_original=True` also yields the original solution as a correct trace (all steps
1, outcome 1, meta error_class "correct", id `prmbench-correct-<idx>`; the same for every
error class, so reading several files at once gives the same id once per file: an error
unless `keep_duplicates=True` / `--keep-duplicates`, as for any repeated id).

There is no PRMBench writer: the layout needs an original and a modified solution.
"""

from __future__ import annotations

import os
from typing import Any

from prm.errors import RecordError
from prm.formats.base import gold_meta, read_rows, require, string_field, string_list
from prm.io import ReadReport
from prm.records import Step, Trace

OUT_OF_RANGE = ("ignore", "error")


def read_prmbench(path: str | os.PathLike, *, skip_invalid: bool = False,
                  report: ReadReport | None = None, limit: int | None = None,
                  include_original: bool = False, out_of_range: str = "ignore") -> list[Trace]:
    """Read a PRMBench file (JSONL, JSON, Parquet or `datasets` folder)."""
    if out_of_range not in OUT_OF_RANGE:
        raise ValueError(f"out_of_range must be one of {OUT_OF_RANGE}, got {out_of_range!r}")
    return read_rows(path, lambda row, _: traces_from_prmbench(row, include_original, out_of_range),
                     skip_invalid=skip_invalid, report=report, limit=limit)


def traces_from_prmbench(row: Any, include_original: bool = False,
                         out_of_range: str = "ignore") -> list[Trace]:
    """The modified solution of one record (and, if asked, the original) as traces."""
    require(row, "modified_process", "error_steps", "classification", "idx")
    steps = string_list(row, "modified_process")
    problem = row.get("modified_question", row.get("question"))
    if not isinstance(problem, str):
        raise RecordError("missing required field", field="modified_question")
    numbers = row["error_steps"]
    if not isinstance(numbers, list) or not all(isinstance(n, int) and not isinstance(n, bool)
                                                for n in numbers):
        raise RecordError("must be a list of 1-based step numbers", field="error_steps")
    if any(n < 1 for n in numbers):
        raise RecordError(f"step numbers are 1-based, got {min(numbers)}", field="error_steps")
    outside = sorted({n for n in numbers if n > len(steps)})
    if outside and out_of_range == "error":
        raise RecordError(f"error step {outside[0]} is beyond the {len(steps)} steps "
                          "(1-based)", field="error_steps")
    inside = {n - 1 for n in numbers if n <= len(steps)}
    if numbers and not inside:
        labels: list[int | None] = [None] * len(steps)
    else:
        labels = [0 if i in inside else 1 for i in range(len(steps))]
    error_class = string_field(row, "classification")
    meta: dict[str, Any] = {"source": "prmbench", "error_class": error_class,
                            "idx": row["idx"], "reason": row.get("reason"),
                            "error_steps": numbers, "modified_steps": row.get("modified_steps"),
                            **gold_meta(labels)}
    if outside:
        meta["error_steps_out_of_range"] = outside
    modified = Trace(id=f"prmbench-{error_class}-{row['idx']}", problem=problem,
                     steps=[Step(t, hard_label=lab, label_source=None if lab is None else "import")
                            for t, lab in zip(steps, labels)],
                     meta=meta)
    if not include_original:
        return [modified]
    original_steps = string_list(row, "original_process")
    original = Trace(id=f"prmbench-correct-{row['idx']}",
                     problem=row.get("original_question", problem),
                     steps=[Step(t, hard_label=1, label_source="import") for t in original_steps],
                     outcome_label=1,
                     meta={"source": "prmbench", "error_class": "correct", "idx": row["idx"],
                           **gold_meta([1] * len(original_steps))})
    return [modified, original]


def load_prmbench_hub(split: str = "train", name: str = "hitsmy/PRMBench_Preview",
                      include_original: bool = False) -> list[Trace]:
    """PRMBench from the Hugging Face hub (needs internet)."""
    import datasets

    table = datasets.load_dataset(name, split=split)
    return [trace for row in table for trace in traces_from_prmbench(row, include_original)]
