"""Hard2Verify (Salesforce AI Research): frontier-model proofs of recent olympiad problems,
every step labelled by mathematicians.

The hub copy (`Salesforce/Hard2Verify`, CC-BY-NC-4.0, split "test") is **encrypted**: the
fields `question`, `model_response_by_step`, `human_labels` and
`human_labels_first_error_idx` are base64 strings XOR-ed with a key stream derived from the
record's `canary`. Decrypting is the user's step, with the authors' utility
(`decrypt_sample` in utils.py of github.com/SalesforceAIResearch/Hard2Verify); this module
reads the decrypted records (JSONL/JSON/Parquet/`datasets` folder) and refuses encrypted
ones with a one-line error saying so.

The field names come from third-party code that calls the authors' decryption (the
authors' repository itself could not be read here): `unique_id`, `question`,
`model_response_by_step` (list of step texts), `human_labels` (one per step: 1 correct,
0 incorrect; strict grading, so a step built on an earlier mistake is incorrect),
`human_labels_first_error_idx` (0-based first incorrect step, -1 if none).

Reading: one trace per record, steps = model_response_by_step with hard labels
human_labels (label_source "human"), gold meta, outcome_label 1 when every step is correct
(the benchmark's response-level label). A first-error index that disagrees with the
labels is an error naming the field.
"""

from __future__ import annotations

import os
from typing import Any

from prm.errors import RecordError
from prm.formats.base import gold_meta, read_rows, require, string_field, string_list
from prm.io import ReadReport
from prm.records import Step, Trace

ENCRYPTED = ("question", "model_response_by_step", "human_labels", "human_labels_first_error_idx")


def read_hard2verify(path: str | os.PathLike, *, skip_invalid: bool = False,
                     report: ReadReport | None = None, limit: int | None = None) -> list[Trace]:
    """Read decrypted Hard2Verify records."""
    return read_rows(path, lambda row, index: trace_from_hard2verify(row, index),
                     skip_invalid=skip_invalid, report=report, limit=limit)


def trace_from_hard2verify(row: Any, index: int = 0) -> Trace:
    """One decrypted Hard2Verify record as a trace (see the module docstring)."""
    require(row, "question", "model_response_by_step", "human_labels")
    if "canary" in row and isinstance(row["model_response_by_step"], str):
        raise RecordError("still encrypted: decrypt the records first with the authors' decrypt_sample "
                          "(github.com/SalesforceAIResearch/Hard2Verify, utils.py)", field="model_response_by_step")
    steps = string_list(row, "model_response_by_step")
    labels = row["human_labels"]
    if not isinstance(labels, list) or len(labels) != len(steps) or \
            not all(lab in (0, 1) and not isinstance(lab, float) for lab in labels):
        raise RecordError(f"must be a list of {len(steps)} labels, each 0 or 1", field="human_labels")
    labels = [int(lab) for lab in labels]
    first = labels.index(0) if 0 in labels else -1
    given = row.get("human_labels_first_error_idx")
    if given is not None and given != first:
        raise RecordError(f"is {given!r} but human_labels put the first incorrect step at {first}",
                          field="human_labels_first_error_idx")
    meta = {"source": "hard2verify", **gold_meta(labels)}
    return Trace(id=str(row.get("unique_id") or f"hard2verify-{index}"), problem=string_field(row, "question"),
                 steps=[Step(text, hard_label=lab, label_source="human") for text, lab in zip(steps, labels)],
                 outcome_label=int(first == -1), meta=meta)
