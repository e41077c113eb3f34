"""The committed tiny-gsm checkpoint: loads by short name, round-trips text, writes
GSM8K-format solutions, trains reproducibly and (slow) solves 40-80% at temperature 1."""

import json
import re

import pytest

from completers.text import plain_prompt
from completers.train_tiny import TrainConfig, build_tokenizer, evaluate, generate_texts, held_out_problems, train
from completers.world import generate_problems, sample_traces
from prm.model_names import resolve_model

TEXTS = [
    "Question: Mia buys 3 pens at $4 each.\nAnswer:\nThe pens cost 3 * 4 = <<3*4=12>>12 dollars.\n#### 12\n",
    "  two  spaces, tabs\tand symbols ~!@#%^&*()_+{}|:\"<>?`-=[]\\;',./ end",
]


@pytest.fixture(scope="module")
def tiny():
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = resolve_model("tiny-gsm")
    return AutoModelForCausalLM.from_pretrained(path).eval(), AutoTokenizer.from_pretrained(path)


def test_tiny_gsm_short_name_resolves_to_a_small_committed_checkpoint():
    from pathlib import Path

    folder = Path(resolve_model("tiny-gsm"))
    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
                 "generation_config.json", "MODEL_CARD.md", "training_log.json", "evaluation.json"):
        assert (folder / name).exists(), name
    assert (folder / "model.safetensors").stat().st_size < 10_000_000


def test_tokenizer_round_trips_any_text_and_rebuilds_from_the_training_seed(tiny):
    _, tokenizer = tiny
    texts = TEXTS + ["non-ASCII: é ü 数学 →"] + [p.question + "\n" + p.solution for p in generate_problems(50, seed=11)]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        assert tokenizer.decode(ids) == text
    assert tokenizer.get_vocab() == build_tokenizer(TrainConfig()).get_vocab()
    assert tokenizer.eos_token == "<|endoftext|>" and tokenizer.pad_token == "<|pad|>"


def test_every_number_below_1000_is_one_token(tiny):
    _, tokenizer = tiny
    for number in range(1000):
        assert len(tokenizer(f"={number}>>", add_special_tokens=False)["input_ids"]) == 3, number


def test_checkpoint_writes_solutions_in_gsm8k_format(tiny):
    model, tokenizer = tiny
    problems = held_out_problems(TrainConfig(), 4)
    texts = generate_texts(model, tokenizer, [plain_prompt(p.question, []) for p in problems],
                           greedy=True, seed=0)
    for text in texts:
        lines = text.strip().split("\n")
        assert re.fullmatch(r"#### \d+", lines[-1]), text
        assert all("<<" in line and ">>" in line for line in lines[:-1]), text


def test_model_card_states_the_logged_figures():
    from pathlib import Path

    folder = Path(resolve_model("tiny-gsm"))
    card = (folder / "MODEL_CARD.md").read_text()
    log = json.loads((folder / "training_log.json").read_text())
    measured = json.loads((folder / "evaluation.json").read_text())
    assert f"{log['parameters']:,}" in card
    assert log["command"] in card
    assert f"{measured['solve_rate_t1']:.1%}" in card
    assert f"{measured['solve_rate_greedy']:.1%}" in card
    assert f"{measured['wrong_prefix_success_t1']:.1%}" in card


def test_training_is_reproducible_from_its_seed(tmp_path):
    config = TrainConfig(steps=3, batch_size=4, n_layer=1, n_embd=32, n_head=2, warmup_steps=1,
                         threads=1, log_every=1)
    first = train(config, tmp_path / "a")
    again = train(config, tmp_path / "b")
    assert [p["loss"] for p in first["loss_curve"]] == [p["loss"] for p in again["loss_curve"]]
    assert (tmp_path / "a" / "model.safetensors").read_bytes() == (tmp_path / "b" / "model.safetensors").read_bytes()


def test_sample_traces_labels_real_tiny_model_samples():
    from completers.base import SamplingParams
    from completers.transformers_completer import TransformersCompleter

    completer = TransformersCompleter(resolve_model("tiny-gsm"))
    try:
        problems = held_out_problems(TrainConfig(), 3)
        traces = sample_traces(completer, problems, 2, SamplingParams(max_new_tokens=400, seed=0))
    finally:
        completer.close()
    assert [t.id for t in traces] == [f"{p.id}-s{j}" for p in problems for j in range(2)]
    for trace in traces:
        assert trace.meta["source"] == "tiny-gsm-world"
        assert len(trace.meta["gold_labels"]) == len(trace.steps)
        assert trace.outcome_label in (0, 1)
        assert trace.meta["gold_first_error"] in range(-1, len(trace.steps))


def test_sampling_in_chunks_reuses_every_whole_chunk_when_more_problems_are_asked(tmp_path, monkeypatch):
    import completers.world
    from completers.base import SamplingParams
    from completers.transformers_completer import TransformersCompleter
    from completers.world import sample_in_chunks

    completer = TransformersCompleter("tiny-gsm")
    problems = generate_problems(5, seed=77)
    params = SamplingParams(max_new_tokens=60)
    seeds = lambda start: 1000 + start  # noqa: E731
    first = sample_in_chunks(completer, problems[:3], 2, tmp_path, params, seeds, chunk=2, split="train",
                             progress=False)
    sampled, sample = [], completers.world.sample_traces
    monkeypatch.setattr(completers.world, "sample_traces",
                        lambda c, chunk, *a, **k: sampled.append([p.id for p in chunk]) or sample(c, chunk, *a, **k))
    more = sample_in_chunks(completer, problems, 2, tmp_path, params, seeds, chunk=2, split="train", progress=False)
    # chunk [0, 2) was whole and is read back; [2, 3) was the end of the smaller run: [2, 4) and [4, 5) are sampled
    assert sampled == [[p.id for p in problems[2:4]], [problems[4].id]]
    assert [t.id for t in more] == [f"{p.id}-s{j}" for p in problems for j in range(2)]
    assert [t.step_texts for t in more[:6]] == [t.step_texts for t in first]  # a chunk's seed, whatever its size
    assert all(t.meta["split"] == "train" and t.meta["sample_cpu_seconds"] >= 0 for t in more)


@pytest.mark.slow
def test_solve_rate_at_temperature_one_is_in_the_target_band():
    result = evaluate(resolve_model("tiny-gsm"), TrainConfig(), n=200, seed=1)
    assert 0.40 <= result["solve_rate_t1"] <= 0.80, result
    assert result["wrong_prefix_success_t1"] <= 0.25, result
    assert result["right_prefix_success_t1"] > result["wrong_prefix_success_t1"] + 0.3, result
