"""The `#### x` answer line as a step, so that a step scorer judges the answer too.

A search that scores only the reasoning steps cannot tell apart two solutions that differ
only in their final answer (they tie), and a chain of correct steps can still end in a
wrong answer. With `SearchConfig.score_answer` the answer line is scored as one more
step; `with_answer_steps` adds that step to training traces, labelled by the outcome (for
Monte Carlo labels this is exact: the only continuation of a finished solution is itself).
"""

from __future__ import annotations

import copy

from prm.records import Step, Trace


def answer_step(answer: str) -> str:
    """The answer line as a step text, the way GSM8K (and tiny-gsm) write it."""
    return f"#### {answer}"


def with_answer_steps(traces: list[Trace]) -> list[Trace]:
    """Copies of `traces` ending with their answer line as a step whose hard and soft labels
    are the outcome label (label source: that of the trace's last step). Traces without a
    final answer or an outcome label are copied unchanged. `meta["gold_labels"]`, when
    present, gets the outcome as the answer step's gold label."""
    out = []
    for trace in traces:
        trace = copy.deepcopy(trace)
        if trace.final_answer is not None and trace.outcome_label is not None:
            source = trace.steps[-1].label_source
            trace.steps.append(Step(answer_step(str(trace.final_answer).strip()), hard_label=trace.outcome_label,
                                    soft_label=float(trace.outcome_label), label_source=source))
            if isinstance(trace.meta.get("gold_labels"), list):
                trace.meta["gold_labels"] = trace.meta["gold_labels"] + [trace.outcome_label]
        out.append(trace)
    return out
