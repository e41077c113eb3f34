"""Qwen2.5-Math-PRM (``Qwen/Qwen2.5-Math-PRM-7B``, ``-72B``), loaded without remote code.

The released checkpoints ship their own modeling file and ask for ``trust_remote_code``.
Here the same network is built from this project's code: a transformers ``Qwen2Model``
backbone (weights ``model.*``) and a two-layer head ``score = Linear(h, h) -> ReLU ->
Linear(h, 2)`` (weights ``score.0.*`` and ``score.2.*``), the names of the released
``Qwen2ForProcessRewardModel``. Only the weights are read from the folder, so scoring never
runs code that came with a model; a checkpoint whose weights do not fill this layout is
refused.

Input, as in the model card: a chat with the system prompt "Please reason step by step, and
put your final answer within \\boxed{}.", the problem as the user turn and the steps as the
assistant turn, each step followed by the ``<extra_0>`` token; rendered with the tokenizer's
chat template (no generation prompt) and tokenized. A step's score is the softmax
probability of class 1 of the head at its ``<extra_0>`` token. Solution score: the product
of step scores, the aggregation recorded for Qwen's PRMs in `prm.aggregate`. Weights: Qwen
license (``license: other``, ``license_name: qwen``).
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

SEPARATOR = "<extra_0>"
SYSTEM_PROMPT = "Please reason step by step, and put your final answer within \\boxed{}."
ARCHITECTURE = "Qwen2ForProcessRewardModel"


class Qwen2ProcessRewardModel(Qwen2PreTrainedModel):
    """A Qwen2 backbone and the two-class step head of Qwen2.5-Math-PRM (same weight names)."""

    config_class = Qwen2Config

    def __init__(self, config: Qwen2Config):
        super().__init__(config)
        self.model = Qwen2Model(config)
        labels = getattr(config, "num_labels", 2) or 2
        self.score = nn.Sequential(nn.Linear(config.hidden_size, config.hidden_size), nn.ReLU(),
                                   nn.Linear(config.hidden_size, labels))
        self.post_init()

    def forward(self, input_ids, attention_mask=None):
        """Logits of the head at every position, (batch, length, 2)."""
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return self.score(hidden)


class QwenPRMScorer(BatchedStepScorer):
    """Scores steps with a Qwen2.5-Math-PRM checkpoint (see the module docstring).

    system_prompt: the system turn (None: the chat template's default). max_length: steps
    whose separator falls beyond it get no score.
    """

    def __init__(self, model, tokenizer, *, system_prompt: str | None = SYSTEM_PROMPT,
                 aggregation: str = "prod", max_length: int | None = None, batch_size: int = 8):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.system_prompt, self.aggregation, self.batch_size = system_prompt, aggregation, batch_size
        self.max_length = max_length or model_max_length(model.config, tokenizer)
        self.separator_id = tokenizer.convert_tokens_to_ids(SEPARATOR)
        if self.separator_id is None or self.separator_id == tokenizer.unk_token_id:
            raise ValueError(f"the tokenizer has no {SEPARATOR!r} token: not a Qwen2.5-Math-PRM tokenizer")
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(cls, path: str, *, device: str | None = None, dtype: str | None = None,
                        **kwargs) -> QwenPRMScorer:
        return cls(*load_checked_with_tokenizer(Qwen2ProcessRewardModel, path, device, dtype), **kwargs)

    def messages(self, problem: str, steps: list[str]) -> list[dict]:
        """The chat the model reads: system, problem, steps each followed by <extra_0>."""
        answer = "".join(step.replace(SEPARATOR, "") + SEPARATOR for step in steps)
        chat = [{"role": "system", "content": self.system_prompt}] if self.system_prompt is not None else []
        return chat + [{"role": "user", "content": problem.replace(SEPARATOR, "")},
                       {"role": "assistant", "content": answer}]

    def _encode_many(self, items):
        if not items:
            return []
        texts = [self.tokenizer.apply_chat_template(self.messages(problem, steps), tokenize=False,
                                                    add_generation_prompt=False)
                 for problem, steps, *_ in items]
        encoded = []
        for (_, steps, *_), ids in zip(items, self.tokenizer(texts)["input_ids"]):
            found = [i for i, token in enumerate(ids) if token == self.separator_id]
            if len(found) != len(steps):
                raise ValueError(f"found {len(found)} {SEPARATOR} tokens for {len(steps)} steps: the chat "
                                 "template or the problem text adds or drops separators")
            kept = [i for i in found if i < self.max_length]
            ids = list(ids[:kept[-1] + 1]) if kept else list(ids[:1])  # causal: later tokens do not matter
            encoded.append(EncodedSteps(ids, kept, len(steps), dropped=len(steps) - len(kept)))
        return encoded

    def _causal_backbone(self):
        return self.model.model if cached_causal_check(self, self.model) else None

    def _step_head(self, hidden):
        return self.model.score(hidden).float().softmax(-1)[..., 1]

    @torch.inference_mode()
    def _step_probabilities(self, batch: list[EncodedSteps]) -> list[list[float]]:
        inputs = pad_batch(batch, self.pad_id)
        device = model_device(self.model)
        hidden = self.model.model(input_ids=inputs["input_ids"].to(device),
                                  attention_mask=inputs["attention_mask"].to(device)).last_hidden_state
        logits = self.model.score(gather_rows(hidden, inputs["step_positions"].to(device)))
        probs = logits.float().softmax(-1)[..., 1].cpu().tolist()
        return [row[:e.kept] for row, e in zip(probs, batch)]
