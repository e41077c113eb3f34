"""How a model spec becomes a completer, and the text conventions every backend shares.

`load_completer(spec)` is the one place that turns what a user types (`--completer ...`)
into a backend:

- `http://host:port[/v1]` (several separated by commas) -> `OpenAICompleter`
- `vllm:PATH_OR_NAME` -> `VLLMCompleter` (needs vLLM and a GPU)
- anything else (a short name such as `tiny-gsm`, or a local folder) -> `TransformersCompleter`

The shared conventions (kept here, free of torch, so every backend and the HTTP server
agree on them):

- `prompt_builder(template)`: how (problem, prefix steps) becomes prompt text when the model has
  no chat template: `completers.prompts.plain_prompt` by default, or a user format string with
  `{problem}` and `{prefix}` fields, or any callable.
- `cut_at_stop(text, stop, answer_line)`: where a sampled continuation ends. A stop string
  ends it before the string (OpenAI semantics); a GSM8K answer line (`#### 42` followed by a
  newline) ends it after the answer, so a model that keeps writing after its answer is cut
  at the same place by every backend.
"""

from __future__ import annotations

import re
from typing import Callable

from completers.base import Completer
from completers.prompts import plain_prompt

PromptBuilder = Callable[[str, list[str], str], str]

# A finished GSM8K answer line: `#### <answer>` at the start of a line, ended by a newline.
ANSWER_LINE = re.compile(r"(?m)^####[^\n]*\n")


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


def prompt_builder(template: str | PromptBuilder | None = None) -> PromptBuilder:
    """A function (problem, prefix_steps, delimiter) -> prompt text.

    None: `plain_prompt` (the tiny model's format). A string: a format string with the fields
    `{problem}` and `{prefix}` (the prefix steps, each followed by the delimiter), e.g.
    `"Problem: {problem}\\nSolution:\\n{prefix}"`. A callable is returned unchanged.
    """
    if template is None:
        return plain_prompt
    if callable(template):
        return template
    if "{problem}" not in template or "{prefix}" not in template:
        raise ValueError("a prompt template must contain the fields {problem} and {prefix}, "
                         f"got {template!r}")

    def build(problem: str, prefix_steps: list[str], delimiter: str = "\n") -> str:
        prefix = "".join(step + delimiter for step in prefix_steps)
        return template.replace("{problem}", problem.strip()).replace("{prefix}", prefix)

    return build


def normalize_stop(stop: str | list[str] | tuple[str, ...] | None) -> tuple[str, ...]:
    """Stop strings as a tuple (OpenAI accepts one string or a list); empty strings dropped."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        stop = [stop]
    return tuple(s for s in stop if s)


def cut_at_stop(text: str, stop: tuple[str, ...] = (), answer_line: bool = True) -> str | None:
    """`text` cut where the continuation ends, or None if it has not ended yet.

    The earliest ending wins: a stop string cuts before itself; a finished answer line
    (`#### x` + newline) cuts after `#### x`.
    """
    ends = [i for i in (text.find(s) for s in stop) if i >= 0]
    if answer_line:
        match = ANSWER_LINE.search(text)
        if match:
            ends.append(match.end() - 1)  # keep the answer, drop its newline
    return text[:min(ends)] if ends else None
