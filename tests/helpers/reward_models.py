"""Tiny backbones, published-PRM layouts and data for the tests (builders, no tests).

Every model is built from a small config (2 layers, width 32) so that a test trains it in
seconds; the tokenizers are real: a byte-level BPE (the GPT-2 scheme) trained here on GSM8K
text, and MiniLM's WordPiece vocabulary (BERT's scheme, lowercasing, drops newlines).
`make_qwen_prm` and `save_qwen2_checkpoint` save a tiny model in a published family's own
layout (config, weight names, tokenizer and chat template), written by hand with safetensors.
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import torch
from safetensors.torch import save_file

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


@functools.lru_cache(maxsize=None)
def _bpe_tokenizer_json(vocab_size: int) -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    texts = []
    with open(SHARED / "gsm8k" / "train.jsonl", encoding="utf-8") as handle:
        for _, line in zip(range(1500), handle):
            row = json.loads(line)
            texts.append(row["question"] + "\n" + row["answer"])
    with open(SHARED / "samples" / "math-shepherd.sample.jsonl", encoding="utf-8") as handle:
        texts += [json.loads(line)["input"] for line in handle] * 20  # so that " ки" is one token
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=["<|endoftext|>"],
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return tokenizer.to_str()


def bpe_tokenizer(vocab_size: int = 1200):
    """A GPT-2-style byte-level BPE tokenizer (no pad token, like GPT-2)."""
    from tokenizers import Tokenizer
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast(tokenizer_object=Tokenizer.from_str(_bpe_tokenizer_json(vocab_size)),
                             bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                             unk_token="<|endoftext|>")


def bert_tokenizer():
    """MiniLM's BERT WordPiece tokenizer (uncased)."""
    from transformers import AutoTokenizer

    from prm.model_names import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("minilm-l6"))


def tiny_gpt2(folder: Path, seed: int = 0, lm_head: bool = False) -> Path:
    """A 2-layer GPT-2 (causal LM) with the BPE tokenizer, saved in HF format."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2Model

    torch.manual_seed(seed)
    tokenizer = bpe_tokenizer()
    config = GPT2Config(vocab_size=len(tokenizer), n_positions=256, n_embd=32, n_layer=2, n_head=2,
                        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id)
    model = (GPT2LMHeadModel if lm_head else GPT2Model)(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def tiny_bert(folder: Path, seed: int = 0, token_classification: bool = False) -> Path:
    """A 2-layer BERT encoder with MiniLM's WordPiece tokenizer, saved in HF format."""
    from transformers import BertConfig, BertForTokenClassification, BertModel

    torch.manual_seed(seed)
    tokenizer = bert_tokenizer()
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=256, num_labels=2)
    model = BertForTokenClassification(config) if token_classification else BertModel(config)
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return Path(folder)


def gsm8k_with_errors(n_problems: int, seed: int = 0, start: int = 0):
    """Real GSM8K train traces (all steps good) and a corrupted copy of each (one calculator
    result changed: that step and all later ones bad), through prm.formats.gsm8k."""
    from prm.formats.gsm8k import inject_calculator_error, read_gsm8k

    rng = random.Random(seed)
    traces = read_gsm8k(SHARED / "gsm8k" / "train.jsonl", limit=start + n_problems)[start:]
    out = []
    for trace in traces:
        out.append(trace)
        bad = inject_calculator_error(trace, rng)
        if bad is not None:
            out.append(bad)
    return out



def processbench_folder(folder: Path, per_subset: int = 5) -> Path:
    """Two subsets in ProcessBench's release layout (one JSON array each): real GSM8K solutions
    and copies with one calculator result changed (the first error is that step)."""
    from prm.formats.processbench import write_processbench

    folder.mkdir(parents=True, exist_ok=True)
    for subset, start in (("gsm8k", 0), ("math", 40)):
        traces = gsm8k_with_errors(per_subset, seed=1, start=start)
        for trace in traces:
            trace.id = f"{subset}-{trace.id}"
        write_processbench(folder / f"{subset}.json", traces)
    return folder

# -- published PRM layouts ---------------------------------------------------------------

QWEN_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>system\\nPlease reason step by step, and put your final answer within \\\\boxed{}.<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>' + '\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}")
LLAMA3_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{%- endif %}")


def qwen_tokenizer(extra_specials):
    from transformers import Qwen2Tokenizer

    base = bpe_tokenizer()
    tokenizer = Qwen2Tokenizer(tokenizer_object=base.backend_tokenizer, eos_token="<|endoftext|>",
                               pad_token="<|endoftext|>", unk_token=None, bos_token=None)
    tokenizer.add_special_tokens({"additional_special_tokens": ["<|im_start|>", "<|im_end|>", *extra_specials]})
    tokenizer.chat_template = QWEN_TEMPLATE
    return tokenizer


def save_qwen2_checkpoint(folder, tokenizer, architecture, head: dict, auto_map: dict, seed=0, **extra):
    """A Qwen2 backbone under `model.` plus `head` tensors, with the family's config.json."""
    from transformers import Qwen2Config, Qwen2Model

    torch.manual_seed(seed)
    config = Qwen2Config(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    backbone = Qwen2Model(config)
    weights = {f"model.{k}": v.contiguous() for k, v in backbone.state_dict().items()}
    weights.update({k: v.contiguous() for k, v in head.items()})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(weights, str(folder / "model.safetensors"), metadata={"format": "pt"})
    data = config.to_dict()
    data.update({"architectures": [architecture], "auto_map": auto_map, **extra})
    (folder / "config.json").write_text(json.dumps(data, indent=2))
    tokenizer.save_pretrained(folder)
    return folder


def make_qwen_prm(folder):
    """A tiny Qwen2.5-Math-PRM: Qwen2 weights under `model.`, the head as `score.0` / `score.2`."""
    tokenizer = qwen_tokenizer(["<extra_0>"])
    torch.manual_seed(1)
    h = 32
    head = {"score.0.weight": torch.randn(h, h) * 0.3, "score.0.bias": torch.randn(h) * 0.1,
            "score.2.weight": torch.randn(2, h) * 0.3, "score.2.bias": torch.randn(2) * 0.1}
    return save_qwen2_checkpoint(
        folder, tokenizer, "Qwen2ForProcessRewardModel", head,
        {"AutoConfig": "configuration_qwen2_rm.Qwen2RMConfig",
         "AutoModel": "modeling_qwen2_rm.Qwen2ForProcessRewardModel"}, num_labels=2)


def make_skywork_prm(folder):
    """A tiny Skywork-o1-Open-PRM: Qwen2 weights under `model.`, the value head as `v_head.summary`."""
    tokenizer = qwen_tokenizer([])
    tokenizer.bos_token = "<|endoftext|>"
    torch.manual_seed(2)
    head = {"v_head.summary.weight": torch.randn(1, 32) * 0.5, "v_head.summary.bias": torch.randn(1) * 0.1}
    return save_qwen2_checkpoint(folder, tokenizer, "Qwen2ForPrmModel", head,
                                 {"AutoModel": "modeling_qwen2_prm.Qwen2ForPrmModel"})
