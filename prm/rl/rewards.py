"""A process reward as a TRL `GRPOTrainer` reward function, built from any step scorer.

    from trl import GRPOConfig, GRPOTrainer
    from prm.reward.loading import load_scorer
    from prm.rl.rewards import ProcessReward

    reward = ProcessReward(load_scorer("my-prm"), aggregation="min", outcome_weight=1.0)
    trainer = GRPOTrainer(model=policy, reward_funcs=reward, args=GRPOConfig(...), train_dataset=data)

TRL calls `reward(prompts=..., completions=..., **columns)` with the dataset's other columns
as keyword lists, and expects one float per completion. For each completion:

- process: its steps (`prm.rl.text.split_steps`) are scored with the scorer's `score_many`
  (one call for every new (problem, completion) of the batch; duplicates and texts seen
  before come from a cache) and aggregated with `aggregation` (min, prod, last, mean). A
  step the scorer could not read (past its max_length) counts as the worst possible step
  (`UNSCORED_STEP_SCORE`, 0), never as a step that is not there: hiding a wrong step behind
  filler can only lower a reward. The reward server (`prm.rl.server`) uses this same rule.
  A completion with no step gets `empty_score`.
- outcome (when `outcome_weight` is not 0): 1 if the final answer equals the reference answer
  in the dataset column `answer_column` (math-verify, `annotate.grading.Grader`), else 0.
- format: `format_penalty` is subtracted when the completion states no final answer.

reward = process_weight * process + outcome_weight * outcome - format_penalty * (no answer).

The problem given to the scorer is the dataset column `problem_column` when present, else
the problem read out of the prompt (`prm.rl.text.problem_from_prompt`, using the scorer's
own prompt template when it has one). The scorer runs wherever it was loaded (CPU or a GPU
other than the policy's): only text crosses over. When TRL passes `log_metric`, the means of
the process and outcome parts and the mean number of steps are logged as
`<name>/process`, `<name>/outcome` and `<name>/steps`.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass

from annotate.grading import extract_answer
from prm.aggregate import AGGREGATIONS, aggregate
from prm.reward.scorer import StepScorer
from prm.rl.text import completion_text, problem_from_prompt, split_steps


# the score a step the scorer could not read (past its max_length) counts as: a probability's worst
UNSCORED_STEP_SCORE = 0.0


def unscored_as_worst(step_scores: list[float | None]) -> list[float]:
    """Step scores with each unscored step (None) counted as the worst step: the one rule for
    steps past the scorer's max_length, in TRL's path (`ProcessReward`) and the server's."""
    return [UNSCORED_STEP_SCORE if s is None else s for s in step_scores]


@dataclass
class RewardParts:
    """One completion's reward and the parts it was made of."""

    reward: float
    process: float | None
    outcome: float | None
    has_answer: bool
    steps: list[str]
    step_scores: list[float | None]

    @property
    def unscored_steps(self) -> int:
        """How many steps the scorer could not read (each counted as the worst step)."""
        return sum(s is None for s in self.step_scores) if self.process is not None else 0


class ProcessReward:
    """A TRL reward function (see the module docstring for what it computes).

    scorer: any `StepScorer` (None for an outcome-only reward, see `outcome_reward`). aggregation: step scores -> solution score (default: the
    scorer's own). process_weight / outcome_weight / format_penalty: how the parts combine.
    answer_column / problem_column: dataset columns with the reference answer and the bare
    problem. prompt_template: how prompts were written (`{problem}` inside; default: the
    scorer's prompt template if it has one). step_separator: what separates steps.
    empty_score: process score of a completion with no scored step. cache_size: most
    (problem, completion) pairs whose step scores are kept. name: TRL's column name for it.
    """

    def __init__(self, scorer: StepScorer | None, *, aggregation: str | None = None, process_weight: float = 1.0,
                 outcome_weight: float = 0.0, format_penalty: float = 0.0, answer_column: str = "answer",
                 problem_column: str = "problem", prompt_template: str | None = None,
                 step_separator: str = "\n", empty_score: float = 0.0, batch_size: int | None = None,
                 cache_size: int = 100_000, name: str = "process_reward"):
        aggregation = aggregation or getattr(scorer, "aggregation", "min")
        if aggregation not in AGGREGATIONS:
            raise ValueError(f"aggregation must be one of {AGGREGATIONS}, got {aggregation!r}")
        if not step_separator:
            raise ValueError("step_separator must not be empty")
        if scorer is None and process_weight:
            raise ValueError("a process reward needs a step scorer (scorer=None only with process_weight=0)")
        self.scorer = scorer
        self.aggregation = aggregation
        self.process_weight, self.outcome_weight = float(process_weight), float(outcome_weight)
        self.format_penalty = float(format_penalty)
        self.answer_column, self.problem_column = answer_column, problem_column
        self.prompt_template = prompt_template if prompt_template is not None else scorer_template(scorer)
        self.step_separator, self.empty_score = step_separator, float(empty_score)
        self.batch_size, self.cache_size = batch_size, cache_size
        self.__name__ = name  # TRL names a reward function's log column after it
        self.score_calls = 0  # how many times the scorer's score_many ran (tests, server stats)
        self._cache: OrderedDict[tuple[str, tuple[str, ...]], list[float | None]] = OrderedDict()
        self._lock = threading.Lock()
        self._grader = None

    # -- TRL's interface ---------------------------------------------------------------------

    def __call__(self, prompts: list, completions: list, **kwargs) -> list[float]:
        problems = kwargs.get(self.problem_column) if self.process_weight else [""] * len(prompts)
        if problems is None:
            problems = [problem_from_prompt(p, self.prompt_template) for p in prompts]
        references = kwargs.get(self.answer_column) if self.outcome_weight else None
        if self.outcome_weight and references is None:
            raise ValueError(f"outcome_weight is {self.outcome_weight} but the dataset has no "
                             f"{self.answer_column!r} column with reference answers")
        parts = self.evaluate([str(p) for p in problems], [completion_text(c) for c in completions],
                              references)
        log_metric = kwargs.get("log_metric")
        if callable(log_metric) and parts:
            self._log(log_metric, parts)
        return [p.reward for p in parts]

    # -- the computation ---------------------------------------------------------------------

    def evaluate(self, problems: list[str], responses: list[str], references: list | None = None,
                 scores: list[list[float | None]] | None = None) -> list[RewardParts]:
        """Every part of the reward of each (problem, response); references: one per response.
        scores: the step scores, when already computed (e.g. by the reward server's batcher)."""
        if len(problems) != len(responses):
            raise ValueError(f"{len(problems)} problems but {len(responses)} responses")
        if references is not None and len(references) != len(responses):
            raise ValueError(f"{len(references)} reference answers but {len(responses)} responses")
        steps = [split_steps(text, self.step_separator) for text in responses]
        if scores is None:
            scores = (self.step_scores(list(zip(problems, steps))) if self.process_weight
                      else [[None] * len(s) for s in steps])
        elif [len(s) for s in scores] != [len(s) for s in steps]:
            raise ValueError("the given step scores do not match the responses' steps")
        parts = []
        for i, text in enumerate(responses):
            answer = extract_answer(text)
            process = None
            if self.process_weight:
                process = aggregate(unscored_as_worst(scores[i]), self.aggregation) if steps[i] else None
                process = self.empty_score if process is None else float(process)
            outcome = None
            if references is not None:
                reference = references[i]
                outcome = float(self.grader.is_equivalent(answer, None if reference is None else str(reference)))
            reward = (self.process_weight * (process or 0.0) + self.outcome_weight * (outcome or 0.0)
                      - (self.format_penalty if answer is None else 0.0))
            parts.append(RewardParts(reward, process, outcome, answer is not None, steps[i], scores[i]))
        return parts

    def step_scores(self, items: list[tuple[str, list[str]]]) -> list[list[float | None]]:
        """Step scores of (problem, steps) items: cached ones reused, the rest in one score_many call."""
        keys = [(problem, tuple(steps)) for problem, steps in items]
        found: dict[tuple[str, tuple[str, ...]], list[float | None]] = {}
        with self._lock:
            for key in dict.fromkeys(keys):
                if key in self._cache:
                    found[key] = self._cache[key]
                    self._cache.move_to_end(key)
        missing = [key for key in dict.fromkeys(keys) if key not in found and key[1]]
        if missing:
            fresh = self.scorer.score_many([(problem, list(steps)) for problem, steps in missing], self.batch_size)
            if len(fresh) != len(missing):
                raise RuntimeError(f"the scorer returned {len(fresh)} results for {len(missing)} items")
            found.update(zip(missing, (list(values) for values in fresh)))
            with self._lock:
                self.score_calls += 1
                for key in missing:
                    self._cache[key] = found[key]
                while len(self._cache) > self.cache_size:
                    self._cache.popitem(last=False)
        return [list(found.get(key, [])) for key in keys]

    @property
    def grader(self):
        if self._grader is None:
            from annotate.grading import Grader

            self._grader = Grader()
        return self._grader

    def close(self) -> None:
        """Stop the grader's helper process, if one was started."""
        if self._grader is not None:
            self._grader.close()

    def _log(self, log_metric, parts: list[RewardParts]) -> None:
        def mean(values):
            values = [v for v in values if v is not None]
            return sum(values) / len(values) if values else None

        for key, value in (("process", mean([p.process for p in parts])),
                           ("outcome", mean([p.outcome for p in parts])),
                           ("steps", mean([len(p.steps) for p in parts]))):
            if value is not None:
                log_metric(f"{self.__name__}/{key}", float(value))


def outcome_reward(*, format_penalty: float = 0.0, answer_column: str = "answer",
                   name: str = "outcome_reward") -> ProcessReward:
    """The outcome reward alone (1 if the final answer equals the reference, else 0), with the
    same columns, grading and format penalty as `ProcessReward`, and no scorer."""
    return ProcessReward(None, process_weight=0.0, outcome_weight=1.0, format_penalty=format_penalty,
                         answer_column=answer_column, name=name)


def scorer_template(scorer: StepScorer | None) -> str | None:
    """The prompt template a scorer writes problems with, when it has one (`{problem}` inside)."""
    while getattr(scorer, "base_scorer", None) is not None:  # e.g. a checker-aware scorer's model
        scorer = scorer.base_scorer
    if scorer is None:
        return None
    config = getattr(scorer, "config", None)
    template = getattr(config, "prompt_template", None) or getattr(scorer, "prompt_template", None)
    return template if isinstance(template, str) and "{problem}" in template else None
