"""Skywork-o1-Open-PRM (``Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B`` and ``-7B``).

The network is a Qwen2.5-Math backbone (weights ``model.*``) with a value head: one
``Linear(h, 1)`` named ``v_head.summary`` (the layout of SkyworkAI's ``Qwen2ForPrmModel`` in
skywork-o1-prm-inference; its dropout is inactive at inference). It is built here from
transformers' ``Qwen2Model``; no code from the model folder runs.

Input, as the authors' ``prepare_input`` builds it: the ids of ``bos_token + problem + "\\n"``,
then for every step the ids of the step followed by the id of the step token ``"\\n"``
(each piece encoded on its own with the tokenizer's ``encode``). A step's score is the
sigmoid of the value head at its step token. (The authors split a response at "\\n", so a
step here is one of their lines; a step containing newlines is kept whole.) The model card
prescribes no aggregation; the minimum is the default here. Weights: the Skywork
Community License (``license: other``; the PDF ships with the weights).
"""

from __future__ import annotations

import torch
from torch import nn
from transformers import Qwen2Config, Qwen2Model, Qwen2PreTrainedModel

from prm.reward.published.common import (
    gather_rows,
    load_checked_with_tokenizer,
    model_device,
    model_max_length,
)
from prm.reward.prefix_cache import cached_causal_check
from prm.reward.scorer import BatchedStepScorer
from prm.reward.step_tokenizer import EncodedSteps, pad_batch

STEP_TOKEN = "\n"
ARCHITECTURE = "Qwen2ForPrmModel"


class ValueHead(nn.Module):
    """One scalar per position: ``summary = Linear(hidden, 1)``."""

    def __init__(self, hidden_size: int):
        super().__init__()
        self.summary = nn.Linear(hidden_size, 1)

    def forward(self, hidden):
        return self.summary(hidden.to(self.summary.weight.dtype)).squeeze(-1)


class Qwen2ValueModel(Qwen2PreTrainedModel):
    """A Qwen2 backbone and Skywork-PRM's value head (same weight names)."""

    config_class = Qwen2Config

    def __init__(self, config: Qwen2Config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        self.v_head = ValueHead(config.hidden_size)
        self.post_init()

    def forward(self, input_ids, attention_mask=None):
        """Value-head logits at every position, (batch, length)."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.v_head(hidden)


class SkyworkPRMScorer(BatchedStepScorer):
    """Scores steps with a Skywork-o1-Open-PRM checkpoint (see the module docstring)."""

    def __init__(self, model, tokenizer, *, step_token: str = STEP_TOKEN, aggregation: str = "min",
                 max_length: int | None = None, batch_size: int = 8):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.step_token, self.aggregation, self.batch_size = step_token, aggregation, batch_size
        self.max_length = max_length or model_max_length(model.config, tokenizer)
        self.step_token_id = tokenizer.encode(step_token)[-1]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(cls, path: str, *, device: str | None = None, dtype: str | None = None,
                        **kwargs) -> SkyworkPRMScorer:
        return cls(*load_checked_with_tokenizer(Qwen2ValueModel, path, device, dtype), **kwargs)

    def _encode_many(self, items):
        if not items:
            return []
        bos = self.tokenizer.bos_token or ""
        prompts = self.tokenizer([bos + problem + "\n" for problem, *_ in items])["input_ids"]
        flat = [step for item in items for step in item[1]]
        texts = [step for step in flat if step]  # the authors encode an empty step as nothing
        coded = iter(self.tokenizer(texts)["input_ids"] if texts else [])
        pieces = [next(coded) if step else [] for step in flat]
        encoded, start = [], 0
        for (_, steps, *_), prompt in zip(items, prompts):
            ids, positions = list(prompt), []
            for piece in pieces[start:start + len(steps)]:
                if len(ids) + len(piece) + 1 > self.max_length:
                    break
                ids += list(piece) + [self.step_token_id]
                positions.append(len(ids) - 1)
            start += len(steps)
            encoded.append(EncodedSteps(ids, positions, len(steps), dropped=len(steps) - len(positions)))
        return encoded

    def _causal_backbone(self):
        return self.model.model if cached_causal_check(self, self.model) else None

    def _step_head(self, hidden):
        return self.model.v_head(hidden).float().sigmoid()

    @torch.inference_mode()
    def _step_probabilities(self, batch: list[EncodedSteps]) -> list[list[float]]:
        inputs = pad_batch(batch, self.pad_id)
        device = model_device(self.model)
        hidden = self.model.model(input_ids=inputs["input_ids"].to(device),
                                  attention_mask=inputs["attention_mask"].to(device)).last_hidden_state
        values = self.model.v_head(gather_rows(hidden, inputs["step_positions"].to(device)))
        probs = values.float().sigmoid().cpu().tolist()
        return [row[:e.kept] for row, e in zip(probs, batch)]
