"""Dense process rewards for verl: a reward manager that fills verl's `reward_tensor`.

verl's PPO/GRPO trainer asks its reward manager for one reward per response token
(`reward_tensor`, shaped like `data.batch["responses"]`). `ProcessRewardManager` fills it from
any `StepScorer` with `prm.rl.dense`: each step's score on the token where the step ends (or an
implicit PRM's token rewards on every token), plus `outcome_weight` times the outcome (the
final answer graded against `reward_model.ground_truth`, as verl's datasets store it) on the
last token. The scorer may be a local model (`scorer_path`, loaded with
`prm.reward.loading.load_scorer`) or the reward server over HTTP (`server_url`,
`prm.rl.remote.RemoteStepScorer`).

Importing this module registers the manager under the name "prm" in both of verl's
registries (checked against verl 0.9.1):

- `verl.workers.reward_manager` (`ProcessRewardManager`): the classic managers, whose
  `__call__(data, return_dict)` returns the token-level `reward_tensor` (what verl's PPO trainer
  called before the reward loop; still shipped in 0.9.1; `reward_model.reward_manager=prm`,
  options as `reward_kwargs`);
- `verl.experimental.reward_loop.reward_manager` (`ProcessRewardLoopManager`, verl 0.9's
  reward loop, `reward.reward_manager.name=prm`): `run_single` returns the sample's per-token
  rewards as its `reward_score` and `assemble_rm_scores` lays them out as `rm_scores`; options
  come from the config's `reward.prm` section (`+reward.prm.server_url=http://HOST:5000`).

    import prm.rl.verl_manager   # in the entry point, before verl builds its reward manager

`fill_reward_tensor(data, scorer, tokenizer)` is the same without verl: `data` only needs
verl's `DataProto` fields (`batch["prompts"]` left-padded, `batch["responses"]` right-padded,
`batch["attention_mask"]` over both, `non_tensor_batch["reward_model"]` / `["extra_info"]`).
The problem handed to the scorer is `extra_info["problem"]` when the dataset has it, else it
is read out of the decoded prompt (`prm.rl.text.problem_from_prompt`) with `prompt_template`
(default: the scorer's own; a reward server's template is not known here, so pass
`prompt_template` with `server_url` unless the dataset has the problem).
"""

from __future__ import annotations

from collections import defaultdict

import torch

from prm.reward.scorer import StepScorer
from prm.rl.dense import dense_rewards
from prm.rl.rewards import outcome_reward, scorer_template
from prm.rl.text import problem_from_prompt

MANAGER_NAME = "prm"


def fill_reward_tensor(data, scorer: StepScorer, tokenizer, *, outcome_weight: float = 0.0,
                       step_separator: str = "\n", prompt_template: str | None = None) -> tuple[torch.Tensor, dict]:
    """(reward_tensor like data.batch["responses"], extra info lists) for one verl batch."""
    prompts, responses = data.batch["prompts"], data.batch["responses"]
    response_mask = data.batch["attention_mask"][:, prompts.size(1):]
    prompt_mask = data.batch["attention_mask"][:, :prompts.size(1)]
    n = responses.size(0)
    extra = data.non_tensor_batch.get("extra_info")
    extra = [e if isinstance(e, dict) else {} for e in (extra if extra is not None else [None] * n)]
    template = prompt_template or scorer_template(scorer)
    problems = [str(e["problem"]) if "problem" in e else
                problem_from_prompt(tokenizer.decode(p[m.bool()].tolist(), skip_special_tokens=True), template)
                for e, p, m in zip(extra, prompts, prompt_mask)]
    ids = [r[m.bool()].tolist() for r, m in zip(responses, response_mask)]
    dense = dense_rewards(scorer, tokenizer, problems, response_ids=ids, step_separator=step_separator)
    outcomes = [None] * n
    if outcome_weight:
        truths = [(x or {}).get("ground_truth") for x in data.non_tensor_batch.get("reward_model", [None] * n)]
        texts = [tokenizer.decode(i, skip_special_tokens=True) for i in ids]
        outcomes = [outcome_weight * o for o in outcome_reward()([""] * n, texts, answer=truths)]
    reward_tensor = torch.zeros_like(responses, dtype=torch.float32)
    info = defaultdict(list)
    for i, (d, row) in enumerate(zip(dense, ids)):
        reward_tensor[i, :len(row)] = torch.tensor(d.token_rewards(len(row), outcomes[i]))
        scored = [s for s in d.scores if s is not None]
        info["prm_steps"].append(len(d.steps))
        info["prm_min_step_score"].append(min(scored) if scored else 0.0)
    return reward_tensor, dict(info)


class ProcessRewardManager:
    """verl reward manager "prm" (see the module docstring). scorer / scorer_path / server_url:
    where the step scores come from (one of them); outcome_weight: the outcome on the last token."""

    def __init__(self, tokenizer, num_examine: int = 0, compute_score=None, reward_fn_key: str = "data_source", *,
                 scorer: StepScorer | None = None, scorer_path: str | None = None, server_url: str | None = None,
                 api_key: str | None = None, outcome_weight: float = 0.0, step_separator: str = "\n",
                 prompt_template: str | None = None, **kwargs):
        self.tokenizer, self.num_examine = tokenizer, num_examine
        self.scorer = make_scorer(scorer, scorer_path, server_url, api_key)
        self.outcome_weight, self.step_separator = outcome_weight, step_separator
        self.prompt_template = prompt_template

    def __call__(self, data, return_dict: bool = False):
        if "rm_scores" in data.batch.keys():  # scores already computed by a reward model worker
            reward_tensor, info = data.batch["rm_scores"], {}
        else:
            reward_tensor, info = fill_reward_tensor(data, self.scorer, self.tokenizer,
                                                     outcome_weight=self.outcome_weight,
                                                     step_separator=self.step_separator,
                                                     prompt_template=self.prompt_template)
        return {"reward_tensor": reward_tensor, "reward_extra_info": info} if return_dict else reward_tensor


def make_scorer(scorer: StepScorer | None = None, scorer_path: str | None = None, server_url: str | None = None,
                api_key: str | None = None) -> StepScorer:
    """The step scorer from exactly one of: an object, a folder/model name, a reward server's URL."""
    if sum(x is not None for x in (scorer, scorer_path, server_url)) != 1:
        raise ValueError("the prm reward manager needs one of scorer, scorer_path or server_url")
    if scorer_path is not None:
        from prm.reward.loading import load_scorer

        return load_scorer(scorer_path)
    if server_url is not None:
        from prm.rl.remote import RemoteStepScorer

        return RemoteStepScorer(server_url, api_key=api_key)
    return scorer


def _reward_loop_manager():
    """verl 0.9's reward-loop manager class (defined only when verl is installed)."""
    from verl.experimental.reward_loop.reward_manager.base import RewardManagerBase

    class ProcessRewardLoopManager(RewardManagerBase):
        """Per-sample token rewards in verl's reward loop; options from `config.reward.prm`."""

        def __init__(self, config, tokenizer, compute_score=None, reward_router_address=None,
                     reward_model_tokenizer=None, scorer: StepScorer | None = None, **kwargs):
            super().__init__(config, tokenizer, compute_score)
            options = dict((config.get("reward") or {}).get("prm") or {}) if config is not None else {}
            self.outcome_weight = float(options.pop("outcome_weight", 0.0))
            self.step_separator = options.pop("step_separator", "\n")
            self.prompt_template = options.pop("prompt_template", None)
            self.scorer = make_scorer(scorer, **options)

        async def run_single(self, data) -> dict:
            rewards, info = await self.loop.run_in_executor(None, lambda: fill_reward_tensor(
                data[-1:], self.scorer, self.tokenizer, outcome_weight=self.outcome_weight,
                step_separator=self.step_separator, prompt_template=self.prompt_template))
            length = int(data.batch["attention_mask"][-1, data.batch["prompts"].size(1):].sum())
            return {"reward_score": rewards[0, :length].tolist(),
                    "reward_extra_info": {key: values[0] for key, values in info.items()}}

        @classmethod
        def assemble_rm_scores(cls, data, scores):
            rm_scores = torch.zeros_like(data.batch["responses"], dtype=torch.float32)
            for i, row in enumerate(scores):
                rm_scores[i, :len(row)] = torch.tensor(row, dtype=torch.float32)
            return rm_scores

    return ProcessRewardLoopManager


def register_with_verl() -> bool:
    """Register the managers as "prm" in verl's registries; False if verl (or its reward loop's
    light dependencies) is absent."""
    global ProcessRewardLoopManager
    try:
        from verl.workers.reward_manager import registry as legacy_registry
    except ImportError:
        return False
    if legacy_registry.REWARD_MANAGER_REGISTRY.get(MANAGER_NAME) is not ProcessRewardManager:
        legacy_registry.register(MANAGER_NAME)(ProcessRewardManager)
    try:
        from verl.experimental.reward_loop.reward_manager import registry as loop_registry
    except ImportError:
        return False
    if MANAGER_NAME not in loop_registry.REWARD_MANAGER:
        loop_registry.register(MANAGER_NAME)(_reward_loop_manager())
    ProcessRewardLoopManager = loop_registry.REWARD_MANAGER[MANAGER_NAME]
    return True


ProcessRewardLoopManager = None  # set by register_with_verl when verl is installed


register_with_verl()
