"""Incremental prefix scoring (`StepScorer.score_prefixes`, prm.reward.prefix_cache): the
scores of prefixes scored from their parents' KV caches equal full re-scoring, on every
causal family, with tiny models built from a config; encoders keep the whole-prefix path."""

import pytest
import torch

from prm.formats.gsm8k import read_gsm8k
from prm.reward.loading import load_scorer
from prm.reward.model import RewardModel, RewardModelOptions
from helpers.reward_models import SHARED, tiny_bert, tiny_gpt2


def traces(n=3):
    return read_gsm8k(SHARED / "gsm8k" / "train.jsonl", limit=n)


def grow(scorer, problems):
    """Score every prefix of each trace depth by depth, as a search does: at each depth two
    siblings per kept prefix (the true next step, and the same step with a changed number),
    then a lookahead parent (scored with its next step too) whose child diverges inside it.
    Returns the (item, scored prefix) pairs of every call."""
    seen = []
    frontier = [((t.problem, []), None) for t in problems]
    for depth in range(max(len(t.steps) for t in problems)):
        items, parents, keep = [], [], []
        for (problem, steps), state in frontier:
            trace = next(t for t in problems if t.problem == problem)
            if depth >= len(trace.steps):
                continue
            step = trace.step_texts[depth]
            items += [(problem, steps + [step]), (problem, steps + [step.replace("1", "7") + " so"])]
            parents += [state, state]
            keep.append(len(items) - 2)
            if depth + 1 < len(trace.steps):  # a lookahead: the prefix scored with one more step
                items.append((problem, steps + [step, trace.step_texts[depth + 1]]))
                parents.append(state)
        results = scorer.score_prefixes(items, parents)
        seen += list(zip(items, results))
        frontier = [(items[i], results[i].state) for i in keep]
        # the lookahead's state as a parent: its child shares only part of its tokens
        lookahead = [(item, r.state) for item, r in zip(items, results) if len(item[1]) == depth + 2]
        if lookahead:
            (problem, steps), state = lookahead[0]
            child = (problem, steps[:-1] + ["a different next step"])
            seen += list(zip([child], scorer.score_prefixes([child], [state])))
    return seen


def assert_equal_to_full_scoring(scorer, problems, incremental=True):
    assert scorer.incremental is incremental
    seen = grow(scorer, problems)
    full = scorer.score_many([item for item, _ in seen])
    for (item, result), expected in zip(seen, full):
        assert result.scores == pytest.approx(expected, abs=2e-5), item[1]
    computed = sum(r.computed_tokens for _, r in seen)
    whole = sum(r.tokens for _, r in seen)
    if incremental:  # only new tokens run: the prompt once per problem, each step once
        assert computed <= 1.2 * sum(r.new_tokens for _, r in seen) and computed < 0.5 * whole
    else:
        assert computed == whole
    return seen


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("prefix")
    from helpers.reward_models import make_qwen_prm

    return {"gpt2": tiny_gpt2(root / "gpt2"), "gpt2-lm": tiny_gpt2(root / "gpt2-lm", lm_head=True),
            "bert": tiny_bert(root / "bert"), "qwen": make_qwen_prm(root / "Qwen2.5-Math-PRM-tiny")}


@pytest.mark.parametrize("backbone", ["gpt2", "tiny-gsm"])
def test_reward_model_prefixes_from_the_cache_equal_full_scoring(folders, backbone):
    torch.manual_seed(0)
    path = str(folders["gpt2"]) if backbone == "gpt2" else "tiny-gsm"
    model = RewardModel.from_backbone(path, RewardModelOptions(prompt_template="Question: {problem}\nAnswer:\n"))
    assert_equal_to_full_scoring(model, traces())


def test_an_encoder_reward_model_scores_prefixes_whole_with_the_same_scores(folders):
    torch.manual_seed(0)
    model = RewardModel.from_backbone(str(folders["bert"]))
    assert_equal_to_full_scoring(model, traces(2), incremental=False)


def test_lm_features_keep_the_whole_prefix_path(folders):
    model = RewardModel.from_backbone(str(folders["gpt2-lm"]), RewardModelOptions(lm_features=True))
    assert not model.incremental
    assert_equal_to_full_scoring(model, traces(2), incremental=False)


def test_math_shepherd_prefixes_from_the_cache_equal_full_scoring(folders):
    assert_equal_to_full_scoring(load_scorer(str(folders["gpt2-lm"]), family="math-shepherd"), traces())


def test_qwen_prm_prefixes_from_the_cache_equal_full_scoring(folders):
    assert_equal_to_full_scoring(load_scorer(str(folders["qwen"])), traces())


def test_token_classification_prefixes_from_the_cache_equal_full_scoring(folders, tmp_path):
    from transformers import AutoModelForTokenClassification

    folder = tiny_gpt2(tmp_path / "tokcls")
    AutoModelForTokenClassification.from_pretrained(folder, num_labels=2).save_pretrained(folder)
    assert_equal_to_full_scoring(load_scorer(str(folder), family="token-classification"), traces())
    bert = tiny_bert(tmp_path / "bert-tokcls", token_classification=True)
    assert_equal_to_full_scoring(load_scorer(str(bert), family="token-classification"), traces(2),
                                 incremental=False)


def test_skywork_prefixes_from_the_cache_equal_full_scoring(tmp_path):
    from helpers.reward_models import make_skywork_prm

    folder = make_skywork_prm(tmp_path / "Skywork-PRM-tiny")
    assert_equal_to_full_scoring(load_scorer(str(folder)), traces())


def test_rlhflow_prefixes_from_the_cache_equal_full_scoring(tmp_path):
    from helpers.reward_models import LLAMA3_TEMPLATE
    from helpers.reward_models import bpe_tokenizer
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    base = bpe_tokenizer()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, bos_token="<|begin_of_text|>",
                                        eos_token="<|eot_id|>")
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"]})
    tokenizer.chat_template = LLAMA3_TEMPLATE
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    folder = tmp_path / "Llama3.1-PRM-tiny"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert_equal_to_full_scoring(load_scorer(str(folder)), traces())


def test_steps_cut_by_max_length_get_no_score_incrementally_either(folders):
    torch.manual_seed(0)
    model = RewardModel.from_backbone(str(folders["gpt2"]), RewardModelOptions(max_length=100))
    seen = assert_equal_to_full_scoring(model, traces(2))
    assert any(None in result.scores for _, result in seen)


def test_a_lora_reward_model_prefixes_from_the_cache_equal_full_scoring(folders):
    pytest.importorskip("peft")
    torch.manual_seed(0)
    model = RewardModel.from_backbone(str(folders["gpt2"]), RewardModelOptions(lora_r=2))
    assert_equal_to_full_scoring(model, traces(2))
