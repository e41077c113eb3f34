"""Completers: language-model backends that sample continuations of partial solutions,
and the embedded default world (a problem generator and a tiny model trained on it).

Kept light on purpose: importing `completers` does not import torch. The backends are
loaded on first use (`completers.TransformersCompleter` imports torch then, and
`completers.VLLMCompleter` needs vLLM).
"""

import importlib

from completers.base import Completer, Completion, CompletionRequest, SamplingParams

# name -> module that defines it, imported on first access (PEP 562)
_LAZY = {
    "TransformersCompleter": "completers.transformers_completer",
    "OpenAICompleter": "completers.openai_completer",
    "CompletionError": "completers.openai_completer",
    "CompletionServer": "completers.server",
    "VLLMCompleter": "completers.vllm_completer",
    "load_completer": "completers.loading",
}

__all__ = ["Completer", "Completion", "CompletionRequest", "SamplingParams", *_LAZY]


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'completers' has no attribute {name!r}")
