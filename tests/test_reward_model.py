"""RewardModel: one code path for PRM and ORM, round trips, batched scoring, masked loss."""

import json
import logging

import pytest
import torch

from prm.aggregate import aggregate
from prm.records import Step, Trace
from prm.reward.model import RewardModel, RewardModelOptions, step_loss
from prm.reward.training import build_examples
from helpers.reward_models import tiny_bert, tiny_gpt2

ITEMS = [
    ("Tom has 3 apples and buys 4 more. How many?", ["3 + 4 = <<3+4=7>>7", "He has 7 apples.\nDone."]),
    ("Q?", ["one"]),
    ("A longer problem " * 6, ["a", "b\nc", "", "d " * 20, "e"]),
    ("Mia reads 12 pages a day for 5 days.", ["12 * 5 = <<12*5=60>>60", "#### 60"]),
]


def assert_same_weights_and_scores(model, loaded, before):
    """A lossless round trip: every weight equal to the bit, and so the same scores. The
    scores are compared to 1e-6, not to the bit: a weight's memory alignment decides the
    order of a SIMD sum, which can change the last bit of a float."""
    weights = dict(loaded.named_parameters())
    assert weights.keys() == dict(model.named_parameters()).keys()
    assert all(torch.equal(p.detach(), weights[n].detach()) for n, p in model.named_parameters())
    assert loaded.score_many(ITEMS) == [pytest.approx(row, abs=1e-6) for row in before]


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    root = tmp_path_factory.mktemp("backbones")
    return {"gpt2": str(tiny_gpt2(root / "gpt2")), "bert": str(tiny_bert(root / "bert"))}


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_save_and_reload_give_identical_scores_and_record_how_it_was_built(backbones, kind, tmp_path):
    model = RewardModel.from_backbone(backbones[kind],
                                      RewardModelOptions(head="prm", label_type="soft", aggregation="prod"))
    before = model.score_many(ITEMS)
    model.save_pretrained(tmp_path / "rm")
    saved = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert saved["head"] == "prm" and saved["label_type"] == "soft" and saved["aggregation"] == "prod"
    assert saved["step_marker"] == "last-token" and saved["step_separator"] == "\n"
    assert saved["backbone_name"] == backbones[kind]
    assert saved["transformer_config"]["model_type"] == ("gpt2" if kind == "gpt2" else "bert")
    loaded = RewardModel.from_pretrained(tmp_path / "rm")
    assert_same_weights_and_scores(model, loaded, before)
    assert loaded.solution_score(before[0]) == pytest.approx(before[0][0] * before[0][1])


def test_special_token_marker_survives_the_round_trip(backbones, tmp_path):
    model = RewardModel.from_backbone(backbones["gpt2"], RewardModelOptions(step_marker="special-token"))
    assert model.backbone.get_input_embeddings().num_embeddings == len(model.tokenizer)
    before = model.score_many(ITEMS)
    model.save_pretrained(tmp_path / "rm")
    loaded = RewardModel.from_pretrained(tmp_path / "rm")
    assert loaded.config.marker_token == "<|step|>"
    assert_same_weights_and_scores(model, loaded, before)


@pytest.mark.parametrize("kind", ["gpt2", "bert"])
def test_score_many_equals_scoring_one_trace_at_a_time(backbones, kind):
    model = RewardModel.from_backbone(backbones[kind])
    batched = model.score_many(ITEMS, batch_size=3)
    single = [model.score(problem, steps) for problem, steps in ITEMS]
    assert [len(s) for s in batched] == [len(steps) for _, steps in ITEMS]
    for b, s in zip(batched, single):
        assert b == pytest.approx(s, abs=1e-5)


def test_orm_is_the_same_model_read_at_the_last_step(backbones):
    prm = RewardModel.from_backbone(backbones["bert"], RewardModelOptions(head="prm"))
    orm = RewardModel.from_backbone(backbones["bert"], RewardModelOptions(head="orm"))
    orm.load_state_dict(prm.state_dict())
    assert orm.config.aggregation == "last"
    problem, steps = ITEMS[0]
    scores = orm.score(problem, steps)
    assert scores == pytest.approx(prm.score(problem, steps))
    assert orm.solution_score(scores) == scores[-1]
    trace = Trace(id="t", problem=problem, steps=[Step(s, hard_label=1) for s in steps], outcome_label=0)
    examples, _ = build_examples(orm, [trace])
    assert examples[0]["labels"] == [-100.0] * (len(steps) - 1) + [0.0]  # trained on the end only


def test_steps_that_do_not_fit_get_no_score_and_a_warning(backbones, caplog):
    model = RewardModel.from_backbone(backbones["gpt2"], RewardModelOptions(max_length=40))
    problem, steps = "Q?", ["a fairly long step number %d with words" % i for i in range(6)]
    with caplog.at_level(logging.WARNING):
        scores = model.score(problem, steps)
    kept = [s for s in scores if s is not None]
    assert 0 < len(kept) < len(steps) and scores[len(kept):] == [None] * (len(steps) - len(kept))
    assert "did not fit" in caplog.text
    trace = Trace(id="t", problem=problem, steps=[Step(s, hard_label=1) for s in steps])
    model.score_traces([trace])
    assert trace.scores == scores
    examples, report = build_examples(model, [trace])
    assert report.dropped_steps == len(steps) - len(kept) and report.labeled_steps == len(kept)
    assert examples[0]["labels"] == [1.0] * len(kept) + [-2.0]  # masked marker: this trace lost steps
    assert aggregate(scores, "last") is None and aggregate(scores, "min") == min(kept)


def test_an_unknown_label_is_masked_so_flipping_it_cannot_change_the_loss(backbones):
    model = RewardModel.from_backbone(backbones["bert"])
    problem, steps = ITEMS[2]

    def loss_with(labels):
        trace = Trace(id="t", problem=problem, steps=[Step(s, hard_label=l) for s, l in zip(steps, labels)])
        example = build_examples(model, [trace])[0][0]
        logits = model(torch.tensor([example["input_ids"]]),
                       step_positions=torch.tensor([example["step_positions"]])).logits
        return step_loss(logits, torch.tensor([example["labels"]])).item(), logits[0]

    unknown, logits = loss_with([1, 0, None, 1, 0])
    as_zero, _ = loss_with([1, 0, 0, 1, 0])
    as_one, _ = loss_with([1, 0, 1, 1, 0])
    known = torch.tensor([0, 1, 3, 4])
    expected = torch.nn.functional.binary_cross_entropy_with_logits(
        logits[known], torch.tensor([1.0, 0.0, 1.0, 0.0])).item()
    assert unknown == pytest.approx(expected, rel=1e-6)
    assert unknown != pytest.approx(as_zero) and unknown != pytest.approx(as_one)


def test_soft_targets_stay_fractional_in_the_training_examples(backbones):
    model = RewardModel.from_backbone(backbones["bert"])
    trace = Trace(id="t", problem="Q?", steps=[Step("a", soft_label=0.625), Step("b", soft_label=0.999),
                                               Step("c")])
    examples, report = build_examples(model, [trace], labels="soft")
    assert examples[0]["labels"] == [0.625, 0.999, -1.0]
    assert report.unknown_masked == 1 and report.positive_rate == pytest.approx((0.625 + 0.999) / 2)


@pytest.mark.parametrize("how,expected", [("min", 0.2), ("prod", 0.9 * 0.2 * 0.5), ("last", 0.5),
                                          ("mean", (0.9 + 0.2 + 0.5) / 3)])
def test_aggregations(how, expected):
    assert aggregate([0.9, 0.2, 0.5], how) == pytest.approx(expected)


def test_lm_features_make_a_wrong_calculation_score_lower_and_survive_save_and_reload(tmp_path):
    """With lm_features the head reads tiny-gsm's token log-probabilities: before any
    training a corrupted calculator result already scores below the right one, in the
    corrupted step and in every later step."""
    import re

    from completers.world import generate_problems

    problem = next(p for p in generate_problems(20, seed=3) if len(p.steps) >= 3)
    model = RewardModel.from_backbone("tiny-gsm", RewardModelOptions(lm_features=True,
                                                                     prompt_template="Question: {problem}\nAnswer:\n"))
    right = model.score(problem.question, problem.steps)
    steps = list(problem.steps)
    steps[1] = re.sub(r"=(\d+)>>(\d+)", lambda m: f"={int(m[1]) + 7}>>{int(m[2]) + 7}", steps[1], count=1)
    assert steps[1] != problem.steps[1]
    wrong = model.score(problem.question, steps)
    assert wrong[0] == pytest.approx(right[0])
    assert all(w < r - 0.05 for w, r in zip(wrong[1:], right[1:])), (wrong, right)

    model.save_pretrained(tmp_path / "m")
    again = RewardModel.from_pretrained(tmp_path / "m")
    assert again.config.lm_features and again.score(problem.question, steps) == pytest.approx(wrong)
