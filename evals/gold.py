"""Gold labels: what every metric in `evals` is measured against.

A metric compares something (reward-model scores, Monte Carlo labels, checker verdicts)
with the right answer for each step. Where that right answer lives is named by `gold`:

- `"meta"` (the default): `trace.meta["gold_labels"]` (one 1/0/None per step) and
  `trace.meta["gold_first_error"]`, kept there by generators and importers that know the
  truth so that annotation may overwrite the step labels;
- a label source such as `"human"`, `"gold"`, `"import"` or `"checker:sympy"`: the step
  hard labels whose `label_source` is that source (other steps count as unknown);
- `"labels"`: every step hard label, whatever its source.

Gold kept in another file (the same traces by id) is copied into `meta` by `attach_gold`.
Unknown stays `None` and is left out of every metric, never counted as 0.
"""

from __future__ import annotations

from collections.abc import Iterable

from prm.errors import RecordError
from prm.records import Trace, first_error

DEFAULT_GOLD = "meta"


def gold_step_labels(trace: Trace, gold: str = DEFAULT_GOLD) -> list[int | None]:
    """The gold label of each step of `trace` (1 good, 0 bad, None unknown)."""
    if gold == "meta":
        labels = trace.meta.get("gold_labels")
        if labels is None:
            return [None] * len(trace.steps)
        if not isinstance(labels, list) or len(labels) != len(trace.steps):
            raise RecordError(f"trace {trace.id!r}: gold_labels must be a list of one label per step "
                              f"({len(trace.steps)})", field="meta.gold_labels")
        for value in labels:
            if value not in (0, 1, None) or isinstance(value, float):
                raise RecordError(f"trace {trace.id!r}: gold label must be 0, 1 or null, got {value!r}",
                                  field="meta.gold_labels")
        return [None if value is None else int(value) for value in labels]
    if gold == "labels":
        return list(trace.hard_labels)
    return [s.hard_label if s.label_source == gold else None for s in trace.steps]


def gold_first_error(trace: Trace, gold: str = DEFAULT_GOLD) -> int | None:
    """0-based index of the first gold-bad step, -1 if the trace has none, None if unknown.

    With `gold="meta"`, `meta["gold_first_error"]` wins when present (ProcessBench keeps
    only the first error); otherwise it is derived from the step labels: the first 0, or
    -1 when every step is known to be good.
    """
    if gold == "meta" and trace.meta.get("gold_first_error") is not None:
        value = trace.meta["gold_first_error"]
        if isinstance(value, bool) or not isinstance(value, int) or not -1 <= value < len(trace.steps):
            raise RecordError(f"trace {trace.id!r}: gold_first_error must be -1 or a step index "
                              f"below {len(trace.steps)}, got {value!r}", field="meta.gold_first_error")
        return value
    return first_error(gold_step_labels(trace, gold))


def has_gold(traces: Iterable[Trace], gold: str = DEFAULT_GOLD) -> bool:
    """True if at least one step of one trace has a known gold label."""
    return any(label is not None for t in traces for label in gold_step_labels(t, gold))


def attach_gold(traces: list[Trace], gold_traces: list[Trace], gold: str = DEFAULT_GOLD,
                path: str | None = None) -> int:
    """Copy gold labels from `gold_traces` (matched by id) into each trace's meta.

    In the gold file the labels are read with `gold` (default: its meta gold labels, or
    its step hard labels when it has none). Also fills a missing `outcome_label`.
    Returns how many traces got gold. A trace whose step count differs from its gold
    twin is an error: the two files do not describe the same steps.
    """
    by_id = {t.id: t for t in gold_traces}
    matched = 0
    for trace in traces:
        twin = by_id.get(trace.id)
        if twin is None:
            continue
        if len(twin.steps) != len(trace.steps):
            raise RecordError(f"trace {trace.id!r} has {len(trace.steps)} steps but its gold record "
                              f"has {len(twin.steps)}", path=path, field="steps")
        if gold == "meta" and "gold_labels" not in twin.meta:
            labels = list(twin.hard_labels)  # a gold file may keep its truth as plain step labels
        else:
            labels = gold_step_labels(twin, gold)
        first = twin.meta.get("gold_first_error") if gold == "meta" else None
        trace.meta["gold_labels"] = labels
        trace.meta["gold_first_error"] = first_error(labels) if first is None else first
        if trace.outcome_label is None:
            trace.outcome_label = twin.outcome_label
        matched += 1
    return matched

