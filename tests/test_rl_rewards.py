"""Process rewards for RL: the TRL reward function, dense rewards, and a real GRPOTrainer run.

The scorer is a real reward model on the tiny-gsm backbone with LM features (untrained head:
its scores already follow the LM's confidence in each step's tokens, which is what makes a
corrupted calculation score lower; see tests/test_reward_model.py).
"""

from __future__ import annotations

import re

import pytest

from completers.text import PLAIN_TEMPLATE, plain_prompt
from completers.world import generate_problems
from prm.aggregate import aggregate
from prm.reward.model import RewardModel, RewardModelOptions
from prm.reward.scorer import StepScorer
from prm.rl.dense import dense_rewards
from prm.rl.rewards import ProcessReward, outcome_reward, unscored_as_worst
from prm.rl.text import QuerySplitter, completion_text, problem_from_prompt, split_steps, step_spans


class CountingScorer(StepScorer):
    """A real scorer that records what it was asked to score (one entry per score_many call)."""

    def __init__(self, base: StepScorer):
        self.base, self.calls = base, []
        self.config = base.config  # the prompt template travels with it

    def score_many(self, items, batch_size=None, progress=False):
        self.calls.append([(p, tuple(s)) for p, s in items])
        return self.base.score_many(items, batch_size, progress)


@pytest.fixture(scope="module")
def model():
    return RewardModel.from_backbone("tiny-gsm", RewardModelOptions(lm_features=True, prompt_template=PLAIN_TEMPLATE))


@pytest.fixture(scope="module")
def problem():
    return next(p for p in generate_problems(30, seed=11) if len(p.steps) >= 3)


def corrupted(solution_steps: list[str]) -> list[str]:
    """The reference steps with the second step's calculator result off by 7."""
    steps = list(solution_steps)
    steps[1] = re.sub(r"=(\d+)>>(\d+)", lambda m: f"={int(m[1]) + 7}>>{int(m[2]) + 7}", steps[1], count=1)
    assert steps[1] != solution_steps[1]
    return steps


def test_step_splitting_and_problem_extraction():
    text = "<s>a = 1\n\n  b <<1+1=2>>2 \n#### 2</s>"
    assert split_steps(text) == ["a = 1", "b <<1+1=2>>2"]
    for step, end in step_spans(text):
        assert text[:end].endswith(step)
    assert split_steps("x\n\ny\n#### 3", "\n\n") == ["x", "y"]
    assert split_steps("") == [] and split_steps("#### 5") == []
    assert problem_from_prompt(plain_prompt("How many pens?", []), PLAIN_TEMPLATE) == "How many pens?"
    assert problem_from_prompt([{"role": "system", "content": "be brief"},
                                {"role": "user", "content": "What is 2+2?"}]) == "What is 2+2?"
    chatml = "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nWhat is 3+4?<|im_end|>\n<|im_start|>assistant\n"
    assert problem_from_prompt(chatml) == "What is 3+4?"
    assert completion_text([{"role": "assistant", "content": "7\n#### 7"}]) == "7\n#### 7"
    assert completion_text([{"role": "assistant", "content": [{"type": "text", "text": "ok"}]}]) == "ok"


def test_query_splitting_with_and_without_prompts():
    splitter = QuerySplitter(PLAIN_TEMPLATE)
    prompt = plain_prompt("How many pens?", [])
    query = "<|endoftext|>" + prompt + "2 * 3 = <<2*3=6>>6\n#### 6<|endoftext|>"
    assert splitter.split(query) == ("How many pens?", "2 * 3 = <<2*3=6>>6\n#### 6")
    assert splitter.split(query, prompt) == ("How many pens?", "2 * 3 = <<2*3=6>>6\n#### 6")
    chat = ("<|im_start|>user\nWhat is 3+4?<|im_end|>\n<|im_start|>assistant\n3 + 4 = 7\n#### 7<|im_end|>")
    assert QuerySplitter().split(chat) == ("What is 3+4?", "3 + 4 = 7\n#### 7")
    assert QuerySplitter(markers=("A:",)).split("Q: hi A: there") == ("Q: hi A:", " there")
    with pytest.raises(ValueError, match="does not contain its prompt"):
        splitter.split(query, "another prompt")
    with pytest.raises(ValueError, match="cannot tell where the response starts"):
        QuerySplitter().split("no marker at all")


def test_process_reward_prefers_right_steps_and_combines_parts(model, problem):
    scorer = CountingScorer(model)
    reward = ProcessReward(scorer, aggregation="min", outcome_weight=1.0, format_penalty=0.5)
    prompt = plain_prompt(problem.question, [])
    right = problem.solution
    wrong_step = "\n".join(corrupted(problem.steps) + [f"#### {problem.answer}"])
    wrong_answer = "\n".join(problem.steps + [f"#### {problem.answer + 1}"])
    no_answer = "\n".join(problem.steps)
    texts = [right, wrong_step, wrong_answer, no_answer, right]
    rewards = reward([prompt] * 5, texts, answer=[str(problem.answer)] * 5)
    parts = reward.evaluate([problem.question] * 5, texts, [str(problem.answer)] * 5)
    assert [p.outcome for p in parts] == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert parts[1].process < parts[0].process / 10  # the corrupted step is seen (untrained head: small scores)
    assert parts[2].process == pytest.approx(parts[0].process)  # same steps, answer line is not a step
    assert rewards[0] == pytest.approx(parts[0].process + 1.0)
    assert rewards[2] == pytest.approx(parts[2].process)
    assert rewards[3] == pytest.approx(parts[3].process - 0.5)  # no final answer: format penalty
    assert rewards[4] == rewards[0]
    # the problem was read out of the prompt with the model's own template, and every distinct
    # (problem, steps) pair was scored once: the duplicate and the second call hit the cache
    assert len(scorer.calls) == 1
    assert sorted(scorer.calls[0]) == sorted({(problem.question, tuple(split_steps(t))) for t in texts})
    for how in ("min", "prod", "last", "mean"):
        value = ProcessReward(model, aggregation=how)([prompt], [wrong_step])[0]
        assert value == pytest.approx(aggregate(parts[1].step_scores, how))
    with pytest.raises(ValueError, match="no 'answer' column"):
        reward([prompt], [right])


def test_conversational_completions_and_outcome_only(model, problem):
    reward = ProcessReward(model)
    plain = reward([plain_prompt(problem.question, [])], [problem.solution])
    chat = reward([[{"role": "user", "content": problem.question}]],
                  [[{"role": "assistant", "content": problem.solution}]])
    assert chat == pytest.approx(plain)
    outcome = outcome_reward()
    assert outcome(["p", "p"], [f"x\n#### {problem.answer}", "x\n#### -1"],
                   answer=[str(problem.answer)] * 2) == [1.0, 0.0]
    empty = reward(["Question: q\nAnswer:\n"], [""])
    assert empty == [0.0]  # no step: empty_score


def test_steps_past_max_length_count_as_the_worst_step_in_trl_s_path(model, problem):
    """`ProcessReward` called as TRL calls it: a wrong step hidden behind filler, past the
    scorer's max_length, counts as the worst step (0), as on the reward server
    (tests/test_rl_server.py checks both paths agree); it cannot raise a reward."""
    prompt = plain_prompt(problem.question, [])
    honest = "\n".join(problem.steps + [f"#### {problem.answer}"])
    hidden = "\n".join(problem.steps[:-1] + [problem.steps[0]] * 60  # far past max_length (512)
                       + [problem.steps[-1] + " plus 7 is 1000", f"#### {problem.answer}"])
    for how in ("min", "prod", "last", "mean"):
        reward = ProcessReward(model, aggregation=how)
        [honest_part, hidden_part] = reward.evaluate([problem.question] * 2, [honest, hidden])
        assert honest_part.unscored_steps == 0 and hidden_part.unscored_steps > 0
        assert hidden_part.step_scores[-1] is None
        expected = aggregate(unscored_as_worst(hidden_part.step_scores), how)
        assert reward([prompt], [hidden]) == [pytest.approx(expected)]
        if how != "mean":
            assert expected == 0.0  # the unscored steps are the worst ones
        else:  # each unscored step pulls the mean down
            assert expected < aggregate(hidden_part.step_scores, "mean")


def test_dense_rewards_put_each_score_on_the_step_end_token(model, problem):
    tokenizer = model.tokenizer
    response = problem.solution
    ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    by_ids = dense_rewards(model, tokenizer, [problem.question], response_ids=[ids])[0]
    by_text = dense_rewards(model, tokenizer, [problem.question], [response])[0]
    assert by_ids.steps == problem.steps == by_text.steps
    assert by_ids.scores == pytest.approx(model.score(problem.question, problem.steps))
    assert by_ids.end_tokens == by_text.end_tokens
    for step, token in zip(problem.steps, by_ids.end_tokens):
        assert tokenizer.decode(ids[:token + 1]).endswith(step)
        assert not tokenizer.decode(ids[:token]).endswith(step)
    rewards = by_ids.token_rewards(len(ids), outcome=1.0)
    assert len(rewards) == len(ids)
    for token, score in zip(by_ids.end_tokens, by_ids.scores):
        assert rewards[token] == pytest.approx(score + (1.0 if token == len(ids) - 1 else 0.0))
    assert rewards[-1] == pytest.approx(1.0)  # the eos token holds the outcome only
    assert sum(1 for r in rewards if r != 0.0) == len(problem.steps) + 1


def test_grpo_trainer_trains_on_the_process_reward(model, tmp_path):
    """A real TRL GRPOTrainer run: the rewards it logs are the ones the process reward gave the
    completions it sampled, and they differ between completions."""
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import GRPOConfig, GRPOTrainer

    from prm.model_names import resolve_model

    seen: list[tuple[str, float]] = []

    class Recording(ProcessReward):
        def __call__(self, prompts, completions, **kwargs):
            rewards = super().__call__(prompts, completions, **kwargs)
            seen.extend(zip(completions, rewards))
            return rewards

    problems = generate_problems(8, seed=21)
    data = Dataset.from_list([{"prompt": plain_prompt(p.question, []), "answer": str(p.answer)} for p in problems])
    reward = Recording(model, aggregation="min", outcome_weight=1.0)
    path = resolve_model("tiny-gsm")
    tokenizer = AutoTokenizer.from_pretrained(path)
    args = GRPOConfig(output_dir=str(tmp_path), max_steps=3, per_device_train_batch_size=8, num_generations=4,
                      max_completion_length=120, learning_rate=1e-3, beta=0.0, logging_steps=1, report_to=[],
                      save_strategy="no", use_cpu=True, seed=0, disable_tqdm=True)
    trainer = GRPOTrainer(model=AutoModelForCausalLM.from_pretrained(path), reward_funcs=reward, args=args,
                          train_dataset=data, processing_class=tokenizer)
    before = [p.detach().clone() for p in trainer.model.parameters()]
    trainer.train()

    logs = [h for h in trainer.state.log_history if "rewards/process_reward/mean" in h]
    assert len(logs) == 3 and len(seen) == 24
    for step, log in enumerate(logs):
        batch = [r for _, r in seen[8 * step:8 * step + 8]]
        assert log["rewards/process_reward/mean"] == pytest.approx(sum(batch) / 8, abs=1e-5)
        assert "process_reward/process" in log and "process_reward/outcome" in log
    texts = {}
    for text, value in seen:  # the same completion always gets the same reward...
        assert texts.setdefault(text, value) == pytest.approx(value)
    assert len(set(texts.values())) > 1  # ...and different completions different ones
    assert reward.score_calls <= 3  # one scoring call per step at most
    assert any(not p.detach().equal(b) for p, b in zip(trainer.model.parameters(), before))
