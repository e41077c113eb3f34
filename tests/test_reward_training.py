"""RewardTrainer: soft targets, checkpoints and resume, early stopping, class balance, metrics."""

import json
import random

import numpy as np
import pytest
import torch

from prm.records import Step, Trace
from prm.reward.model import RewardModel, RewardModelOptions
from prm.reward.training import JsonlLogCallback, RewardTrainer, RewardTrainerConfig, step_metrics
from helpers.reward_models import tiny_bert, tiny_gpt2


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    return str(tiny_bert(tmp_path_factory.mktemp("bert") / "bert"))


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory):
    return str(tiny_gpt2(tmp_path_factory.mktemp("gpt2") / "gpt2"))


def synthetic(n: int, seed: int, soft: bool) -> list[Trace]:
    """Steps mentioning 'apples' are good 75% of the time, 'pears' 25%: as soft labels the
    targets are exactly 0.75 / 0.25; as hard labels they are drawn from them."""
    rng = random.Random(seed)
    traces = []
    for i in range(n):
        steps = []
        for _ in range(rng.randint(1, 4)):
            fruit = rng.choice(["apples", "pears"])
            p = 0.75 if fruit == "apples" else 0.25
            text = f"she counts the {fruit} {rng.randint(1, 99)}"
            steps.append(Step(text, soft_label=p) if soft else Step(text, hard_label=int(rng.random() < p)))
        traces.append(Trace(id=f"s{i}", problem="How many fruits?", steps=steps))
    return traces


def args_for(tmp_path, **overrides):
    values = dict(per_device_train_batch_size=16, per_device_eval_batch_size=32, learning_rate=3e-3,
                  num_train_epochs=1, seed=0, logging_steps=5, use_cpu=True)
    return RewardTrainerConfig.in_memory(tmp_path / "out", **{**values, **overrides})


def options(**values) -> RewardModelOptions:
    return RewardModelOptions(**values)


def test_soft_labels_learn_fractional_targets_not_zero_or_one(bert_folder, tmp_path):
    train = synthetic(160, seed=0, soft=True)
    trainer = RewardTrainer(bert_folder, args_for(tmp_path, num_train_epochs=6), train_traces=train,
                            model_options=options(label_type="soft"))
    trainer.train()
    model = trainer.model
    probe = [("How many fruits?", [f"she counts the {fruit} {k}"]) for fruit in ("apples", "pears")
             for k in (3, 17, 42, 88)]
    scores = [s[0] for s in model.score_many(probe)]
    apples, pears = np.mean(scores[:4]), np.mean(scores[4:])
    assert abs(apples - 0.75) < 0.1 and abs(pears - 0.25) < 0.1, (apples, pears)
    assert model.config.label_type == "soft"


def test_mse_regression_head_also_learns_the_fractions(gpt2_folder, tmp_path):
    train = synthetic(160, seed=1, soft=True)
    trainer = RewardTrainer(gpt2_folder, args_for(tmp_path, num_train_epochs=6, learning_rate=5e-3), train_traces=train,
                            model_options=options(label_type="soft", objective="mse"))
    trainer.train()
    scores = [s[0] for s in trainer.model.score_many([("How many fruits?", ["she counts the apples 5"]),
                                                      ("How many fruits?", ["she counts the pears 5"])])]
    assert scores[0] > 0.6 and scores[1] < 0.4 and 0.05 < scores[1] < scores[0] < 0.95, scores


def test_checkpoint_resume_reaches_the_same_weights_as_an_uninterrupted_run(bert_folder, tmp_path):
    train = synthetic(48, seed=2, soft=False)
    full = RewardTrainer(bert_folder, args_for(tmp_path / "a", num_train_epochs=2, save_strategy="epoch"),
                         train_traces=train)
    full.train()
    checkpoints = sorted((tmp_path / "a" / "out").glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    assert len(checkpoints) == 2
    # a checkpoint is itself a RewardModel folder
    assert RewardModel.from_pretrained(checkpoints[-1]).score("Q?", ["x"])[0] is not None
    resumed = RewardTrainer(bert_folder, args_for(tmp_path / "b", num_train_epochs=2, save_strategy="epoch"),
                            train_traces=train)
    resumed.train(resume_from_checkpoint=str(checkpoints[0]))
    assert resumed.state.global_step == full.state.global_step
    for (name, a), (_, b) in zip(full.model.state_dict().items(), resumed.model.state_dict().items()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_early_stopping_stops_when_the_eval_loss_stops_improving(bert_folder, tmp_path):
    train, held_out = synthetic(32, seed=3, soft=False), synthetic(16, seed=4, soft=False)
    args = args_for(tmp_path, num_train_epochs=6, learning_rate=0.0, early_stopping_patience=1,
                    eval_strategy="epoch")
    trainer = RewardTrainer(bert_folder, args, train_traces=train, eval_traces=held_out)
    trainer.train()
    assert trainer.state.epoch == pytest.approx(2.0)  # epoch 1 sets the best, epoch 2 does not improve


def test_class_balance_and_the_positive_rate_are_reported_in_the_metrics_log(bert_folder, tmp_path):
    train = synthetic(40, seed=5, soft=False)
    labels = [s.hard_label for t in train for s in t.steps]
    rate = sum(labels) / len(labels)
    log = tmp_path / "metrics.jsonl"
    args = args_for(tmp_path, balance_classes=True, eval_strategy="epoch")
    trainer = RewardTrainer(bert_folder, args, train_traces=train, eval_traces=synthetic(12, 6, False),
                            callbacks=[JsonlLogCallback(log)])
    assert trainer.pos_weight == pytest.approx((1 - rate) / rate)
    trainer.train()
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0]["train_positive_rate"] == pytest.approx(rate)
    evaluation = next(r for r in records if "eval_accuracy" in r)
    assert {"eval_auroc", "eval_first_error_accuracy", "eval_loss"} <= set(evaluation)
    assert "train_loss" in records[-1]


def test_traces_without_labels_of_the_chosen_kind_are_refused(bert_folder, tmp_path):
    train = synthetic(8, seed=7, soft=False)  # hard labels only
    with pytest.raises(ValueError, match="no trace has soft labels"):
        RewardTrainer(bert_folder, args_for(tmp_path), train_traces=train, model_options=options(label_type="soft"))


def test_step_metrics_by_hand():
    probs = [[0.9, 0.8, 0.3], [0.9, 0.2], [0.7, 0.6], [0.4, 0.9]]
    gold = [[1, 1, 0], [1, 1], [1, None], [None, 0]]
    m = step_metrics(probs, gold)
    # known steps: 0.9/1 0.8/1 0.3/0 | 0.9/1 0.2/1 | 0.7/1 | 0.9/0 -> right: 1,1,1,1,0,1,0
    assert m["steps"] == 7 and m["accuracy"] == pytest.approx(5 / 7)
    assert m["bad_step_recall"] == pytest.approx(1 / 2)
    # first errors: trace 0 gold 2 pred 2 (hit); trace 1 gold -1 pred 1 (miss); trace 2 gold
    # undecidable? no: labels 1, None -> None before any 0 -> left out; trace 3 left out
    assert m["first_error_accuracy"] == pytest.approx(1 / 2)
    assert m["first_error_accuracy_with_error"] == 1.0 and m["first_error_accuracy_without_error"] == 0.0
    from sklearn.metrics import roc_auc_score
    assert m["auroc"] == pytest.approx(roc_auc_score([1, 1, 0, 1, 1, 1, 0], [0.9, 0.8, 0.3, 0.9, 0.2, 0.7, 0.9]))
    # a trace that lost steps to truncation says nothing about its first error
    assert step_metrics(probs, gold, complete=[True, False, True, True])["first_error_accuracy"] == 1.0


def test_an_evaluation_that_predicts_one_class_warns_loudly(bert_folder, tmp_path, capsys):
    train = synthetic(24, seed=7, soft=False)
    args = args_for(tmp_path, learning_rate=0.0, eval_strategy="epoch", threshold=0.0)  # every p >= 0: all good
    trainer = RewardTrainer(bert_folder, args, train_traces=train, eval_traces=synthetic(12, 8, False))
    trainer.train()
    assert "predicts every step good" in capsys.readouterr().err
