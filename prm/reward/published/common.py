"""Helpers shared by the published-PRM scorers: tokens, offsets, length limits, devices, and
the base of the scorers that read a good/bad label token from a causal LM's head."""

from __future__ import annotations

import torch

from prm.reward.prefix_cache import cached_causal_check
from prm.reward.scorer import BatchedStepScorer


class LabelTokenScorer(BatchedStepScorer):
    """A causal LM whose next-token logits of two label tokens (`self.label_ids`: good, bad)
    give each step's probability (Math-Shepherd, RLHFlow). Supplies the hooks of incremental
    prefix scoring (`prm.reward.prefix_cache`): the backbone and the head on its hidden states."""

    def _causal_backbone(self):
        return self.model.base_model if cached_causal_check(self, self.model) else None

    def _step_head(self, hidden):
        head = self.model.get_output_embeddings()  # the two label rows, as in _step_probabilities
        bias = head.bias[self.label_ids] if getattr(head, "bias", None) is not None else None
        logits = torch.nn.functional.linear(hidden, head.weight[self.label_ids], bias).float()
        return logits.softmax(-1)[..., 0]


def single_token_id(tokenizer, text: str) -> int:
    """The id of `text` when the tokenizer encodes it as exactly one token (else ValueError)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if len(ids) == 1:
        return ids[0]
    token_id = tokenizer.convert_tokens_to_ids(text)
    if token_id is not None and token_id != tokenizer.unk_token_id:
        return token_id
    raise ValueError(f"{text!r} is not a single token of this tokenizer ({ids})")


def token_ending_at(offsets, end: int) -> int | None:
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


def model_max_length(config, tokenizer) -> int:
    """The smallest sensible length limit of the model config and the tokenizer."""
    limits = [getattr(config, name, None) for name in ("max_position_embeddings", "n_positions")]
    limits.append(getattr(tokenizer, "model_max_length", None))
    limits = [v for v in limits if isinstance(v, int) and 0 < v < 1_000_000]
    return min(limits) if limits else 4096


def model_device(model):
    """The device of the model's first parameter."""
    return next(model.parameters()).device


def torch_dtype(name: str | None):
    """A torch dtype from "bf16", "fp16", "fp32" (or None: the checkpoint's own)."""
    import torch

    names = {None: None, "auto": None, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16,
             "fp16": torch.float16, "float16": torch.float16, "fp32": torch.float32, "float32": torch.float32}
    if name not in names:
        raise ValueError(f"dtype must be one of bf16, fp16, fp32, got {name!r}")
    return names[name]


def place(model, device: str | None = None, dtype: str | None = None):
    """The model moved to `device` (default: CUDA when present) and cast to `dtype`, in eval mode."""
    import torch

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    kind = torch_dtype(dtype)
    if kind is not None:
        model = model.to(kind)
    return model.to(device).eval()


def load_checked(model_class, path: str, device: str | None = None, dtype: str | None = None):
    """`model_class.from_pretrained(path)`, refusing a checkpoint that leaves any weight of
    the model unset (a different layout must fail loudly, not score with random weights).
    Weights of the checkpoint that the model does not use (e.g. an LM head) are ignored."""
    model, info = model_class.from_pretrained(path, output_loading_info=True)
    missing = sorted(info.get("missing_keys") or [])
    if missing:
        shown = ", ".join(missing[:5]) + (" ..." if len(missing) > 5 else "")
        raise ValueError(f"{path} is not in the {model_class.__name__} layout: "
                         f"{len(missing)} weight(s) missing ({shown})")
    return place(model, device, dtype)


def load_checked_with_tokenizer(model_class, path: str, device: str | None = None, dtype: str | None = None):
    """(model, tokenizer) of a folder, short name or hub name: the model by `load_checked`."""
    from transformers import AutoTokenizer

    from prm.model_names import resolve_model

    path = resolve_model(path)
    return load_checked(model_class, path, device, dtype), AutoTokenizer.from_pretrained(path)


def gather_rows(hidden, positions):
    """hidden[b, positions[b, k]] for every batch row b and step k (positions padded with -1)."""
    index = positions.clamp(min=0).unsqueeze(-1).expand(-1, -1, hidden.size(-1))
    return hidden.gather(1, index)
