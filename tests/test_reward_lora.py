"""LoRA adapters on the reward model's backbone (peft): what trains, save/load, merging."""

import pytest
import torch

from prm.records import Step, Trace
from prm.reward.model import RewardModel, RewardModelOptions
from prm.reward.training import RewardTrainer, RewardTrainerConfig
from helpers.reward_models import tiny_gpt2

PROBLEM = "Tom has 3 apples and buys 4 more. How many apples?"
STEPS = ["3 + 4 = <<3+4=7>>7 apples", "#### 7"]


def traces(n: int) -> list[Trace]:
    return [Trace(id=f"t{i}", problem=PROBLEM, steps=[Step(STEPS[0], hard_label=i % 2), Step(STEPS[1], hard_label=1)])
            for i in range(n)]


@pytest.fixture(scope="module")
def lora_model(tmp_path_factory):
    folder = str(tiny_gpt2(tmp_path_factory.mktemp("gpt2")))
    args = RewardTrainerConfig.in_memory(tmp_path_factory.mktemp("out"), num_train_epochs=2,
                                         per_device_train_batch_size=4, learning_rate=1e-2, use_cpu=True)
    trainer = RewardTrainer(folder, args, train_traces=traces(8),
                            model_options=RewardModelOptions(lora_r=4, lora_alpha=8, lora_target_modules="c_attn"))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    trainer.train()
    return trainer.model, before


def test_only_the_adapters_and_the_head_train(lora_model):
    model, before = lora_model
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all("lora_" in n or n.startswith("head.") for n in trainable)
    changed = {n for n, p in model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert any("lora_B" in n for n in changed) and "head.weight" in changed
    assert not any("lora_" not in n and n.startswith("backbone") for n in changed)


def test_a_lora_model_saves_reloads_and_merges_with_the_same_scores(lora_model, tmp_path):
    model, _ = lora_model
    expected = model.score(PROBLEM, STEPS)
    model.save_pretrained(tmp_path / "adapter")
    reloaded = RewardModel.from_pretrained(tmp_path / "adapter")
    assert reloaded.config.lora_r == 4
    assert reloaded.score(PROBLEM, STEPS) == pytest.approx(expected, abs=1e-6)
    reloaded.merge_lora().save_pretrained(tmp_path / "merged")
    merged = RewardModel.from_pretrained(tmp_path / "merged")
    assert merged.config.lora_r == 0 and not any("lora_" in n for n, _ in merged.named_parameters())
    assert merged.score(PROBLEM, STEPS) == pytest.approx(expected, abs=1e-5)


def test_with_lm_features_lora_trains_the_backbone_but_the_features_stay_the_unchanged_lm(tmp_path):
    from transformers import AutoModelForCausalLM

    from prm.reward.model import lm_step_features
    from prm.reward.step_tokenizer import pad_batch

    folder = str(tiny_gpt2(tmp_path / "gpt2", lm_head=True))
    args = RewardTrainerConfig.in_memory(tmp_path / "out", num_train_epochs=3, per_device_train_batch_size=4,
                                         learning_rate=5e-2, use_cpu=True)
    trainer = RewardTrainer(folder, args, train_traces=traces(8),
                            model_options=RewardModelOptions(lora_r=4, lora_alpha=8, lm_features=True))
    trainer.train()
    trainer.model.save_pretrained(tmp_path / "prm")
    model = RewardModel.from_pretrained(tmp_path / "prm")  # reloads with its adapters
    batch = pad_batch(model.step_tokenizer.encode_many([(PROBLEM, STEPS)]), model.tokenizer.pad_token_id,
                      answer_start=True)
    plain = AutoModelForCausalLM.from_pretrained(folder).eval()
    with torch.no_grad():
        adapted = model.backbone(input_ids=batch["input_ids"]).logits
        expected = lm_step_features(plain(input_ids=batch["input_ids"]).logits, batch["input_ids"],
                                    batch["step_positions"], batch["answer_start"])
        used = lm_step_features(model._base_lm_logits(None, batch["input_ids"], None), batch["input_ids"],
                                batch["step_positions"], batch["answer_start"])
    assert not torch.allclose(adapted, plain(input_ids=batch["input_ids"]).logits)  # the adapters learned
    assert torch.allclose(used, expected, atol=1e-5)
    with pytest.raises(ValueError, match="LM features"):
        model.merge_lora()


def test_prm_train_refuses_merging_adapters_whose_lm_features_read_the_plain_backbone(tmp_path, capsys):
    from prm.app.cli import main
    from prm.io import write_traces

    write_traces(tmp_path / "train.jsonl", traces(4))
    code = main(["train", str(tmp_path / "train.jsonl"), "--backbone", "tiny-gsm", "--lm_features", "--lora_r", "4",
                 "--merge_lora", "--out", str(tmp_path / "prm")])
    assert code != 0
    assert "--merge_lora with --lm_features" in capsys.readouterr().err
    assert not (tmp_path / "prm" / "config.json").exists()
