"""Tiny backbones and data for the reward-model tests (no test here, only builders).

Every model is built from a small config (2 layers, width 32) so that a test trains it in
seconds; the tokenizers are real: a byte-level BPE (the GPT-2 scheme) trained here on GSM8K
text, and MiniLM's WordPiece vocabulary (BERT's scheme, lowercasing, drops newlines).
"""

from __future__ import annotations

import functools
import json
import random
from pathlib import Path

import torch

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


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
