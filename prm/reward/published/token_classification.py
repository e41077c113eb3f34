"""Token-classification PRMs as saved by TRL's ``PRMTrainer``.

``AutoModelForTokenClassification`` with two labels (label 1 = good step). The input is built
exactly as TRL's ``tokenize_row`` builds it: BOS (if the tokenizer has one), the prompt's
tokens, then every step's tokens followed by the separator's tokens (``"\\n"`` by default);
the label is read on the last token of each step + separator. TRL leaves aggregation to the
user; the minimum is used here. License: whatever the trainer of the checkpoint chose.
"""

from __future__ import annotations

import torch

from prm.reward.published.common import model_device, model_max_length, place
from prm.reward.prefix_cache import cached_causal_check
from prm.reward.scorer import BatchedStepScorer
from prm.reward.step_tokenizer import EncodedSteps, pad_batch


class TokenClassificationScorer(BatchedStepScorer):
    """A token-classification PRM as saved by TRL's PRMTrainer (label 1 = good step).

    step_separator: what TRL's `PRMConfig.step_separator` was at training ("\\n" by
    default; TRL does not save it with the model). max_length: steps beyond it get no score.
    """

    def __init__(self, model, tokenizer, *, step_separator: str = "\n", aggregation: str = "min",
                 max_length: int | None = None, batch_size: int = 16):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.step_separator, self.aggregation, self.batch_size = step_separator, aggregation, batch_size
        self.max_length = max_length or model_max_length(model.config, tokenizer)
        self.separator_ids = tokenizer(step_separator, add_special_tokens=False)["input_ids"]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(cls, path: str, *, device: str | None = None, dtype: str | None = None,
                        **kwargs) -> TokenClassificationScorer:
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        from prm.model_names import resolve_model

        path = resolve_model(path)
        model = place(AutoModelForTokenClassification.from_pretrained(path), device, dtype)
        return cls(model, AutoTokenizer.from_pretrained(path), **kwargs)

    def _encode_many(self, items):
        prompts = self.tokenizer([problem for problem, *_ in items], add_special_tokens=False)["input_ids"]
        flat = [step for item in items for step in item[1]]
        pieces = self.tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        bos = self.tokenizer.bos_token_id
        encoded, start = [], 0
        for (_, steps, *_), prompt in zip(items, prompts):
            ids = ([bos] if bos is not None else []) + list(prompt)
            positions = []
            for piece in pieces[start:start + len(steps)]:
                piece = list(piece) + self.separator_ids
                if len(ids) + len(piece) > self.max_length:
                    break
                ids += piece
                # a step with no tokens at all (e.g. whitespace, with a vanishing separator)
                # is read where the text before it ends, as TRL's model would see it
                positions.append(len(ids) - 1)
            start += len(steps)
            encoded.append(EncodedSteps(ids, positions, len(steps), dropped=len(steps) - len(positions)))
        return encoded

    def _classifier(self):
        """The token-classification head on top of `base_model` (its name depends on the architecture)."""
        return getattr(self.model, "classifier", None) or getattr(self.model, "score", None)

    def _causal_backbone(self):
        if self._classifier() is None or not cached_causal_check(self, self.model):
            return None  # an encoder (BERT and the like) is scored whole
        return self.model.base_model

    def _step_head(self, hidden):
        return self._classifier()(hidden).float().softmax(-1)[..., 1]  # eval mode: no dropout

    @torch.inference_mode()
    def _step_probabilities(self, batch: list[EncodedSteps]) -> list[list[float]]:
        inputs = pad_batch(batch, self.pad_id)
        device = model_device(self.model)
        logits = self.model(input_ids=inputs["input_ids"].to(device),
                            attention_mask=inputs["attention_mask"].to(device)).logits
        positions = inputs["step_positions"].to(device)
        picked = logits.gather(1, positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, logits.size(-1)))
        probs = picked.float().softmax(-1)[..., 1].cpu().tolist()
        return [row[:e.kept] for row, e in zip(probs, batch)]


