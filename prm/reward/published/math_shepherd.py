"""Math-Shepherd PRMs: a causal LM predicts ``+`` or ``-`` at a step tag.

For causal LMs trained the Math-Shepherd way (e.g. ``peiyi9979/math-shepherd-mistral-7b-prm``;
its model card states no license). The input is ``"{question} {solution}"``, the solution's steps
are ``"Step i: ... ки"`` joined with newlines, and a step's probability of being good is the
softmax over the logits of the ``+`` and ``-`` tokens at the position of the step tag. The
whole text is tokenized at once, exactly as the model saw it in training, and each tag's
token is found through the tokenizer's character offsets rather than by searching for the
tag's token id (which breaks when the tag merges with a neighbouring character). The
authors aggregate with the minimum over steps.
"""

from __future__ import annotations

import re

import torch

from prm.reward.published.common import (
    LabelTokenScorer,
    model_device,
    model_max_length,
    place,
    single_token_id,
    token_ending_at,
)
from prm.reward.step_tokenizer import EncodedSteps, pad_batch

_NUMBERED = re.compile(r"^\s*Step\s*\d+\s*:")


class MathShepherdScorer(LabelTokenScorer):
    """A causal LM that judges each step by predicting ``+`` or ``-`` at a step tag.

    step_tag: text appended to every step (``" ки"`` in Math-Shepherd). good_token /
    bad_token: the label tokens. step_prefix: written before a step that is not already
    numbered (``"Step {i}: "``; None to leave steps as they are). max_length: steps whose
    tag falls beyond it get no score (None: the model's own limit).
    """

    def __init__(self, model, tokenizer, *, step_tag: str = " ки", good_token: str = "+",
                 bad_token: str = "-", step_prefix: str | None = "Step {i}: ",
                 aggregation: str = "min", max_length: int | None = None, batch_size: int = 8):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("MathShepherdScorer needs a fast tokenizer (character offsets)")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.step_tag, self.step_prefix = step_tag, step_prefix
        self.aggregation, self.batch_size = aggregation, batch_size
        self.max_length = max_length or model_max_length(model.config, tokenizer)
        self.label_ids = [single_token_id(tokenizer, good_token), single_token_id(tokenizer, bad_token)]
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token

    @classmethod
    def from_pretrained(cls, path: str, *, device: str | None = None, dtype: str | None = None,
                        **kwargs) -> MathShepherdScorer:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from prm.model_names import resolve_model

        path = resolve_model(path)
        model = place(AutoModelForCausalLM.from_pretrained(path), device, dtype)
        return cls(model, AutoTokenizer.from_pretrained(path), **kwargs)

    def format(self, problem: str, steps: list[str]) -> tuple[str, list[int]]:
        """The model's input text and the character offset where each step's tag ends."""
        text, ends = f"{problem} ", []
        for i, step in enumerate(steps, start=1):
            if i > 1:
                text += "\n"
            if self.step_prefix and not _NUMBERED.match(step):
                text += self.step_prefix.replace("{i}", str(i))
            text += step + self.step_tag
            ends.append(len(text))
        return text, ends

    def _encode_many(self, items):
        formatted = [self.format(item[0], item[1]) for item in items]
        batch = self.tokenizer([text for text, _ in formatted], add_special_tokens=True,
                               return_offsets_mapping=True)
        encoded = []
        for (text, ends), ids, offsets in zip(formatted, batch["input_ids"], batch["offset_mapping"]):
            kept = []
            for end in ends:
                position = token_ending_at(offsets, end)
                if position is None or position >= self.max_length:
                    break
                kept.append(position)
            # a causal LM: tokens after the last tag cannot change the scores, so skip them
            ids = list(ids[:kept[-1] + 1]) if kept else list(ids[:1])
            encoded.append(EncodedSteps(ids, kept, len(ends), dropped=len(ends) - len(kept)))
        return encoded

    @torch.inference_mode()
    def _step_probabilities(self, batch: list[EncodedSteps]) -> list[list[float]]:
        inputs = pad_batch(batch, self.tokenizer.pad_token_id)
        device = model_device(self.model)
        hidden = self.model.base_model(input_ids=inputs["input_ids"].to(device),
                                       attention_mask=inputs["attention_mask"].to(device)).last_hidden_state
        positions = inputs["step_positions"].to(device)
        picked = hidden.gather(1, positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.size(-1)))
        # only the two label rows of the LM head: no vocabulary-sized projection
        head = self.model.get_output_embeddings()
        weight = head.weight[self.label_ids]
        bias = head.bias[self.label_ids] if getattr(head, "bias", None) is not None else None
        logits = torch.nn.functional.linear(picked, weight, bias).float()
        probs = logits.softmax(-1)[..., 0].cpu().tolist()
        return [row[:e.kept] for row, e in zip(probs, batch)]


