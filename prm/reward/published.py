"""Scoring with published PRM checkpoints, in their own formats.

Both scorers have the `StepScorer` interface of `RewardModel` (``score``, ``score_many``,
``score_traces``, ``solution_score``), so evaluation code does not care which it has.

- `MathShepherdScorer`: causal LMs trained the Math-Shepherd way (e.g.
  ``peiyi9979/math-shepherd-mistral-7b-prm``). The input is ``"{question} {solution}"``, the
  solution's steps are ``"Step i: ... ки"`` joined with newlines, and a step's probability
  of being good is the softmax over the logits of the ``+`` and ``-`` tokens at the position
  of the step tag. The whole text is tokenized at once, exactly as the model saw it in
  training, and each tag's token is found through the tokenizer's character offsets rather
  than by searching for the tag's token id (which breaks when the tag merges with a
  neighbouring character).
- `TokenClassificationScorer`: token-classification PRMs saved by TRL's ``PRMTrainer``
  (``AutoModelForTokenClassification``, two labels, label 1 = good). The input is built
  exactly as TRL's ``tokenize_row`` builds it: BOS (if the tokenizer has one), the prompt's
  tokens, then every step's tokens followed by the separator's tokens (``"\\n"`` by
  default); the label is read on the last token of each step + separator.

`load_scorer(path)` opens any of these or a `RewardModel` folder, telling them apart by
the folder's ``config.json``.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import torch

from prm.reward.model import RewardModel
from prm.reward.scorer import BatchedStepScorer, StepScorer
from prm.reward.step_tokenizer import EncodedSteps, pad_batch

logger = logging.getLogger(__name__)

FORMATS = ("reward-model", "math-shepherd", "token-classification")
_NUMBERED = re.compile(r"^\s*Step\s*\d+\s*:")


class MathShepherdScorer(BatchedStepScorer):
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
        self.max_length = max_length or _model_max_length(model.config, tokenizer)
        self.label_ids = [_single_token_id(tokenizer, good_token), _single_token_id(tokenizer, bad_token)]
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token or tokenizer.unk_token

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> "MathShepherdScorer":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        from prm.model_names import resolve_model

        path = resolve_model(path)
        return cls(AutoModelForCausalLM.from_pretrained(path), AutoTokenizer.from_pretrained(path), **kwargs)

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
        formatted = [self.format(problem, steps) for problem, steps in items]
        batch = self.tokenizer([text for text, _ in formatted], add_special_tokens=True,
                               return_offsets_mapping=True)
        encoded = []
        for (text, ends), ids, offsets in zip(formatted, batch["input_ids"], batch["offset_mapping"]):
            kept = []
            for end in ends:
                position = _token_ending_at(offsets, end)
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
        device = next(self.model.parameters()).device
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


class TokenClassificationScorer(BatchedStepScorer):
    """A token-classification PRM as saved by TRL's PRMTrainer (label 1 = good step).

    step_separator: what TRL's `PRMConfig.step_separator` was at training ("\\n" by
    default; TRL does not save it with the model). max_length: steps beyond it get no score.
    """

    def __init__(self, model, tokenizer, *, step_separator: str = "\n", aggregation: str = "min",
                 max_length: int | None = None, batch_size: int = 16):
        self.model, self.tokenizer = model.eval(), tokenizer
        self.step_separator, self.aggregation, self.batch_size = step_separator, aggregation, batch_size
        self.max_length = max_length or _model_max_length(model.config, tokenizer)
        self.separator_ids = tokenizer(step_separator, add_special_tokens=False)["input_ids"]
        self.pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0

    @classmethod
    def from_pretrained(cls, path: str, **kwargs) -> "TokenClassificationScorer":
        from transformers import AutoModelForTokenClassification, AutoTokenizer

        from prm.model_names import resolve_model

        path = resolve_model(path)
        return cls(AutoModelForTokenClassification.from_pretrained(path), AutoTokenizer.from_pretrained(path),
                   **kwargs)

    def _encode_many(self, items):
        prompts = self.tokenizer([problem for problem, _ in items], add_special_tokens=False)["input_ids"]
        flat = [step for _, steps in items for step in steps]
        pieces = self.tokenizer(flat, add_special_tokens=False)["input_ids"] if flat else []
        bos = self.tokenizer.bos_token_id
        encoded, start = [], 0
        for (_, steps), prompt in zip(items, prompts):
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

    @torch.inference_mode()
    def _step_probabilities(self, batch: list[EncodedSteps]) -> list[list[float]]:
        inputs = pad_batch(batch, self.pad_id)
        device = next(self.model.parameters()).device
        logits = self.model(input_ids=inputs["input_ids"].to(device),
                            attention_mask=inputs["attention_mask"].to(device)).logits
        positions = inputs["step_positions"].to(device)
        picked = logits.gather(1, positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, logits.size(-1)))
        probs = picked.float().softmax(-1)[..., 1].cpu().tolist()
        return [row[:e.kept] for row, e in zip(probs, batch)]


def detect_format(path: str) -> str:
    """"reward-model", "math-shepherd" or "token-classification", from the folder's config."""
    from transformers import AutoConfig

    from prm.model_names import resolve_model

    folder = Path(resolve_model(path))
    local = folder / "config.json"
    if local.exists():
        config = json.loads(local.read_text(encoding="utf-8"))
    elif folder.exists() or folder.is_absolute() or str(path).startswith((".", "~")):
        raise FileNotFoundError(f"no model config.json in {folder}")
    else:
        config = AutoConfig.from_pretrained(path).to_dict()
    if config.get("model_type") == "prm-reward-model":
        return "reward-model"
    architectures = " ".join(config.get("architectures") or [])
    if "ForTokenClassification" in architectures:
        return "token-classification"
    if "ForCausalLM" in architectures or "LMHeadModel" in architectures:
        return "math-shepherd"
    raise ValueError(f"cannot tell the reward-model format of {path} (architectures: {architectures or 'none'}); "
                     f"pass one of {FORMATS}")


def load_scorer(path: str, format: str = "auto", **kwargs) -> StepScorer:
    """A scorer for a RewardModel folder or a published PRM (see the module docstring).

    kwargs go to the published scorers (step_tag, step_separator, max_length, ...).
    """
    from prm.model_names import resolve_model

    kind = detect_format(path) if format == "auto" else format
    if kind == "reward-model":
        return RewardModel.from_pretrained(resolve_model(path))
    if kind == "math-shepherd":
        return MathShepherdScorer.from_pretrained(path, **kwargs)
    if kind == "token-classification":
        return TokenClassificationScorer.from_pretrained(path, **kwargs)
    raise ValueError(f"format must be 'auto' or one of {FORMATS}, got {format!r}")


def _single_token_id(tokenizer, text: str) -> int:
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) == 1:
        return ids[0]
    token_id = tokenizer.convert_tokens_to_ids(text)
    if token_id is not None and token_id != tokenizer.unk_token_id:
        return token_id
    raise ValueError(f"{text!r} is not a single token of this tokenizer ({ids})")


def _token_ending_at(offsets, end: int) -> int | None:
    """Index of the last token that starts before character `end` (the tag's last token)."""
    found = None
    for index, (start, stop) in enumerate(offsets):
        if stop == start:  # special tokens have empty spans
            continue
        if start < end:
            found = index
        else:
            break
    return found


def _model_max_length(config, tokenizer) -> int:
    limits = [getattr(config, name, None) for name in ("max_position_embeddings", "n_positions")]
    limits.append(getattr(tokenizer, "model_max_length", None))
    limits = [v for v in limits if isinstance(v, int) and 0 < v < 1_000_000]
    return min(limits) if limits else 4096
