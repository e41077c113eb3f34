"""The one interface every completer implements.

A completer takes a problem and a prefix of solution steps and samples N continuations.
Math-Shepherd labels a step by how many continuations from the prefix ending at that step
reach the reference answer; step-level search samples the next step only (a stop string at
the step delimiter). Everything above this layer (annotation, search, the HTTP server)
calls the methods below and nothing else, so a new backend is one subclass that implements
`complete_prompts`:

- `prompt_for(problem, prefix_steps)`: the prompt text (written once, here, from the
  backend's `prompt_template`, or its tokenizer's chat template);
- `complete_prompts(prompts, params, *, stop, seeds, ns)`: sample continuations of raw
  prompt texts, with optional extra stop strings and a per-prompt seed and sample count;
- `complete_many(requests, params)` / `complete(problem, prefix_steps, params)`: the same
  for (problem, prefix) requests;
- `prompt_tokens(prompt)`: the prompt's length in tokens, or None if the backend cannot tell.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass

from completers.text import PromptBuilder, chat_prompt, plain_prompt


@dataclass
class SamplingParams:
    """How to sample. `seed` makes a request reproducible: the same (prompt, seed) gives the
    same samples; sample j of a request uses its own stream derived from the seed."""

    n: int = 8
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 256
    seed: int | None = 0


@dataclass
class Completion:
    """One sampled continuation: its text, how many tokens it took, and why it stopped
    ("stop": end of answer or a stop string reached; "length": max_new_tokens reached)."""

    text: str
    tokens: int
    finish_reason: str = "stop"


@dataclass
class CompletionRequest:
    """A problem and the solution steps written so far (possibly none)."""

    problem: str
    prefix_steps: list[str]


class Completer(ABC):
    """Samples continuations of partial solutions.

    step_delimiter: the text between two steps, in prompts and in `split_steps`.
    build_prompt: how (problem, prefix, delimiter) becomes a prompt without a chat template;
        backends set it from their `prompt_template` with `completers.text.prompt_builder`
        (default `plain_prompt`, tiny-gsm's format).
    use_chat_template: render prompts with `tokenizer`'s chat template instead.
    """

    name: str = "completer"
    step_delimiter: str = "\n"
    build_prompt: PromptBuilder = staticmethod(plain_prompt)
    use_chat_template: bool = False
    tokenizer = None
    # How many callers' calls (e.g. traces being labelled) this backend wants merged into one
    # call (`completers.batching.CallBatcher`); 1: call it directly. An in-process sampler
    # pays per decoding step whatever the batch, so it samples fastest with many merged.
    merge_calls: int = 1

    @abstractmethod
    def complete_prompts(self, prompts: list[str], params: SamplingParams, *,
                         stop: str | list[str] | None = None, seeds: list[int | None] | None = None,
                         ns: list[int] | None = None) -> list[list[Completion]]:
        """Sample continuations of raw prompt texts; one list per prompt, in order.

        stop: stop strings for this call, added to the backend's own (cut before them).
        seeds / ns: per-prompt seed and sample count, overriding `params.seed` / `params.n`.
        """

    def prompt_for(self, problem: str, prefix_steps: list[str]) -> str:
        """The prompt text for a problem and the steps written so far."""
        if self.use_chat_template:
            return chat_prompt(self.tokenizer, problem, list(prefix_steps), self.step_delimiter)
        return self.build_prompt(problem, list(prefix_steps), self.step_delimiter)

    def complete_many(self, requests: list[CompletionRequest], params: SamplingParams, *,
                      stop: str | list[str] | None = None) -> list[list[Completion]]:
        """Sample `params.n` continuations for each request; one list per request, in order."""
        prompts = [self.prompt_for(r.problem, r.prefix_steps) for r in requests]
        return self.complete_prompts(prompts, params, stop=stop)

    def complete(self, problem: str, prefix_steps: list[str],
                 params: SamplingParams | None = None) -> list[Completion]:
        """Sample continuations of one prefix."""
        return self.complete_many([CompletionRequest(problem, list(prefix_steps))], params or SamplingParams())[0]

    def prompt_tokens(self, prompt: str) -> int | None:
        """How many tokens `prompt` takes, or None if this backend cannot tell."""
        return None

    def split_steps(self, text: str) -> list[str]:
        """Split a generated solution into steps by the delimiter, dropping empty pieces."""
        return [piece.strip() for piece in text.split(self.step_delimiter) if piece.strip()]

    def close(self) -> None:
        """Release resources (threads, connections). Safe to call twice."""


def per_prompt(params: SamplingParams, count: int, seeds: list[int | None] | None,
               ns: list[int] | None) -> list[tuple[int | None, int]]:
    """(seed, n) for each of `count` prompts: the per-prompt lists where given, else `params`."""
    for name, values in (("seeds", seeds), ("ns", ns)):
        if values is not None and len(values) != count:
            raise ValueError(f"{name} has {len(values)} entries for {count} prompts")
    return [(params.seed if seeds is None else seeds[i], params.n if ns is None else ns[i]) for i in range(count)]
