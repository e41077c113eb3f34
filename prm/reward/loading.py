"""Open any step scorer from a model folder or hub name: `load_scorer(path, family="auto")`.

The family is told from the folder's files (`detect_family`), never by running code that
came with the model:

| family | told by |
|---|---|
| `reward-model` | config `model_type` "prm-reward-model" (this project's `RewardModel`) |
| `qwen-prm` | config `architectures` ["Qwen2ForProcessRewardModel"] (Qwen2.5-Math-PRM) |
| `skywork` | config `architectures` ["Qwen2ForPrmModel"] (Skywork-o1-Open-PRM) |
| `token-classification` | `...ForTokenClassification` (TRL's PRMTrainer) |
| `rlhflow` | a causal LM whose tokenizer has a chat template (RLHFlow PRMs) |
| `math-shepherd` | any other causal LM (Math-Shepherd's step tag) |

A local folder holding `calibration.json` (written by `prm calibrate`) gives calibrated scores:
the scorer comes wrapped in `prm.reward.calibration.CalibratedScorer` (`calibrated=False` opens
it raw).

A hub name works the same way (config and tokenizer files are fetched with
`huggingface_hub`); a local path that does not exist is an error, not a hub lookup.

`vllm-pooling:[MODEL@]http://HOST:PORT[,...]` is MODEL's family scored by vLLM servers
(`prm.reward.vllm_pooling`): the family is MODEL's, only the forward pass runs on the server.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from prm.reward.scorer import StepScorer

# family -> (module, class); imported only when used
FAMILIES: dict[str, tuple[str, str]] = {
    "reward-model": ("prm.reward.model", "RewardModel"),
    "math-shepherd": ("prm.reward.published.math_shepherd", "MathShepherdScorer"),
    "token-classification": ("prm.reward.published.token_classification", "TokenClassificationScorer"),
    "qwen-prm": ("prm.reward.published.qwen_prm", "QwenPRMScorer"),
    "skywork": ("prm.reward.published.skywork", "SkyworkPRMScorer"),
    "rlhflow": ("prm.reward.published.rlhflow", "RLHFlowScorer"),
}
# config.architectures of the families with their own head class
ARCHITECTURES = {"Qwen2ForProcessRewardModel": "qwen-prm", "Qwen2ForPrmModel": "skywork"}


def _model_file(path: str, name: str) -> Path | None:
    """A file of a local model folder or of a hub repository (None if it has none)."""
    folder = Path(path)
    if folder.is_dir():
        file = folder / name
        return file if file.exists() else None
    if folder.exists() or folder.is_absolute() or str(path).startswith((".", "~")):
        raise FileNotFoundError(f"no model folder at {path}")
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import EntryNotFoundError, LocalEntryNotFoundError

    try:
        return Path(hf_hub_download(path, name))
    except LocalEntryNotFoundError:  # offline, or the hub cannot be reached, and not in the cache
        raise FileNotFoundError(f"{path} is not a local folder, and its {name} is neither in the hub cache "
                                "nor downloadable now (offline?)") from None
    except EntryNotFoundError:
        return None


def read_config(path: str) -> dict:
    """The model's config.json as a dict."""
    file = _model_file(path, "config.json")
    if file is None:
        raise FileNotFoundError(f"no model config.json in {path}")
    return json.loads(file.read_text(encoding="utf-8"))


def has_chat_template(path: str) -> bool:
    """Whether the model's tokenizer carries a chat template (tokenizer_config or its own file)."""
    file = _model_file(path, "tokenizer_config.json")
    if file is not None and json.loads(file.read_text(encoding="utf-8")).get("chat_template"):
        return True
    return _model_file(path, "chat_template.jinja") is not None or \
        _model_file(path, "chat_template.json") is not None


def detect_family(path: str) -> str:
    """The scorer family of a model folder or hub name (see the module docstring)."""
    from prm.model_names import resolve_model
    from prm.reward import vllm_pooling

    if vllm_pooling.is_spec(path):
        path = vllm_pooling.model_of_spec(path)
    path = resolve_model(path)
    config = read_config(path)
    if config.get("model_type") == "prm-reward-model":
        return "reward-model"
    architectures = list(config.get("architectures") or [])
    for name in architectures:
        if name in ARCHITECTURES:
            return ARCHITECTURES[name]
    joined = " ".join(architectures)
    if "ForTokenClassification" in joined:
        return "token-classification"
    if "ForCausalLM" in joined or "LMHeadModel" in joined:
        return "rlhflow" if has_chat_template(path) else "math-shepherd"
    raise ValueError(f"cannot tell the reward-model family of {path} (architectures: {joined or 'none'}); "
                     f"pass one of {', '.join(FAMILIES)}")


def scorer_class(family: str):
    """The scorer class of a family name."""
    if family not in FAMILIES:
        raise ValueError(f"family must be 'auto' or one of {', '.join(FAMILIES)}, got {family!r}")
    module, name = FAMILIES[family]
    return getattr(importlib.import_module(module), name)


def load_scorer(path_or_hub_name: str, family: str = "auto", *, device: str | None = None,
                dtype: str | None = None, max_batch_tokens: int | None = None, calibrated: bool = True,
                **kwargs) -> StepScorer:
    """A step scorer for a model folder, short name or hub name.

    family: "auto" (told from the folder) or one of `FAMILIES`. device: default CUDA when
    present, else CPU. dtype: "bf16", "fp16", "fp32" or None (the checkpoint's own).
    max_batch_tokens: padded tokens per forward pass. calibrated: apply the folder's
    `calibration.json` when it has one. kwargs go to the family's scorer
    (step_tag, step_separator, max_length, aggregation, ...).
    """
    from prm.model_names import resolve_model
    from prm.reward import vllm_pooling

    if vllm_pooling.is_spec(path_or_hub_name):  # the model's family, its forward pass on vLLM servers
        kind = detect_family(path_or_hub_name) if family == "auto" else family
        return vllm_pooling.VLLMPoolingScorer.from_spec(path_or_hub_name, scorer_class(kind), kind, **kwargs)
    path = resolve_model(path_or_hub_name)
    kind = detect_family(path) if family == "auto" else family
    cls = scorer_class(kind)
    if kind == "reward-model":
        from prm.reward.published.common import place

        scorer = place(cls.from_pretrained(path), device, dtype)
        if kwargs.get("aggregation"):
            scorer.config.aggregation = kwargs["aggregation"]
    else:
        scorer = cls.from_pretrained(path, device=device, dtype=dtype, **kwargs)
    if max_batch_tokens:
        scorer.max_batch_tokens = max_batch_tokens
    if calibrated and Path(path).is_dir():
        from prm.reward.calibration import CalibratedScorer, saved_calibrator

        calibrator = saved_calibrator(path)
        if calibrator is not None:
            return CalibratedScorer(scorer, calibrator)
    return scorer
