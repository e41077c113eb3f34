"""An LLM judge as a label source and a step scorer (critic models, ProcessBench-style).

A judge is any `Completer`: an OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp), or
the Hugging Face / vLLM backends in process. It is shown the problem and the numbered steps
through a critic template (`annotate.judge_templates`; ProcessBench's by default) and writes
k critiques, each ending with the index of the earliest wrong step, or -1, in `\\boxed{}`.

- Parsing is strict (`parse_critique`): the critique's last `\\boxed{...}` must hold a whole
  number between -1 and the last step's index. Anything else (no box, "two", 2.5, an index
  past the last step, a box never closed because the critique was cut) is recorded as
  unparseable with the reason, never guessed.
- The vote (`vote`) is the majority over the parsed indices; ties go to the earliest error
  (-1 counts as after every step, so a tie between "step 2" and "no error" says step 2).
  With no parsed index the vote is None.
- Labels (`judge_labels`): steps before the voted index good (1), the voted step bad (0),
  later steps bad or unknown by `after_error`; vote -1: every step good; no vote: unknown.
  Soft labels are the share of the k critiques that put the first error after the step.
- As a step scorer (`JudgeScorer`, `judge:MODEL_OR_URL` in `prm score` / `prm eval`): a
  step's score is that same share (unparseable critiques count against every step); the
  traces also get the `Judgement`, whose vote ProcessBench's critic evaluation uses as the
  prediction (`evals.first_error`).

Every trace's critiques come from a seed derived from (seed, trace id), so a resumed or
sharded annotation run gives the same critiques with a backend that honours seeds.
"""

from __future__ import annotations

import copy
import re
import time
from collections import Counter
from typing import TYPE_CHECKING

from annotate.config import AnnotateConfig, JudgeConfig
from annotate.judge_templates import fill, load_template
from annotate.rollouts import derive_seed
from prm.records import Critique, Judgement, Trace
from prm.reward.scorer import Item, StepScorer

if TYPE_CHECKING:
    from annotate.grading import Grader
    from completers.base import Completer

BOXED = "\\boxed{"
INTEGER = re.compile(r"[+-]?\d+")


# -- parsing and voting ----------------------------------------------------------------------------

def last_boxed(text: str) -> str | None:
    """The content of the last `\\boxed{...}` (nested braces allowed), None if there is none or
    it is never closed."""
    start = text.rfind(BOXED)
    if start < 0:
        return None
    depth, begin = 1, start + len(BOXED)
    for position in range(begin, len(text)):
        if text[position] == "{":
            depth += 1
        elif text[position] == "}":
            depth -= 1
            if depth == 0:
                return text[begin:position]
    return None


def parse_critique(text: str, n_steps: int, tokens: int = 0) -> Critique:
    """A `Critique` with the index its last box names, or with `parse_error` when it names none."""
    answer = last_boxed(text)
    if answer is None:
        reason = "\\boxed{ never closed" if BOXED in text else "no \\boxed{} answer"
        return Critique(text, parse_error=reason, tokens=tokens)
    stripped = answer.strip()
    if not INTEGER.fullmatch(stripped):
        return Critique(text, answer=answer, parse_error=f"not a whole number: {stripped[:40]!r}", tokens=tokens)
    index = int(stripped)
    if not -1 <= index < n_steps:
        return Critique(text, answer=answer, parse_error=f"index {index} outside -1..{n_steps - 1}", tokens=tokens)
    return Critique(text, answer=answer, index=index, tokens=tokens)


def vote(indices: list[int | None]) -> int | None:
    """Majority over the parsed indices (None ignored); ties to the earliest error, -1 last."""
    counts = Counter(i for i in indices if i is not None)
    if not counts:
        return None
    most = max(counts.values())
    return min((i for i, c in counts.items() if c == most), key=lambda i: float("inf") if i == -1 else i)


def error_after_shares(judgement: Judgement, n_steps: int) -> list[float | None]:
    """For each step, the share of the critiques that put the first error after it (-1
    included); unparseable critiques count against every step. None for every step when the
    judge wrote no critique (its prompt was refused)."""
    k = len(judgement.critiques)
    if k == 0:
        return [None] * n_steps
    return [sum(c.index is not None and (c.index == -1 or c.index > step) for c in judgement.critiques) / k
            for step in range(n_steps)]


def judge_labels(judgement: Judgement, n_steps: int, after_error: str = "negative"
                 ) -> tuple[list[int | None], list[float | None]]:
    """Hard and soft step labels from a judgement (see the module docstring)."""
    first = judgement.vote
    if first is None:
        return [None] * n_steps, [None] * n_steps
    shares = error_after_shares(judgement, n_steps)
    hard: list[int | None] = []
    for step in range(n_steps):
        if first == -1 or step < first:
            hard.append(1)
        elif step == first or after_error == "negative":
            hard.append(0)
        else:
            hard.append(None)
    soft = [share if label is not None else None for share, label in zip(shares, hard)]
    return hard, soft


# -- the judge -------------------------------------------------------------------------------------

class Judge:
    """Critiques (problem, steps) items with a completer; `judge_many` returns `Judgement`s.

    name: what the judgements record as the judge (the model or URL the user gave).
    """

    def __init__(self, completer: "Completer", config: JudgeConfig | None = None, name: str | None = None):
        self.completer = completer
        self.config = config or JudgeConfig()
        self.name = name or completer.name
        self.template = load_template(self.config.template)

    def prompt(self, problem: str, steps: list[str]) -> str:
        """The critic prompt; rendered as the user turn of the completer's chat template if it has one."""
        text = fill(self.template, problem, steps)
        tokenizer = self.completer.tokenizer
        if self.completer.use_chat_template and tokenizer is not None:
            messages = [{"role": "user", "content": text.strip()}]
            return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return text

    def trace_seed(self, trace_id: str) -> int:
        return derive_seed(self.config.seed, trace_id, "judge")

    def judge_many(self, items: list[Item], ids: list[str]) -> tuple[list[Judgement], dict[int, str]]:
        """One judgement per item (its seed from the matching id), and the items whose prompt the
        completer refused (index -> reason; their judgement has no critique)."""
        from completers.base import SamplingParams

        config = self.config
        params = SamplingParams(n=config.samples, temperature=config.temperature, top_p=config.top_p,
                                max_new_tokens=config.max_new_tokens, seed=None)
        prompts = [self.prompt(item[0], list(item[1])) for item in items]
        seeds = [self.trace_seed(i) for i in ids]
        start = time.perf_counter()
        outputs = self._complete_or_refuse(prompts, seeds, params, list(range(len(prompts))))
        seconds = (time.perf_counter() - start) / max(1, len(items))
        judgements, refused = [], {}
        for index, (item, seed) in enumerate(zip(items, seeds)):
            output = outputs[index]
            if isinstance(output, ValueError):
                refused[index] = str(output)
                output = []
            elif len(output) != config.samples:
                raise RuntimeError(f"judge {self.name!r} returned {len(output)} critiques for n={config.samples}")
            critiques = [parse_critique(c.text, len(item[1]), c.tokens) for c in output]
            judgements.append(Judgement(judge=self.name, critiques=critiques, vote=vote([c.index for c in critiques]),
                                        template=config.template, temperature=config.temperature,
                                        top_p=config.top_p, seed=seed, seconds=round(seconds, 4)))
        return judgements, refused

    def _complete_or_refuse(self, prompts, seeds, params, indices) -> dict:
        """index -> completions, or the `ValueError` with which the completer refused that prompt
        (a refused call is split in halves until the refused prompts are alone)."""
        if not indices:
            return {}
        try:
            outputs = self.completer.complete_prompts([prompts[i] for i in indices], params,
                                                      seeds=[seeds[i] for i in indices],
                                                      ns=[params.n] * len(indices))
        except ValueError as err:
            if len(indices) == 1:
                return {indices[0]: err}
            half = len(indices) // 2
            return {**self._complete_or_refuse(prompts, seeds, params, indices[:half]),
                    **self._complete_or_refuse(prompts, seeds, params, indices[half:])}
        return dict(zip(indices, outputs))


# -- a label source for `prm annotate --method judge` ------------------------------------------------

def label_trace(trace: Trace, completer: "Completer", config: AnnotateConfig, grader: "Grader | None" = None,
                judge_name: str | None = None) -> Trace:
    """A copy of `trace` with judge labels, its `judgement` and `meta["annotation"]` (the
    grader is not used: a judge needs no reference answer)."""
    start = time.perf_counter()
    trace = copy.deepcopy(trace)
    judge = Judge(completer, config.run_judge(), judge_name)
    (judgement,), refused = judge.judge_many([(trace.problem, trace.step_texts)], [trace.id])
    hard, soft = judge_labels(judgement, len(trace.steps), config.after_error)
    for step, h, s in zip(trace.steps, hard, soft):
        step.hard_label, step.soft_label = h, s
        step.label_source = config.label_source if h is not None else None
    trace.judgement = judgement
    tokens = sum(c.tokens for c in judgement.critiques)
    trace.meta["annotation"] = {
        "method": config.label_source, "settings": config.settings(), "rollouts": len(judgement.critiques),
        "tokens": tokens, "seconds": round(time.perf_counter() - start, 4), "budget_limited": False,
        "skipped": [{"step": -1, "reason": reason} for reason in refused.values()],
        "first_error": trace.first_error(), "vote": judgement.vote,
        "unparseable": sum(c.index is None for c in judgement.critiques)}
    return trace


# -- a step scorer ----------------------------------------------------------------------------------

class JudgeScorer(StepScorer):
    """A judge as a `StepScorer`: step score = share of the k critiques that put the first
    error after the step. `score_traces` also stores each trace's `Judgement` (the vote is
    ProcessBench's critic prediction)."""

    aggregation = "min"

    def __init__(self, completer: "Completer", config: JudgeConfig | None = None, name: str | None = None):
        self.judge = Judge(completer, config, name)

    def judgements(self, items: list[Item], ids: list[str] | None = None) -> list[Judgement]:
        ids = ids if ids is not None else [f"{i}:{item[0]}" for i, item in enumerate(items)]
        return self.judge.judge_many(items, ids)[0]

    def score_many(self, items: list[Item], batch_size: int | None = None,
                   progress: bool = False) -> list[list[float | None]]:
        """One share per step (None for every step of an item whose prompt the judge refused)."""
        return [error_after_shares(j, len(item[1])) for j, item in zip(self.judgements(items), items)]

    def score_traces(self, traces: list[Trace], batch_size: int | None = None,
                     progress: bool = False) -> list[Trace]:
        """Step scores and the `Judgement` of each trace (seeded by its id)."""
        judgements = self.judgements([(t.problem, t.step_texts) for t in traces], [t.id for t in traces])
        for trace, judgement in zip(traces, judgements):
            trace.judgement = judgement
            for step, share in zip(trace.steps, error_after_shares(judgement, len(trace.steps))):
                step.score = share
        return traces

    def close(self) -> None:
        self.judge.completer.close()

    def __repr__(self) -> str:
        return f"JudgeScorer({self.judge.name}, k={self.judge.config.samples})"
