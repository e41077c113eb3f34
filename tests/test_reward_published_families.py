"""Qwen2.5-Math-PRM, Skywork-PRM and RLHFlow scorers against each family's own usage code.

The checkpoints are not downloadable here, so for each family a tiny randomly initialised
model is saved in exactly that family's layout: its config (architectures, auto_map), its
weight names (written with safetensors by hand, not by our model classes), and a tokenizer
with the family's special tokens and chat template. The expected scores come from a direct
forward pass written in the test the way each family's model card / evaluation code reads
them (transformers' plain Qwen2Model / LlamaForCausalLM and the head weights from the file).
"""

import pytest
import torch
from safetensors.torch import load_file, save_file
from helpers.reward_models import (LLAMA3_TEMPLATE, SHARED, bpe_tokenizer, make_qwen_prm, qwen_tokenizer,
                                   save_qwen2_checkpoint, tiny_gpt2)

from prm.formats.gsm8k import read_gsm8k
from prm.reward.loading import detect_family, load_scorer
from prm.reward.published.qwen_prm import QwenPRMScorer
from prm.reward.published.rlhflow import RLHFlowScorer
from prm.reward.published.skywork import SkyworkPRMScorer

def traces(n=4):
    return read_gsm8k(SHARED / "gsm8k" / "train.jsonl", limit=n)


def backbone_hidden(folder, ids):
    """The last hidden states of a plain transformers Qwen2Model holding the file's `model.*` weights."""
    from transformers import Qwen2Config, Qwen2Model

    config = Qwen2Config.from_pretrained(folder)
    model = Qwen2Model(config).eval()
    weights = load_file(str(folder / "model.safetensors"))
    model.load_state_dict({k[len("model."):]: v for k, v in weights.items() if k.startswith("model.")})
    with torch.no_grad():
        return model(torch.tensor([ids])).last_hidden_state[0], weights


# --- Qwen2.5-Math-PRM ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def qwen_prm_folder(tmp_path_factory):
    return make_qwen_prm(tmp_path_factory.mktemp("qwen") / "Qwen2.5-Math-PRM-tiny")


def qwen_reference(folder, problem, steps):
    """The model card's recipe: chat with <extra_0> after each step, class-1 probability there."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    system = "Please reason step by step, and put your final answer within \\boxed{}."
    messages = [{"role": "system", "content": system},
                {"role": "user", "content": problem},
                {"role": "assistant", "content": "<extra_0>".join(steps) + "<extra_0>"}]
    text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    ids = tokenizer.encode(text)
    separator = tokenizer.encode("<extra_0>")[0]
    hidden, w = backbone_hidden(folder, ids)
    first = torch.relu(hidden @ w["score.0.weight"].T + w["score.0.bias"])
    probs = (first @ w["score.2.weight"].T + w["score.2.bias"]).softmax(-1)[:, 1]
    return probs[torch.tensor(ids) == separator].tolist()


def test_qwen_prm_scores_match_the_model_card_recipe(qwen_prm_folder):
    scorer = load_scorer(str(qwen_prm_folder))
    assert isinstance(scorer, QwenPRMScorer) and detect_family(str(qwen_prm_folder)) == "qwen-prm"
    items = [(t.problem, t.step_texts) for t in traces()]
    batched = scorer.score_many(items, batch_size=3)
    for (problem, steps), scores in zip(items, batched):
        assert scores == pytest.approx(qwen_reference(qwen_prm_folder, problem, steps), abs=1e-5)
    assert len({round(s, 6) for row in batched for s in row}) > 3  # not a constant


def test_qwen_prm_refuses_weights_in_another_layout(qwen_prm_folder, tmp_path):
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(qwen_prm_folder, broken)
    weights = load_file(str(broken / "model.safetensors"))
    weights = {k.replace("score.2.", "score.1."): v for k, v in weights.items()}
    save_file(weights, str(broken / "model.safetensors"), metadata={"format": "pt"})
    with pytest.raises(ValueError, match="score.2.weight"):
        load_scorer(str(broken))


def test_qwen_prm_steps_beyond_max_length_get_no_score(qwen_prm_folder):
    trace = traces(1)[0]
    full = QwenPRMScorer.from_pretrained(str(qwen_prm_folder))
    positions = full._encode_many([(trace.problem, trace.step_texts)])[0].step_positions
    cut = QwenPRMScorer.from_pretrained(str(qwen_prm_folder), max_length=positions[0] + 1)
    scores = cut.score(trace.problem, trace.step_texts)
    assert scores[0] == pytest.approx(full.score(trace.problem, trace.step_texts)[0], abs=1e-6)
    assert scores[1:] == [None] * (len(trace.steps) - 1)


# --- Skywork-PRM -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def skywork_folder(tmp_path_factory):
    tokenizer = qwen_tokenizer([])
    tokenizer.bos_token = "<|endoftext|>"
    torch.manual_seed(2)
    head = {"v_head.summary.weight": torch.randn(1, 32) * 0.5, "v_head.summary.bias": torch.randn(1) * 0.1}
    return save_qwen2_checkpoint(tmp_path_factory.mktemp("skywork") / "Skywork-PRM-tiny", tokenizer,
                                 "Qwen2ForPrmModel", head,
                                 {"AutoModel": "modeling_qwen2_prm.Qwen2ForPrmModel"})


def skywork_reference(folder, problem, steps):
    """skywork-o1-prm-inference's prepare_input + sigmoid of the value head at the reward flags."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    ids = tokenizer.encode(tokenizer.bos_token + problem + "\n")
    flags = [0] * len(ids)
    newline = tokenizer.encode("\n")[-1]
    for step in "\n".join(steps).split("\n"):
        piece = (tokenizer.encode(step) if step != "" else []) + [newline]
        ids += piece
        flags += [0] * (len(piece) - 1) + [1]
    hidden, w = backbone_hidden(folder, ids)
    values = torch.sigmoid(hidden @ w["v_head.summary.weight"][0] + w["v_head.summary.bias"][0])
    return values[torch.tensor(flags) == 1].tolist()


def test_skywork_scores_match_the_authors_prepare_input(skywork_folder):
    scorer = load_scorer(str(skywork_folder))
    assert isinstance(scorer, SkyworkPRMScorer) and detect_family(str(skywork_folder)) == "skywork"
    items = [(t.problem, t.step_texts) for t in traces()]
    assert all("\n" not in s for _, steps in items for s in steps)
    for (problem, steps), scores in zip(items, scorer.score_many(items, batch_size=2)):
        assert scores == pytest.approx(skywork_reference(skywork_folder, problem, steps), abs=1e-5)


# --- RLHFlow -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def rlhflow_folder(tmp_path_factory):
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    base = bpe_tokenizer()
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=base.backend_tokenizer, bos_token="<|begin_of_text|>",
                                        eos_token="<|eot_id|>")
    tokenizer.add_special_tokens({"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>",
                                  "additional_special_tokens": ["<|start_header_id|>", "<|end_header_id|>"]})
    tokenizer.chat_template = LLAMA3_TEMPLATE
    torch.manual_seed(3)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    folder = tmp_path_factory.mktemp("rlhflow") / "Llama3.1-PRM-tiny"
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


def rlhflow_reference(folder, problem, steps):
    """RLHFlow's prm_evaluate.py: one chat per step prefix, softmax over +/- at position -3."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder).eval()
    candidates = [tokenizer.encode("+", add_special_tokens=False)[-1],
                  tokenizer.encode("-", add_special_tokens=False)[-1]]
    conversation, scores = [], []
    for k, step in enumerate(s.strip() for s in steps):
        conversation.append({"content": problem + " " + step if k == 0 else step, "role": "user"})
        conversation.append({"content": "+", "role": "assistant"})
        ids = tokenizer.apply_chat_template(conversation, return_tensors="pt", return_dict=False)
        ids = ids if isinstance(ids, torch.Tensor) else torch.tensor([ids])
        if ids.dim() == 1:
            ids = ids[None]
        assert ids[0, -2].item() == candidates[0]  # -3 is the position that predicts the "+"
        with torch.no_grad():
            logits = model(ids).logits[:, -3, candidates]
        scores.append(logits.softmax(dim=-1)[0, 0].item())
    return scores


def test_rlhflow_scores_match_the_authors_per_prefix_evaluation(rlhflow_folder):
    scorer = load_scorer(str(rlhflow_folder))
    assert isinstance(scorer, RLHFlowScorer) and detect_family(str(rlhflow_folder)) == "rlhflow"
    assert scorer.aggregation == "mean"
    items = [(t.problem, t.step_texts) for t in traces(3)]
    for (problem, steps), scores in zip(items, scorer.score_many(items, batch_size=2)):
        assert scores == pytest.approx(rlhflow_reference(rlhflow_folder, problem, steps), abs=1e-5)


def test_a_causal_lm_without_chat_template_is_math_shepherd(tmp_path):
    folder = tiny_gpt2(tmp_path / "lm", lm_head=True)
    assert detect_family(str(folder)) == "math-shepherd"
    with pytest.raises(ValueError, match="family must be"):
        load_scorer(str(folder), family="nope")


def test_a_hub_name_is_opened_from_the_hub_cache(qwen_prm_folder, tmp_path, monkeypatch):
    """Loading by hub name is the real hub code path: here offline, from a hub cache laid out
    as huggingface_hub writes it (refs/main -> snapshots/<commit>/files)."""
    import shutil

    import huggingface_hub.constants

    cache = tmp_path / "hub"
    commit = "0" * 40
    repo = cache / "models--someone--tiny-qwen-prm"
    shutil.copytree(qwen_prm_folder, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))
    assert detect_family("someone/tiny-qwen-prm") == "qwen-prm"
    scorer = load_scorer("someone/tiny-qwen-prm")
    trace = traces(1)[0]
    assert scorer.score(trace.problem, trace.step_texts) == pytest.approx(
        qwen_reference(qwen_prm_folder, trace.problem, trace.step_texts), abs=1e-5)
    with pytest.raises(FileNotFoundError, match="hub cache"):
        detect_family("someone/not-cached")
