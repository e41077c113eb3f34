"""The verl reward manager "prm": verl's own DataProto (verl 0.9.1 installed --no-deps, see the
Makefile), the token-level reward tensor it fills, and the reward server scoring over HTTP."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from completers.text import PLAIN_TEMPLATE, plain_prompt
from completers.world import generate_problems
from prm.reward.model import RewardModel, RewardModelOptions
from prm.rl.dense import dense_rewards
from prm.rl.rewards import ProcessReward
from prm.rl.server import RewardServer

verl = pytest.importorskip("verl", reason="verl is installed by `make install-test` (pip --no-deps)")


@pytest.fixture(scope="module")
def model():
    return RewardModel.from_backbone("tiny-gsm", RewardModelOptions(lm_features=True, prompt_template=PLAIN_TEMPLATE))


def verl_batch(tokenizer, problems, responses):
    """A DataProto as verl's rollout hands it to a reward manager: prompts left-padded,
    responses right-padded, one attention mask over both, ground truths in reward_model."""
    prompts = [tokenizer(plain_prompt(p.question, []), add_special_tokens=False)["input_ids"] for p in problems]
    answers = [tokenizer(r, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id] for r in responses]
    pad = tokenizer.pad_token_id or 0
    width_p, width_r = max(map(len, prompts)), max(map(len, answers)) + 3
    prompt_ids = torch.tensor([[pad] * (width_p - len(p)) + p for p in prompts])
    response_ids = torch.tensor([a + [pad] * (width_r - len(a)) for a in answers])
    mask = torch.tensor([[0] * (width_p - len(p)) + [1] * len(p) + [1] * len(a) + [0] * (width_r - len(a))
                         for p, a in zip(prompts, answers)])
    return verl.DataProto.from_dict(
        tensors={"prompts": prompt_ids, "responses": response_ids, "attention_mask": mask,
                 "input_ids": torch.cat([prompt_ids, response_ids], dim=1)},
        non_tensors={"data_source": np.array(["world"] * len(problems), dtype=object),
                     "reward_model": np.array([{"ground_truth": str(p.answer)} for p in problems], dtype=object)}), answers


def test_prm_reward_manager_fills_verl_reward_tensor_from_the_reward_server(model):
    import prm.rl.verl_manager as manager_module
    from verl.workers.reward_manager import get_reward_manager_cls

    problems = generate_problems(3, seed=41)
    responses = [problems[0].solution, problems[1].solution.replace(str(problems[1].answer), "9999"), "no steps"]
    data, answers = verl_batch(model.tokenizer, problems, responses)
    with RewardServer(ProcessReward(model)) as server:
        manager = get_reward_manager_cls("prm")(model.tokenizer, 0, server_url=server.url, outcome_weight=1.0,
                                                         prompt_template=PLAIN_TEMPLATE)
        result = manager(data, return_dict=True)
    rewards = result["reward_tensor"]
    assert manager_module.ProcessRewardManager is get_reward_manager_cls("prm")
    assert rewards.shape == data.batch["responses"].shape and rewards.dtype == torch.float32

    ids = answers
    local = dense_rewards(model, model.tokenizer, [p.question for p in problems], response_ids=ids)
    for i, (dense, row) in enumerate(zip(local, ids)):
        outcome = 1.0 if i == 0 else 0.0  # the first solution is right, the second's answer was changed
        expected = torch.tensor(dense.token_rewards(len(row), outcome))
        assert torch.allclose(rewards[i, :len(row)], expected, atol=1e-5)
        assert rewards[i, len(row):].abs().sum() == 0  # padding gets nothing
    assert len(local[0].steps) >= 2 and (rewards[0, :len(ids[0]) - 1] != 0).sum() == len(local[0].steps)
    assert result["reward_extra_info"]["prm_steps"] == [len(d.steps) for d in local]


def test_reward_loop_manager_lays_token_rewards_into_rm_scores(model):
    from omegaconf import OmegaConf
    from verl.experimental.reward_loop.reward_manager import get_reward_manager_cls

    import prm.rl.verl_manager  # noqa: F401 (registers "prm")

    problems = generate_problems(2, seed=43)
    data, answers = verl_batch(model.tokenizer, problems, [p.solution for p in problems])
    manager_class = get_reward_manager_cls("prm")
    manager = manager_class(OmegaConf.create({"reward": {"prm": {}}}), model.tokenizer, None, scorer=model)
    outputs = [manager.loop.run_until_complete(manager.run_single(data[i:i + 1])) for i in range(len(data))]
    rm_scores = manager_class.assemble_rm_scores(data, [o["reward_score"] for o in outputs])
    local = dense_rewards(model, model.tokenizer, [p.question for p in problems], response_ids=answers)
    assert rm_scores.shape == data.batch["responses"].shape
    for i, (dense, row) in enumerate(zip(local, answers)):
        assert torch.allclose(rm_scores[i, :len(row)], torch.tensor(dense.token_rewards(len(row))), atol=1e-5)
    with pytest.raises(ValueError, match="one of scorer, scorer_path or server_url"):
        manager_class(OmegaConf.create({"reward": {"prm": {}}}), model.tokenizer, None)
