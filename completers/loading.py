"""How a model spec becomes a completer: `load_completer(spec)` is the one place that turns
what a user types (`--completer ...`) into a backend:

- `http://host:port[/v1]` (several separated by commas) -> `OpenAICompleter`
- `vllm:PATH_OR_NAME` -> `VLLMCompleter` (needs vLLM and a GPU)
- anything else (a short name such as `tiny-gsm`, or a local folder) -> `TransformersCompleter`

Backends are imported only when chosen, so this module stays light.
"""

from __future__ import annotations

from completers.base import Completer


def load_completer(spec: str, **kwargs) -> Completer:
    """A completer for `spec` (see the module docstring); `kwargs` go to its constructor."""
    spec = spec.strip()
    if not spec:
        raise ValueError("empty completer spec: give a model name, a folder, a URL or vllm:MODEL")
    if spec.startswith(("http://", "https://")):
        from completers.openai_completer import OpenAICompleter

        return OpenAICompleter([url.strip() for url in spec.split(",") if url.strip()], **kwargs)
    if spec.startswith("vllm:"):
        from completers.vllm_completer import VLLMCompleter

        return VLLMCompleter(spec[len("vllm:"):], **kwargs)
    from completers.transformers_completer import TransformersCompleter

    return TransformersCompleter(spec, **kwargs)
