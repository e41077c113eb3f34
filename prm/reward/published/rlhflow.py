"""RLHFlow PRMs (``RLHFlow/Llama3.1-8B-PRM-Mistral-Data``, ``-Deepseek-Data``).

A causal LM fine-tuned on conversations where every step is a user turn and the assistant
answers ``+`` (good) or ``-`` (bad). As in the authors' ``math-rm/prm_evaluate.py``: the
steps are stripped, the first user turn is ``problem + " " + first step``, every assistant
turn is ``+``, the chat is rendered with the tokenizer's chat template (no generation
prompt), and a step's score is the softmax over the logits of the ``+`` and ``-`` tokens at
the position that predicts that step's ``+`` (position -3 of the rendered chat ending at
that step, for Llama 3.1's template). The authors run one forward pass per step prefix; a
causal LM gives the same logits for every prefix in one pass over the whole chat, which is
what is done here. The authors aggregate with the mean of step scores for best-of-N.
Weights: the model cards state no license of their own; they are fine-tuned from
Llama-3.1-8B-Instruct, whose Llama 3.1 Community License covers derivatives.
"""

from __future__ import annotations

import torch

from prm.reward.published.common import (
    LabelTokenScorer,
    model_device,
    model_max_length,
    place,
    single_token_id,
)
from prm.reward.step_tokenizer import EncodedSteps, pad_batch


class RLHFlowScorer(LabelTokenScorer):
    """Scores steps with an RLHFlow conversation PRM (see the module docstring)."""

    def __init__(self, model, tokenizer, *, good_token: str = "+", bad_token: str = "-",
                 aggregation: str = "mean", max_length: int | None = None, batch_size: int = 8):
        if not getattr(tokenizer, "is_fast", False):
            raise ValueError("RLHFlowScorer needs a fast tokenizer (character offsets)")
        if not getattr(tokenizer, "chat_template", None):
            raise ValueError("an RLHFlow PRM's tokenizer has a chat template; this one has none")
        self.model, self.tokenizer = model.eval(), tokenizer
        self.good_token, self.aggregation, self.batch_size = good_token, aggregation, batch_size
        self.max_length = max_length or model_max_length(model.config, tokenizer)
        self.label_ids = [single_token_id(tokenizer, good_token), single_token_id(tokenizer, bad_token)]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id or 0

    @classmethod
    def from_pretrained(cls, path: str, *, device: str | None = None, dtype: str | None = None,
                        **kwargs) -> RLHFlowScorer:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from prm.model_names import resolve_model

        path = resolve_model(path)
        model = place(AutoModelForCausalLM.from_pretrained(path), device, dtype)
        return cls(model, AutoTokenizer.from_pretrained(path), **kwargs)

    def conversation(self, problem: str, steps: list[str]) -> list[dict]:
        """The chat the model reads: each step a user turn answered by the assistant's "+"."""
        chat = []
        for k, step in enumerate(steps):
            text = f"{problem} {step.strip()}" if k == 0 else step.strip()
            chat += [{"role": "user", "content": text}, {"role": "assistant", "content": self.good_token}]
        return chat

    def render(self, problem: str, steps: list[str]) -> tuple[str, list[int]]:
        """The rendered chat and, for each step, the character index of its assistant "+"."""
        chat = self.conversation(problem, steps)
        full = self._render(chat)
        marks = []
        for k in range(1, len(steps) + 1):
            prefix = self._render(chat[:2 * k])
            if not full.startswith(prefix):
                raise ValueError("the chat template renders a shorter chat differently from the start "
                                 "of the longer one; cannot place the step labels")
            marks.append(prefix.rindex(self.good_token))
        return full, marks

    def _render(self, chat: list[dict]) -> str:
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)

    def _encode_many(self, items):
        if not items:
            return []
        rendered = [self.render(item[0], item[1]) for item in items]
        batch = self.tokenizer([text for text, _ in rendered], add_special_tokens=False,
                               return_offsets_mapping=True)
        encoded = []
        for (text, marks), ids, offsets in zip(rendered, batch["input_ids"], batch["offset_mapping"]):
            starts = {start: i for i, (start, stop) in enumerate(offsets) if stop > start}
            positions = []
            for mark in marks:
                token = starts.get(mark)
                if token is None or ids[token] != self.label_ids[0] or offsets[token][1] != mark + 1:
                    raise ValueError(f"the assistant's {self.good_token!r} is not a token of its own here")
                if token - 1 >= self.max_length:
                    break
                positions.append(token - 1)  # the logits there predict the "+"
            ids = list(ids[:positions[-1] + 1]) if positions else list(ids[:1])
            encoded.append(EncodedSteps(ids, positions, len(marks), dropped=len(marks) - len(positions)))
        return encoded

    @torch.inference_mode()
    def _step_probabilities(self, batch: list[EncodedSteps]) -> list[list[float]]:
        inputs = pad_batch(batch, self.pad_id)
        device = model_device(self.model)
        hidden = self.model.base_model(input_ids=inputs["input_ids"].to(device),
                                       attention_mask=inputs["attention_mask"].to(device)).last_hidden_state
        positions = inputs["step_positions"].to(device)
        picked = hidden.gather(1, positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.size(-1)))
        head = self.model.get_output_embeddings()  # only the two label rows: no vocabulary-sized product
        weight = head.weight[self.label_ids]
        bias = head.bias[self.label_ids] if getattr(head, "bias", None) is not None else None
        logits = torch.nn.functional.linear(picked, weight, bias).float()
        probs = logits.softmax(-1)[..., 0].cpu().tolist()
        return [row[:e.kept] for row, e in zip(probs, batch)]
