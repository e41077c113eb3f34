"""Completers: language-model backends that sample continuations of partial solutions,
and the embedded default world (a problem generator and a tiny model trained on it).

Kept light on purpose: importing `completers` does not import torch.
"""

from completers.base import Completer, Completion, CompletionRequest, SamplingParams

__all__ = ["Completer", "Completion", "CompletionRequest", "SamplingParams"]
