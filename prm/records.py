"""Trace records: the common language of the toolkit.

A `Trace` is one reasoning trace (a problem and its solution steps) with everything the
toolkit learns about it: per-step hard and soft labels and where they came from, Monte
Carlo rollout counts, checker verdicts with evidence, and reward-model scores.

Every package reads and writes these records: importers produce them, completers and
checkers add evidence to them, the trainer fits on them, evals measure them.

Unknown is distinct from 0: a label that nobody has decided is `None`, never 0.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, field, fields, is_dataclass
from functools import cache
from typing import Any

from prm.errors import RecordError

# Where a step label came from. Checker labels are "checker:<name>" (e.g. "checker:sympy").
LABEL_SOURCES = ("monte-carlo", "binary-search", "human", "import", "gold", "judge")

VERDICT_STATUSES = ("verified", "refuted", "unknown", "unavailable")


@dataclass
class Verdict:
    """What one checker concluded about one step, with the evidence it used.

    `unknown` (nothing checkable, or undecided) and `unavailable` (backend not installed)
    never count as a pass.
    """

    checker: str
    status: str
    claim: str | None = None
    evidence: str | None = None  # counter-example, computed value, or solver message
    backend: str | None = None  # backend name and version, e.g. "z3 4.15.4"
    seconds: float | None = None

    def __post_init__(self):
        if self.status not in VERDICT_STATUSES:
            raise RecordError(f"status must be one of {VERDICT_STATUSES}, got {self.status!r}",
                              field="verdicts.status")
        _require_text(self.checker, "verdicts.checker", optional=False)
        for name in ("claim", "evidence", "backend"):
            _require_text(getattr(self, name), f"verdicts.{name}")
        _require_number(self.seconds, "verdicts.seconds")

    @property
    def passed(self) -> bool:
        return self.status == "verified"


@dataclass
class Rollouts:
    """Monte Carlo evidence for one step: completions sampled from the prefix ending here."""

    correct: int
    total: int
    answers: list[str | None] = field(default_factory=list)  # extracted final answers
    tokens: int = 0
    seconds: float = 0.0
    texts: list[str] | None = None  # full completions, kept only when asked for

    def __post_init__(self):
        for name in ("correct", "total", "tokens"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 0:
                raise RecordError(f"must be a whole number >= 0, got {_short(value)}", field=f"rollouts.{name}")
        if self.correct > self.total:
            raise RecordError(f"{self.correct} correct out of {self.total}", field="rollouts.correct")
        _require_number(self.seconds, "rollouts.seconds", optional=False)
        if not isinstance(self.answers, list):
            raise RecordError(f"must be a list, got {type(self.answers).__name__}", field="rollouts.answers")
        for answer in self.answers:
            _require_text(answer, "rollouts.answers")
        if self.texts is not None:
            if not isinstance(self.texts, list):
                raise RecordError(f"must be a list or null, got {type(self.texts).__name__}", field="rollouts.texts")
            for text in self.texts:
                _require_text(text, "rollouts.texts", optional=False)

    @property
    def fraction(self) -> float | None:
        return self.correct / self.total if self.total else None


@dataclass
class Review:
    """One person's label for one step, from a review tool (Label Studio, Argilla).

    Reviews sit beside the automatic evidence instead of overwriting it, so a reviewed
    record keeps both: what Monte Carlo, the checkers or a model said, and what people
    said. `label_source` is "human" for people; `time` is the tool's ISO 8601 timestamp.
    """

    reviewer: str
    hard_label: int | None  # 1 good, 0 bad, None: the reviewer could not tell
    time: str | None = None
    tool: str | None = None  # "label-studio", "argilla"
    comment: str | None = None
    label_source: str = "human"

    def __post_init__(self):
        _require_text(self.reviewer, "reviews.reviewer", optional=False)
        if isinstance(self.hard_label, bool):
            self.hard_label = int(self.hard_label)
        if self.hard_label not in (0, 1, None):
            raise RecordError(f"hard label must be 0, 1 or null, got {self.hard_label!r}",
                              field="reviews.hard_label")
        for name in ("time", "tool", "comment"):
            _require_text(getattr(self, name), f"reviews.{name}")
        _require_text(self.label_source, "reviews.label_source", optional=False)


@dataclass
class Critique:
    """One critique an LLM judge wrote about a whole solution (`annotate.judge`).

    answer: the text of the critique's last `\\boxed{...}` (None if it has none).
    index: the earliest wrong step it names (0-based), -1 for "no wrong step", None when the
        answer could not be parsed strictly; `parse_error` then says why. Never guessed.
    """

    text: str
    answer: str | None = None
    index: int | None = None
    parse_error: str | None = None
    tokens: int = 0

    def __post_init__(self):
        _require_text(self.text, "judgement.critiques.text", optional=False)
        for name in ("answer", "parse_error"):
            _require_text(getattr(self, name), f"judgement.critiques.{name}")
        if self.index is not None and (isinstance(self.index, bool) or not isinstance(self.index, numbers.Integral)
                                       or self.index < -1):
            raise RecordError(f"must be a step index >= -1 or null, got {_short(self.index)}",
                              field="judgement.critiques.index")
        if isinstance(self.tokens, bool) or not isinstance(self.tokens, numbers.Integral) or self.tokens < 0:
            raise RecordError(f"must be a whole number >= 0, got {_short(self.tokens)}",
                              field="judgement.critiques.tokens")


@dataclass
class Judgement:
    """What an LLM judge said about a trace: k critiques and their vote.

    vote: the majority over the parsed indices (ties go to the earliest error; -1, "no
        error", counts as after every step), None when no critique could be parsed.
    judge: the judge model or URL; template: the critic prompt template used.
    temperature, top_p, seed: how the critiques were sampled (the trace's own seed).
    """

    judge: str
    critiques: list[Critique] = field(default_factory=list)
    vote: int | None = None
    template: str | None = None
    temperature: float | None = None
    top_p: float | None = None
    seed: int | None = None
    seconds: float = 0.0

    def __post_init__(self):
        _require_text(self.judge, "judgement.judge", optional=False)
        _require_text(self.template, "judgement.template")
        if not isinstance(self.critiques, list):
            raise RecordError(f"must be a list, got {type(self.critiques).__name__}", field="judgement.critiques")
        self.critiques = [c if isinstance(c, Critique) else Critique(**c) for c in self.critiques]
        for name in ("vote", "seed"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, numbers.Integral)):
                raise RecordError(f"must be a whole number or null, got {_short(value)}", field=f"judgement.{name}")
        for name in ("temperature", "top_p"):
            _require_number(getattr(self, name), f"judgement.{name}")
        _require_number(self.seconds, "judgement.seconds", optional=False)

    @property
    def indices(self) -> list[int | None]:
        return [c.index for c in self.critiques]


@dataclass
class Step:
    """One solution step and what is known about it.

    hard_label: 1 good, 0 bad, None unknown. soft_label: probability in [0, 1] or None.
    score: a reward model's probability that the step is good (None until scored).
    reviews: people's labels for the step (`prm import`), kept beside the automatic label.
    """

    text: str
    hard_label: int | None = None
    soft_label: float | None = None
    label_source: str | None = None
    verdicts: list[Verdict] = field(default_factory=list)
    rollouts: Rollouts | None = None
    score: float | None = None
    reviews: list[Review] = field(default_factory=list)

    def __post_init__(self):
        if not isinstance(self.text, str):
            raise RecordError(f"step text must be a string, got {type(self.text).__name__}",
                              field="text")
        if self.hard_label is not None:
            if isinstance(self.hard_label, bool):
                self.hard_label = int(self.hard_label)
            if self.hard_label not in (0, 1):
                raise RecordError(f"hard label must be 0, 1 or null, got {self.hard_label!r}",
                                  field="hard_label")
        if self.soft_label is not None:
            value = self.soft_label
            if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value) \
                    or not 0.0 <= value <= 1.0:
                raise RecordError(f"soft label must be a number in [0, 1] or null, got {value!r}",
                                  field="soft_label")
            self.soft_label = float(value)
        _require_text(self.label_source, "label_source")
        _require_number(self.score, "score")

    def verdict(self, checker: str) -> Verdict | None:
        """The verdict of the named checker, if it ran on this step."""
        return next((v for v in self.verdicts if v.checker == checker), None)

    @property
    def human_label(self) -> int | None:
        """The latest review's label (by time; the last imported when times tie), or None."""
        if not self.reviews:
            return None
        latest = max(enumerate(self.reviews), key=lambda pair: (pair[1].time or "", pair[0]))
        return latest[1].hard_label


def first_error(labels: list[int | None]) -> int | None:
    """0-based index of the first 0 in per-step hard labels, -1 if every label is 1, None if
    that cannot be told (an unknown label comes before any 0). The one definition of a
    trace's first error, for labels, gold labels and predictions alike."""
    for index, label in enumerate(labels):
        if label is None:
            return None
        if label == 0:
            return index
    return -1


@dataclass
class Trace:
    """A reasoning trace: a problem, its steps, answers and labels.

    outcome_label: 1 if the final answer is correct, 0 if not, None if unknown.
    meta: free-form information about the record (source data set, generator, error
    class, gold first error, ...). Values must be JSON-serialisable.
    """

    id: str
    problem: str
    steps: list[Step]
    final_answer: str | None = None
    reference_answer: str | None = None
    outcome_label: int | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    judgement: Judgement | None = None  # an LLM judge's critiques and vote (annotate.judge)

    def __post_init__(self):
        if not isinstance(self.id, str) or not self.id:
            raise RecordError("id must be a non-empty string", field="id")
        if not isinstance(self.problem, str):
            raise RecordError("problem must be a string", field="problem")
        if not isinstance(self.steps, list) or not self.steps:
            raise RecordError("steps must be a non-empty list", field="steps")
        self.steps = [s if isinstance(s, Step) else Step(s) for s in self.steps]
        for name in ("final_answer", "reference_answer"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise RecordError(f"must be a string or null, got {type(value).__name__} {_short(value)} "
                                  "(write it in quotes)", field=name)
        if not isinstance(self.meta, dict):
            raise RecordError(f"meta must be a JSON object, got {type(self.meta).__name__}", field="meta")
        if self.outcome_label is not None:
            if isinstance(self.outcome_label, bool):
                self.outcome_label = int(self.outcome_label)
            if self.outcome_label not in (0, 1):
                raise RecordError(f"outcome label must be 0, 1 or null, got {self.outcome_label!r}",
                                  field="outcome_label")
        if self.judgement is not None and not isinstance(self.judgement, Judgement):
            self.judgement = _judgement_from(self.judgement)

    # -- convenient views ------------------------------------------------------------

    @property
    def step_texts(self) -> list[str]:
        return [s.text for s in self.steps]

    @property
    def hard_labels(self) -> list[int | None]:
        return [s.hard_label for s in self.steps]

    @property
    def soft_labels(self) -> list[float | None]:
        return [s.soft_label for s in self.steps]

    @property
    def scores(self) -> list[float | None]:
        return [s.score for s in self.steps]

    def first_error(self) -> int | None:
        """0-based index of the first step labelled bad, -1 if every step is labelled good,
        None if that cannot be told (an unknown label comes before any bad one)."""
        return first_error(self.hard_labels)

    def set_labels(self, hard: list[int | None] | None = None, soft: list[float | None] | None = None,
                   source: str | None = None) -> "Trace":
        """Set per-step labels from lists that must match the number of steps."""
        for name, values in (("hard_label", hard), ("soft_label", soft)):
            if values is None:
                continue
            if len(values) != len(self.steps):
                raise RecordError(f"{len(values)} labels for {len(self.steps)} steps", field=name)
            for step, value in zip(self.steps, values):
                setattr(step, name, value)
                step.__post_init__()
                if source is not None:
                    step.label_source = source
        return self

    def _repr_html_(self) -> str:
        """The step view in a notebook (`prm.view_html`; `show(traces)` draws several)."""
        from prm.view_html import trace_html

        return trace_html(self)

    # -- plain dicts (JSONL) ---------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The trace as plain JSON-like values (new dicts and lists; strings and numbers shared)."""
        return _plain(self)

    @classmethod
    def from_dict(cls, data: Any) -> "Trace":
        """Build a trace from a plain dict, raising `RecordError` naming the bad field."""
        if not isinstance(data, dict):
            raise RecordError(f"a record must be a JSON object, got {type(data).__name__}")
        for name in ("id", "problem", "steps"):
            if name not in data:
                raise RecordError("missing required field", field=name)
        unknown = set(data) - {f.name for f in fields(cls)}
        if unknown:
            raise RecordError(f"unexpected field(s) {sorted(unknown)}", field=sorted(unknown)[0])
        steps_in = data["steps"]
        if not isinstance(steps_in, list) or not steps_in:
            raise RecordError("steps must be a non-empty list", field="steps")
        steps = [_step_from(s, i) for i, s in enumerate(steps_in)]
        return cls(id=data["id"], problem=data["problem"], steps=steps,
                   final_answer=data.get("final_answer"),
                   reference_answer=data.get("reference_answer"),
                   outcome_label=data.get("outcome_label"), meta=_meta_from(data.get("meta")),
                   judgement=_judgement_from(data.get("judgement")))


def _judgement_from(value: Any) -> Judgement | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise RecordError(f"judgement must be a JSON object or null, got {type(value).__name__}", field="judgement")
    try:
        return Judgement(**value)
    except TypeError as err:  # unknown or missing keys
        raise RecordError(str(err), field="judgement") from None


def _meta_from(value: Any) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise RecordError(f"meta must be a JSON object, got {type(value).__name__}", field="meta")
    return dict(value)


def _require_text(value: Any, field_name: str, optional: bool = True) -> None:
    """Refuse a value that is not a string (or None, when optional)."""
    if value is None and optional:
        return
    if not isinstance(value, str):
        raise RecordError(f"must be a string{' or null' if optional else ''}, got {type(value).__name__} "
                          f"{_short(value)}", field=field_name)


def _require_number(value: Any, field_name: str, optional: bool = True) -> None:
    """Refuse a value that is not a finite number (or None, when optional): NaN is not JSON."""
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise RecordError(f"must be a finite number{' or null' if optional else ''}, got {_short(value)}",
                          field=field_name)


def _short(value: Any, most: int = 60) -> str:
    """A value's repr, cut to `most` characters (error messages stay one readable line)."""
    text = repr(value)
    return text if len(text) <= most else text[:most] + "..."


def _step_from(data: Any, index: int) -> Step:
    if isinstance(data, str):
        return Step(data)
    if not isinstance(data, dict):
        raise RecordError(f"step {index} must be a string or an object", field=f"steps[{index}]")
    try:
        if "text" not in data:
            raise RecordError("missing required field", field="text")
        known = {f.name for f in fields(Step)}
        unknown = set(data) - known
        if unknown:
            raise RecordError(f"unexpected field(s) {sorted(unknown)}", field=sorted(unknown)[0])
        verdicts = [Verdict(**v) for v in data.get("verdicts") or []]
        rollouts = Rollouts(**data["rollouts"]) if data.get("rollouts") else None
        reviews = [Review(**r) for r in data.get("reviews") or []]
        return Step(text=data["text"], hard_label=data.get("hard_label"),
                    soft_label=data.get("soft_label"), label_source=data.get("label_source"),
                    verdicts=verdicts, rollouts=rollouts, score=data.get("score"), reviews=reviews)
    except RecordError as err:
        raise RecordError(err.reason, field=f"steps[{index}].{err.field or ''}".rstrip(".")) from None
    except TypeError as err:  # wrong keys inside verdicts/rollouts/reviews
        raise RecordError(str(err), field=f"steps[{index}]") from None


def _plain(value: Any) -> Any:
    """`dataclasses.asdict` without its deep copy of every leaf: writing a checked trace spent
    most of its time there (`prm check` writes thousands of traces a second)."""
    if is_dataclass(value) and not isinstance(value, type):
        return {name: _plain(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    return value


@cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))
