"""The reward-model classes: the implicit PRM (`ImplicitPRM`) and the PRM/ORM heads
(`HeadRewardModel`) are loaded as their own classes from the one saved format, the implicit
PRM trains on (input_ids, attention_mask, outcome label) batches against its frozen reference,
and consumers use what a scorer can do, never its head's name."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from prm.reward.loading import load_scorer
from prm.reward.model import (HeadInputs, HeadRewardModel, ImplicitPRM, RewardModel, RewardModelOptions,
                              reward_model_class)
from prm.reward.scorer import StepScorer, TokenRewardScorer
from prm.reward.step_features import INITIAL_WEIGHTS
from prm.reward.step_tokenizer import pad_batch
from prm.rl.dense import dense_rewards
from helpers.reward_models import bpe_tokenizer, tiny_gpt2

ITEMS = [("Tom has 3 apples and buys 4 more. How many?", ["3 + 4 = 7", "#### 7"]),
         ("What is 2 * 5?", ["2 * 5 = 11", "So the answer is 11.", "#### 11"])]


def implicit_prm(folder, beta: float = 0.5) -> ImplicitPRM:
    """A tiny implicit PRM whose policy LM differs from its reference (so scores are not all 0.5)."""
    model = RewardModel.from_backbone(str(tiny_gpt2(folder, lm_head=True)),
                                      RewardModelOptions(head="implicit", beta=beta))
    torch.manual_seed(1)
    with torch.no_grad():
        for parameter in model.backbone.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


def test_each_head_builds_its_own_class_and_asks_nothing_of_the_head_name(tmp_path):
    assert reward_model_class("prm") is HeadRewardModel and reward_model_class("orm") is HeadRewardModel
    assert reward_model_class("implicit") is ImplicitPRM
    model = implicit_prm(tmp_path / "gpt2")
    assert isinstance(model, ImplicitPRM) and isinstance(model, RewardModel) and not hasattr(model, "head")
    assert not model.trains_on_step_labels and not model.trains_on_pairs
    assert isinstance(model, TokenRewardScorer)
    prm = RewardModel.from_backbone(str(tmp_path / "gpt2"), RewardModelOptions(head="prm"))
    assert isinstance(prm, HeadRewardModel) and prm.trains_on_step_labels
    assert not isinstance(prm, TokenRewardScorer)  # no token-level rewards: dense rewards will not ask
    orm = RewardModel.from_backbone(str(tmp_path / "gpt2"), RewardModelOptions(head="orm"))
    assert not orm.trains_on_step_labels and orm.aggregation == "last"
    with pytest.raises(ValueError, match="ImplicitPRM, not a HeadRewardModel"):
        HeadRewardModel.from_backbone(str(tmp_path / "gpt2"), RewardModelOptions(head="implicit"))
    with pytest.raises(ValueError, match="nothing to train"):
        model.freeze_backbone()


def test_implicit_prm_round_trips_save_and_load_and_loads_folders_saved_before_the_split(tmp_path):
    model = implicit_prm(tmp_path / "gpt2")
    before = model.score_many(ITEMS)
    assert any(abs(score - 0.5) > 1e-3 for row in before for score in row)
    model.save_pretrained(tmp_path / "saved")
    config = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert config["model_type"] == "prm-reward-model" and config["head"] == "implicit"
    for load in (RewardModel.from_pretrained, ImplicitPRM.from_pretrained, load_scorer):
        loaded = load(str(tmp_path / "saved"))
        assert type(loaded) is ImplicitPRM
        assert loaded.score_many(ITEMS) == [pytest.approx(row, abs=1e-6) for row in before]
        assert not any(p.requires_grad for p in loaded.reference.parameters())
        assert all(torch.equal(a, b) for a, b in zip(model.reference.state_dict().values(),
                                                      loaded.reference.state_dict().values()))
    with pytest.raises(ValueError, match="holds a ImplicitPRM"):
        HeadRewardModel.from_pretrained(tmp_path / "saved")
    # a folder written before the classes were split named its class "RewardModel"; same weights
    config["architectures"] = ["RewardModel"]
    (tmp_path / "saved" / "config.json").write_text(json.dumps(config))
    assert RewardModel.from_pretrained(tmp_path / "saved").score_many(ITEMS) == \
        [pytest.approx(row, abs=1e-6) for row in before]


def test_forward_and_loss_on_outcome_labels_train_the_policy_and_never_the_reference(tmp_path):
    """What an online trainer (PRIME) calls: a batch of (input_ids, attention_mask, outcome)."""
    model = implicit_prm(tmp_path / "gpt2", beta=0.5)
    for module in model.backbone.modules():  # no dropout: the hand computation below must match
        if isinstance(module, torch.nn.Dropout):
            module.p = 0.0
    model.train()
    encoded = model.step_tokenizer.encode_many(ITEMS)
    batch = pad_batch(encoded, model.tokenizer.pad_token_id, answer_start=True)
    ids, mask, start = batch["input_ids"], batch["attention_mask"], batch["answer_start"]
    outcomes = torch.tensor([1.0, 0.0])
    output = model(ids, mask, answer_start=start, labels=outcomes)
    # by hand: r(y) = beta * sum of the response tokens' log-ratios; loss = BCE(sigmoid(r), outcome)
    with torch.no_grad():
        ratios = model.token_log_ratios(ids, mask, start)
    rewards = 0.5 * ratios.sum(dim=1)
    assert output.logits.shape == (2, 1) and output.logits[:, 0].tolist() == pytest.approx(rewards.tolist(), abs=1e-5)
    assert output.loss.item() == pytest.approx(F.binary_cross_entropy_with_logits(rewards, outcomes).item(), abs=1e-5)
    # the same loss with per-step labels (what RewardTrainer builds) read at each row's last step
    per_step = model(ids, mask, step_positions=batch["step_positions"], answer_start=start, labels=outcomes)
    assert per_step.loss.item() == pytest.approx(output.loss.item(), abs=1e-5)
    assert float(per_step.logits[0, 1]) == pytest.approx(float(rewards[0]), abs=1e-5)

    reference = {name: p.clone() for name, p in model.reference.named_parameters()}
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=0.5)
    losses = []
    for _ in range(5):
        optimizer.zero_grad()
        loss = model(ids, mask, answer_start=start, labels=outcomes).loss
        loss.backward()
        assert all(p.grad is None for p in model.reference.parameters())
        optimizer.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]
    assert all(torch.equal(p, reference[name]) for name, p in model.reference.named_parameters())
    assert not model.reference.training  # pi_ref stays in eval mode while the model trains


def test_head_inputs_is_the_head_weight_layout(tmp_path):
    folder = tiny_gpt2(tmp_path / "gpt2", lm_head=True)
    model = RewardModel.from_backbone(str(folder), RewardModelOptions(lm_features=True,
                                                                      step_features="refuted,verified"))
    layout = model.head_inputs
    assert layout == HeadInputs(hidden=32, lm=2, step=2) and model.head.in_features == layout.width == 36
    weight = model.head.weight[0]
    assert weight[layout.lm_columns].tolist() == [1.0, 1.0]
    assert weight[layout.step_columns].tolist() == [INITIAL_WEIGHTS["refuted"], INITIAL_WEIGHTS["verified"]]
    joined = layout.concat(torch.zeros(1, 3, 32), torch.ones(1, 3, 2), torch.full((1, 3, 2), 2.0))
    assert joined[0, 0, 32:].tolist() == [1.0, 1.0, 2.0, 2.0]


class TokenScorer(StepScorer):
    """Not a reward model and no `config.head`: 0.25 per step, and from `token_rewards` a reward
    of 1.0 on every word of each step (its "tokens")."""

    def score_many(self, items, batch_size=None, progress=False):
        return [[0.25] * len(steps) for _, steps in items]

    def token_rewards(self, items, batch_size=None):
        results = []
        for _, steps in items:
            rows = []
            for step in steps:
                ends, at = [], 0
                for word in step.split(" "):
                    at += len(word)
                    ends.append(at)
                    at += 1
                rows.append([(end, 1.0) for end in ends])
            results.append(rows)
        return results


class HeadNamedImplicit(StepScorer):
    """Claims head="implicit" in a config but has no token rewards: dense rewards must not care."""

    class config:  # noqa: N801 (an attribute that looks like a model config)
        head = "implicit"

    def score_many(self, items, batch_size=None, progress=False):
        return [[0.75] * len(steps) for _, steps in items]


def test_dense_rewards_use_token_rewards_by_capability_not_head_name():
    tokenizer = bpe_tokenizer()
    response = "3 + 4 = 7\n7 + 1 = 8"
    dense = dense_rewards(TokenScorer(), tokenizer, [ITEMS[0][0]], [response])[0]
    assert dense.token_values is not None and len(dense.token_values) == 5 + 5  # one pair per word
    rewards = dense.token_rewards(len(tokenizer(response)["input_ids"]))
    assert sum(rewards) == pytest.approx(10.0) and rewards[-1] >= 1.0  # the last word sits on the last token
    named = dense_rewards(HeadNamedImplicit(), tokenizer, [ITEMS[0][0]], [response])[0]
    assert named.token_values is None and named.scores == [0.75, 0.75]
    with pytest.raises(ValueError, match="token-level rewards"):
        dense_rewards(HeadNamedImplicit(), tokenizer, [ITEMS[0][0]], [response], token_level=True)
    assert math.isclose(sum(dense_rewards(TokenScorer(), tokenizer, [ITEMS[0][0]], [response],
                                          token_level=False)[0].token_rewards(20)), 0.5)
