"""Process-supervised GRPO on TRL: per-token credit by hand (sum, min, the outcome mix), a real
ProcessGRPOTrainer step on tiny-gsm with a real PRM, and the online implicit PRM (PRIME)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from completers.text import PLAIN_TEMPLATE, plain_prompt
from completers.world import generate_problems
from prm.rl.credit import EPSILON, mix_advantages, process_advantages

UNITS = [[(1, 0.9), (3, 0.1)], [(2, 0.5), (4, 0.9)],  # group 1: two completions, (end token, step score)
         [(0, 0.2)], [(2, 0.2)]]                       # group 2: every step scored alike -> no signal


def normalised(values):
    values = torch.tensor(values, dtype=torch.float64)
    return ((values - values.mean()) / (values.std() + EPSILON)).tolist()


def test_sum_credit_is_the_sum_of_normalised_step_rewards_at_or_after_each_token():
    a, b, c, d = normalised([0.9, 0.1, 0.5, 0.9])
    expected = torch.tensor([[a + b, a + b, b, b, 0], [c + d, c + d, c + d, d, d], [0] * 5, [0] * 5])
    assert torch.allclose(process_advantages(UNITS, 5, group_size=2, credit="sum"), expected.float(), atol=1e-6)


def test_min_credit_is_the_worst_normalised_step_still_to_come():
    a, b, c, d = normalised([0.9, 0.1, 0.5, 0.9])
    expected = torch.tensor([[min(a, b), min(a, b), b, b, 0], [min(c, d)] * 3 + [d, d], [0] * 5, [0] * 5])
    assert torch.allclose(process_advantages(UNITS, 5, group_size=2, credit="min"), expected.float(), atol=1e-6)
    with pytest.raises(ValueError, match="credit"):
        process_advantages(UNITS, 5, 2, credit="mean")


def test_mix_adds_the_weighted_outcome_advantage_to_every_token():
    process = process_advantages(UNITS, 5, 2, "sum")
    mixed = mix_advantages(process, torch.tensor([1.0, -1.0, 0.5, 0.0]), process_weight=2.0, outcome_weight=0.5)
    assert torch.allclose(mixed, 2 * process + torch.tensor([[0.5], [-0.5], [0.25], [0.0]]))


def test_unsupported_trl_versions_fail_in_one_line():
    from prm.rl.process_grpo import check_trl_version

    check_trl_version("1.16.0")
    with pytest.raises(RuntimeError, match=r"supports trl >=1\.16\.0,<1\.17\.0; trl 1\.15\.2 is installed"):
        check_trl_version("1.15.2")


def _trainer(tmp_path, **options):
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from prm.model_names import resolve_model
    from prm.rl import ProcessGRPOConfig, ProcessGRPOTrainer
    from prm.rl.rewards import outcome_reward

    problems = generate_problems(2, seed=21)
    data = Dataset.from_list([{"prompt": plain_prompt(p.question, []), "problem": p.question, "answer": str(p.answer)}
                              for p in problems])
    path = resolve_model("tiny-gsm")
    scorer = options.pop("scorer", None)
    args = ProcessGRPOConfig(output_dir=str(tmp_path), max_steps=1, per_device_train_batch_size=4, num_generations=2,
                             max_completion_length=48, learning_rate=1e-3, beta=0.0, logging_steps=1, report_to=[],
                             use_cpu=True, seed=0, disable_tqdm=True, **options)
    return ProcessGRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), reward_funcs=outcome_reward(),
                              args=args, train_dataset=data, processing_class=AutoTokenizer.from_pretrained(path),
                              scorer=scorer)


def _recording(trainer):
    """Keep what each generation batch handed to the loss."""
    seen, original = [], trainer._generate_and_score_completions

    def record(inputs):
        output = original(inputs)
        seen.append(({k: v for k, v in output.items()}, inputs))
        return output

    trainer._generate_and_score_completions = record
    return seen


def test_one_process_grpo_step_trains_on_per_token_advantages_from_the_prm(tmp_path):
    from prm.reward.model import RewardModel, RewardModelOptions
    from prm.rl.dense import dense_rewards

    scorer = RewardModel.from_backbone("tiny-gsm", RewardModelOptions(lm_features=True, prompt_template=PLAIN_TEMPLATE))
    trainer = _trainer(tmp_path, scorer=scorer, credit="min", outcome_weight=0.5, save_strategy="no")
    seen = _recording(trainer)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()

    output, inputs = seen[0]
    ids = [row[mask.bool()].tolist() for row, mask in zip(output["completion_ids"], output["completion_mask"])]
    dense = dense_rewards(scorer, trainer.processing_class, [x["problem"] for x in inputs], response_ids=ids)
    units = [[(t, s) for t, s in zip(d.end_tokens, d.scores) if s is not None] for d in dense]
    assert sum(map(len, units)) >= 2
    advantages = output["advantages"]
    assert advantages.shape == output["completion_ids"].shape  # per token, not per completion
    process = process_advantages(units, advantages.size(1), 2, "min")
    outcome = advantages - process  # what is left is TRL's outcome advantage, the same on every token
    assert torch.allclose(outcome, outcome[:, :1].expand_as(outcome), atol=1e-5)
    assert process.abs().sum() > 0
    log = next(h for h in trainer.state.log_history if "process/prm_seconds" in h)
    assert log["process/units_per_completion"] == pytest.approx(sum(map(len, units)) / 4)
    assert any(not p.detach().equal(b) for p, b in zip(trainer.model.parameters(), before))


def test_online_prm_learns_from_outcomes_keeps_its_reference_and_is_checkpointed(tmp_path):
    trainer = _trainer(tmp_path, online_prm=True, online_prm_learning_rate=1e-3, credit="sum",
                       save_strategy="steps", save_steps=1)
    prm = trainer.online_prm
    backbone = [p.detach().clone() for p in prm.backbone.parameters()]
    reference = [p.detach().clone() for p in prm.reference.parameters()]
    seen = _recording(trainer)
    trainer.train()

    assert any(not p.equal(b) for p, b in zip(prm.backbone.parameters(), backbone))
    assert all(p.equal(b) for p, b in zip(prm.reference.parameters(), reference))
    output, _ = seen[0]
    lengths = output["completion_mask"].sum(dim=1)
    assert output["advantages"].shape == output["completion_ids"].shape
    assert next(h for h in trainer.state.log_history if "process/online_prm_loss" in h)["process/units_per_completion"] \
        == pytest.approx(lengths.float().mean().item())  # one reward per policy token
    saved = Path(tmp_path) / "checkpoint-1" / "online_prm"
    assert (saved / "optimizer.pt").exists()
    from prm.reward.model import RewardModel

    reloaded = RewardModel.from_pretrained(saved)
    assert all(torch.equal(a, b) for a, b in zip(reloaded.backbone.parameters(), prm.backbone.parameters()))

    resumed = _trainer(tmp_path, online_prm=True, online_prm_learning_rate=1e-3, save_strategy="no")
    assert not all(torch.equal(a, b) for a, b in zip(resumed.online_prm.backbone.parameters(), prm.backbone.parameters()))
    resumed.train(resume_from_checkpoint=str(Path(tmp_path) / "checkpoint-1"))  # at max_steps already: loads only
    assert all(torch.equal(a, b) for a, b in zip(resumed.online_prm.backbone.parameters(), prm.backbone.parameters()))
    assert resumed.online_prm_optimizer.state_dict()["state"]  # AdamW's moments came back too
