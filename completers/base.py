"""The one interface every completer implements.

A completer takes a problem and a prefix of solution steps and samples N continuations
to a final answer. Math-Shepherd labels a step by how many continuations from the prefix
ending at that step reach the reference answer; the annotators in `annotate/` only ever
call `complete_many`, so a new backend is one new subclass.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass


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
    ("stop": end of answer reached; "length": max_new_tokens reached)."""

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
    """

    name: str = "completer"
    step_delimiter: str = "\n"

    @abstractmethod
    def complete_many(self, requests: list[CompletionRequest],
                      params: SamplingParams) -> list[list[Completion]]:
        """Sample `params.n` continuations for each request; one list per request, in order."""

    def complete(self, problem: str, prefix_steps: list[str],
                 params: SamplingParams | None = None) -> list[Completion]:
        """Sample continuations of one prefix."""
        return self.complete_many([CompletionRequest(problem, list(prefix_steps))],
                                  params or SamplingParams())[0]

    def split_steps(self, text: str) -> list[str]:
        """Split a generated solution into steps by the delimiter, dropping empty pieces."""
        return [piece.strip() for piece in text.split(self.step_delimiter) if piece.strip()]

    def close(self) -> None:
        """Release resources (threads, connections). Safe to call twice."""
