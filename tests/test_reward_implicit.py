"""Implicit PRMs (head="implicit"): trained on outcome labels only, saved, reloaded, and used
through every StepScorer consumer (load_scorer, prm train/score/eval/search/serve-reward,
ProcessReward, token-level dense rewards)."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys
import urllib.request

import pytest
import torch

from completers.text import PLAIN_TEMPLATE, plain_prompt
from completers.world import generate_problems, trace_from_sample
from prm.app.cli import main
from prm.io import read_traces, write_traces
from prm.reward.implicit import running_values, step_rewards, token_log_ratios
from prm.reward.loading import load_scorer
from prm.reward.model import RewardModel, RewardModelOptions
from prm.reward.training import RewardTrainer, RewardTrainerConfig, preference_pairs, build_examples
from prm.rl.dense import dense_rewards
from prm.rl.rewards import ProcessReward
from helpers.reward_models import tiny_gpt2


def wrong_copy(problem, index: str):
    """The reference solution with its last calculation's result off by 7: a wrong outcome."""
    steps = problem.solution.split("\n")
    last = max(i for i, s in enumerate(steps) if "<<" in s)
    result = re.search(r">>(-?\d+)", steps[last]).group(1)
    wrong = str(int(result) + 7)
    steps[last] = steps[last].replace(f">>{result}", f">>{wrong}").rsplit(result, 1)[0] + wrong + \
        steps[last].rsplit(result, 1)[1]
    steps[-1] = f"#### {wrong}" if steps[-1].startswith("####") else steps[-1]
    return trace_from_sample(problem, "\n".join(steps), index)


def world_traces(n: int, seed: int):
    """For each of n world problems: its right solution and a wrong copy (outcome labels 1 / 0)."""
    traces = []
    for problem in generate_problems(n, seed=seed):
        traces.append(trace_from_sample(problem, problem.solution, problem.id + "-right"))
        traces.append(wrong_copy(problem, problem.id + "-wrong"))
    for trace in traces:  # outcome labels only: no step label reaches the trainer
        for step in trace.steps:
            step.hard_label, step.label_source = None, None
    return traces


def train_args(tmp_path, **overrides):
    settings = dict(num_train_epochs=4, learning_rate=2e-3, per_device_train_batch_size=8, logging_steps=5, seed=0)
    return RewardTrainerConfig.in_memory(tmp_path, **{**settings, **overrides})


OPTIONS = dict(head="implicit", prompt_template=PLAIN_TEMPLATE, beta=0.5)


@pytest.fixture(scope="module")
def data():
    return world_traces(16, seed=3)


@pytest.fixture(scope="module")
def trained(data, tmp_path_factory):
    """tiny-gsm trained as an implicit PRM with cross-entropy on the outcome labels."""
    trainer = RewardTrainer("tiny-gsm", train_args(tmp_path_factory.mktemp("ce")), train_traces=data,
                            model_options=RewardModelOptions(**OPTIONS))
    trainer.train()
    return trainer.model


def final_scores(model, traces):
    return [scores[-1] for scores in model.score_many([(t.problem, t.step_texts) for t in traces])]


def test_outcome_labels_alone_teach_it_to_rank_right_above_wrong(trained, data):
    untrained = RewardModel.from_backbone("tiny-gsm", RewardModelOptions(**OPTIONS))
    assert final_scores(untrained, data[:4]) == pytest.approx([0.5] * 4)  # pi_theta = pi_ref: q_t = 0
    scores = final_scores(trained, data)
    right, wrong = scores[0::2], scores[1::2]
    assert sum(r > w for r, w in zip(right, wrong)) >= 14  # of 16 training problems
    held_out = world_traces(8, seed=99)
    scores = final_scores(trained, held_out)
    assert sum(r > w for r, w in zip(scores[0::2], scores[1::2])) >= 6


def test_step_scores_are_sigmoid_of_running_values_of_the_token_log_ratios(trained, data):
    trace = data[1]
    encoded = trained.step_tokenizer.encode(trace.problem, trace.step_texts)
    ids = torch.tensor([encoded.input_ids])
    positions = torch.tensor([encoded.step_positions])
    with torch.no_grad():
        ratios = token_log_ratios(trained.backbone(ids).logits, trained.reference(ids).logits, ids,
                                  torch.tensor([encoded.answer_start]))
    values = running_values(ratios, positions, trained.config.beta)[0]
    by_hand = [0.5 * float(ratios[0, encoded.answer_start:end + 1].sum()) for end in encoded.step_positions]
    assert values.tolist() == pytest.approx(by_hand, abs=1e-5)
    assert trained.score(trace.problem, trace.step_texts) == pytest.approx(
        [1 / (1 + math.exp(-v)) for v in by_hand], abs=1e-5)
    rewards = step_rewards(values.unsqueeze(0))[0]
    assert float(rewards.sum()) == pytest.approx(by_hand[-1], abs=1e-5)


def test_save_reload_gives_equal_scores_and_the_config_records_beta_and_reference(trained, data, tmp_path):
    before = trained.score_many([(t.problem, t.step_texts) for t in data[:6]])
    trained.save_pretrained(tmp_path / "implicit")
    saved = json.loads((tmp_path / "implicit" / "config.json").read_text())
    assert saved["head"] == "implicit" and saved["beta"] == 0.5 and saved["reference"] is None
    assert saved["backbone_name"] == "tiny-gsm" and saved["implicit_loss"] == "ce"
    loaded = load_scorer(str(tmp_path / "implicit"))
    assert isinstance(loaded, RewardModel) and loaded.config.head == "implicit"
    assert loaded.score_many([(t.problem, t.step_texts) for t in data[:6]]) == \
        [pytest.approx(row, abs=1e-6) for row in before]
    # the reference was frozen: still tiny-gsm's own weights
    original = RewardModel.from_backbone("tiny-gsm", RewardModelOptions(**OPTIONS)).reference
    assert all(torch.equal(a, b) for a, b in zip(original.state_dict().values(),
                                                  loaded.reference.state_dict().values()))


def test_dpo_pairs_right_and_wrong_solutions_of_the_same_problem_and_learns(data, tmp_path):
    model = RewardModel.from_backbone("tiny-gsm", RewardModelOptions(**OPTIONS, implicit_loss="dpo"))
    examples, _ = build_examples(model, data)
    pairs = preference_pairs(examples)
    assert len(pairs) == 16
    assert all(p["problem"] == p["rejected"]["problem"] and max(p["labels"]) == 1 and
               max(p["rejected"]["labels"]) == 0 for p in pairs)
    trainer = RewardTrainer(model, train_args(tmp_path), train_traces=data)
    trainer.train()
    scores = final_scores(trainer.model, data)
    assert sum(r > w for r, w in zip(scores[0::2], scores[1::2])) >= 14


def test_another_reference_model_and_lora_round_trip(tmp_path):
    backbone = tiny_gpt2(tmp_path / "policy", seed=0, lm_head=True)
    reference = tiny_gpt2(tmp_path / "reference", seed=1, lm_head=True)
    traces = world_traces(4, seed=5)
    options = RewardModelOptions(head="implicit", reference=str(reference), beta=1.0, lora_r=4,
                                 lora_target_modules="c_attn")
    trainer = RewardTrainer(str(backbone), train_args(tmp_path / "run", num_train_epochs=1), train_traces=traces,
                            model_options=options)
    trained = [n for n, p in trainer.model.named_parameters() if p.requires_grad]
    assert trained and all("lora" in n for n in trained)  # only the adapters learn; pi_ref never
    trainer.train()
    model = trainer.model
    items = [(t.problem, t.step_texts) for t in traces]
    before = model.score_many(items)
    model.save_pretrained(tmp_path / "saved")
    saved = json.loads((tmp_path / "saved" / "config.json").read_text())
    assert saved["reference"] == str(reference) and saved["reference_config"]["model_type"] == "gpt2"
    assert RewardModel.from_pretrained(tmp_path / "saved").score_many(items) == \
        [pytest.approx(row, abs=1e-6) for row in before]
    assert model.merge_lora().score_many(items) == [pytest.approx(row, abs=1e-5) for row in before]


def test_a_reference_with_another_vocabulary_is_refused(tmp_path):
    backbone = tiny_gpt2(tmp_path / "policy", lm_head=True)
    with pytest.raises(ValueError, match="tokenizer"):
        RewardModel.from_backbone(str(backbone), RewardModelOptions(head="implicit", reference="tiny-gsm"))


def test_prm_train_implicit_then_score_eval_and_search(tmp_path, capsys):
    traces = world_traces(10, seed=7)
    data = tmp_path / "train.jsonl"
    write_traces(data, traces)
    out = tmp_path / "implicit"
    assert main(["train", str(data), "--backbone", "tiny-gsm", "--head", "implicit", "--loss", "dpo",
                 "--beta", "0.3", "--reference", "tiny-gsm", "--prompt_template", "Question: {problem}\\nAnswer:\\n",
                 "--out", str(out), "--epochs", "1", "--lr", "1e-3", "--batch-size", "8"]) == 0
    saved = json.loads((out / "config.json").read_text())
    assert (saved["head"], saved["beta"], saved["implicit_loss"], saved["reference"]) == \
        ("implicit", 0.3, "dpo", "tiny-gsm")
    model = RewardModel.from_pretrained(out)
    scored = tmp_path / "scored.jsonl"
    assert main(["score", str(out), str(data), str(scored)]) == 0
    expected = model.score_many([(t.problem, t.step_texts) for t in traces])
    assert [t.scores for t in read_traces(scored)] == [pytest.approx(row, abs=1e-6) for row in expected]
    assert main(["eval", str(out), "--data", str(data), "--threshold", "0.5", "--out", str(tmp_path / "report"),
                 "--n", "1", "2", "--repeats", "4"]) == 0
    metrics = json.loads((tmp_path / "report" / "metrics.json").read_text())
    assert "prm_min" in metrics["best_of_n"]["methods"]
    problems = tmp_path / "problems.jsonl"
    write_traces(problems, traces[:4:2])
    searched = tmp_path / "searched.jsonl"
    assert main(["search", str(problems), str(searched), "--strategy", "beam", "--budget", "2x",
                 "--scorer", str(out), "--step-tokens", "40", "--tokens-per-solution", "70", "--no-progress"]) == 0
    assert len(read_traces(searched)) == 2


def test_process_reward_and_token_level_dense_rewards(trained):
    problem = generate_problems(1, seed=41)[0]
    tokenizer = trained.tokenizer
    prompt = plain_prompt(problem.question, [])
    reward = ProcessReward(trained, aggregation="min")
    assert reward([prompt], [problem.solution])[0] == pytest.approx(
        min(trained.score(problem.question, problem.steps)), abs=1e-6)
    ids = tokenizer(problem.solution, add_special_tokens=False)["input_ids"]
    for dense in (dense_rewards(trained, tokenizer, [problem.question], response_ids=[ids])[0],
                  dense_rewards(trained, tokenizer, [problem.question], [problem.solution])[0]):
        assert dense.steps == problem.steps and dense.token_values is not None
        per_token = dense.token_rewards(len(ids))
        # every step's token rewards land on that step's tokens and sum to its step reward
        encoded = trained.step_tokenizer.encode(problem.question, problem.steps)
        inputs = {"input_ids": torch.tensor([encoded.input_ids]), "step_positions": torch.tensor(
            [encoded.step_positions]), "answer_start": torch.tensor([encoded.answer_start])}
        with torch.no_grad():
            expected = step_rewards(trained(**inputs).logits)[0].tolist()
        starts = [0] + [end + 1 for end in dense.end_tokens[:-1]]
        got = [sum(per_token[a:b + 1]) for a, b in zip(starts, dense.end_tokens)]
        assert got == pytest.approx(expected, abs=1e-4)
        assert sum(per_token) == pytest.approx(sum(expected), abs=1e-4)
    step_level = dense_rewards(trained, tokenizer, [problem.question], [problem.solution], token_level=False)[0]
    assert step_level.token_values is None


def test_prm_serve_reward_serves_an_implicit_prm(trained, tmp_path):
    folder = tmp_path / "implicit"
    trained.save_pretrained(str(folder))
    process = subprocess.Popen([sys.executable, "-m", "prm.app.cli", "serve-reward", str(folder), "--port", "0",
                                "--threads", "1", "--device", "cpu"],
                               stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        line = process.stdout.readline()
        url = re.search(r"(http://\S+)/get_reward", line).group(1)
        problem = generate_problems(1, seed=42)[0]
        prompt = plain_prompt(problem.question, [])
        body = json.dumps({"query": [prompt + problem.solution + "<|endoftext|>"], "prompts": [prompt]}).encode()
        request = urllib.request.Request(url + "/get_reward", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=60) as response:
            rewards = json.loads(response.read())["rewards"]
        assert rewards == pytest.approx([min(trained.score(problem.question, problem.steps))], rel=1e-4)
    finally:
        process.terminate()
        process.wait(timeout=30)
