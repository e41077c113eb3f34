"""Checker verdicts as reward-model inputs (`step_features`): values, training, scoring, saving."""

import pytest
from helpers.reward_models import tiny_gpt2

from prm.records import Step, Trace, Verdict
from prm.reward.model import RewardModel, RewardModelOptions
from prm.reward.step_features import parse_step_features, step_feature_values
from prm.reward.training import RewardTrainer, RewardTrainerConfig, build_examples

PROBLEM = "Tom has 3 apples and buys 4 more, then doubles them. How many apples?"
FEATURES = "refuted,refuted_so_far"


def verdict(status: str) -> Verdict:
    return Verdict(checker="sympy", status=status)


def trace(i: int, wrong: bool) -> Trace:
    """Same text either way: only the verdicts tell a wrong trace apart (its first step refuted)."""
    steps = [Step("3 + 4 = <<3+4=7>>7 apples", hard_label=0 if wrong else 1,
                  verdicts=[verdict("refuted" if wrong else "verified")]),
             Step("7 * 2 = <<7*2=14>>14 apples", hard_label=0 if wrong else 1, verdicts=[verdict("verified")]),
             Step("#### 14", hard_label=0 if wrong else 1)]
    return Trace(id=f"t{i}", problem=PROBLEM, steps=steps)


def test_feature_values_carry_a_refutation_forward():
    steps = trace(0, wrong=True).steps
    assert step_feature_values(steps, ["refuted", "refuted_so_far", "verified", "checked"]) == [
        [1.0, 1.0, 0.0, 1.0], [0.0, 1.0, 1.0, 1.0], [0.0, 1.0, 0.0, 0.0]]
    assert step_feature_values(trace(1, wrong=False).steps, ["refuted_so_far"]) == [[0.0], [0.0], [0.0]]


def test_unknown_feature_names_are_refused():
    assert parse_step_features(" refuted , verified ") == ["refuted", "verified"]
    with pytest.raises(ValueError, match="unknown feature"):
        RewardModelOptions(step_features="refuted,wrongness")


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = str(tiny_gpt2(tmp_path_factory.mktemp("gpt2")))
    args = RewardTrainerConfig.in_memory(tmp_path_factory.mktemp("out"), num_train_epochs=3,
                                         per_device_train_batch_size=4, learning_rate=5e-3, use_cpu=True,
                                         freeze_backbone=True)
    trainer = RewardTrainer(folder, args, train_traces=[trace(i, wrong=i % 2 == 0) for i in range(12)],
                            model_options=RewardModelOptions(step_features=FEATURES))
    trainer.train()
    return trainer.model


def test_the_head_reads_the_features_and_scores_follow_the_verdicts(trained, tmp_path):
    assert trained.head.in_features == trained.config.transformer_config.n_embd + 2
    wrong, right = trace(100, wrong=True), trace(101, wrong=False)
    trained.score_traces([wrong, right])
    # identical text: only the verdicts differ, and every step after the refuted one scores low too
    assert all(w.score < 0.5 < r.score for w, r in zip(wrong.steps, right.steps))
    trained.save_pretrained(tmp_path / "model")
    reloaded = RewardModel.from_pretrained(tmp_path / "model")
    assert reloaded.config.step_features == FEATURES
    items = [(PROBLEM, wrong.step_texts, step_feature_values(wrong.steps, ["refuted", "refuted_so_far"]))]
    assert reloaded.score_many(items)[0] == pytest.approx([s.score for s in wrong.steps], abs=1e-6)


def test_scoring_or_training_without_verdicts_is_a_clear_error(trained):
    with pytest.raises(ValueError, match="step features"):
        trained.score(PROBLEM, ["3 + 4 = 7"])
    bare = Trace(id="x", problem=PROBLEM, steps=[Step("3 + 4 = 7", hard_label=1)])
    with pytest.raises(ValueError, match="prm check"):
        build_examples(trained, [bare])


def test_prm_train_and_score_read_verdicts_from_the_files(tmp_path):
    from prm.app.cli import main
    from prm.io import read_traces, write_traces

    backbone = str(tiny_gpt2(tmp_path / "gpt2"))
    write_traces(tmp_path / "train.jsonl", [trace(i, wrong=i % 2 == 0) for i in range(8)])
    write_traces(tmp_path / "held.jsonl", [trace(100, wrong=True), trace(101, wrong=False)])
    out = tmp_path / "model"
    assert main(["train", str(tmp_path / "train.jsonl"), "--backbone", backbone, "--out", str(out),
                 "--step_features", FEATURES, "--freeze_backbone", "--lr", "5e-3", "--epochs", "3",
                 "--batch-size", "4", "--save_strategy", "no"]) == 0
    assert main(["score", str(out), str(tmp_path / "held.jsonl"), str(tmp_path / "scored.jsonl")]) == 0
    wrong, right = read_traces(tmp_path / "scored.jsonl")
    assert all(w.score < 0.5 < r.score for w, r in zip(wrong.steps, right.steps))
