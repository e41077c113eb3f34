"""The text conventions every completer shares: how a problem and a prefix of steps become
a prompt, and where a sampled continuation ends. Free of torch, so every backend and the
HTTP server agree on them.

- Prompts: the tiny model of the embedded world was trained on exactly `plain_prompt`
  followed by the remaining steps, one per line, ending with `#### <answer>`.
  `prompt_builder(template)` turns a user format string (fields `{problem}` and `{prefix}`)
  or any callable into the same kind of function. Models with a chat template (e.g.
  SmolLM2-Instruct) get `chat_prompt`: the problem as the user turn and the prefix as the
  unfinished start of the assistant turn.
- Endings: `cut_at_stop(text, stop, answer_line)`. A stop string ends a continuation before
  the string (OpenAI semantics); a GSM8K answer line (`#### 42` followed by a newline) ends
  it after the answer, so a model that keeps writing after its answer is cut at the same
  place by every backend.
"""

from __future__ import annotations

import re
from typing import Callable

PromptBuilder = Callable[[str, list[str], str], str]

# Also the `prompt_template` of reward models that read traces the way tiny-gsm wrote them.
PLAIN_TEMPLATE = "Question: {problem}\nAnswer:\n"

# A finished GSM8K answer line: `#### <answer>` at the start of a line, ended by a newline.
ANSWER_LINE = re.compile(r"(?m)^####[^\n]*\n")

_SENTINEL = "\u2063PRM-ASSISTANT-TURN\u2063"  # marks where the assistant's text starts in a chat render


def plain_prompt(problem: str, prefix_steps: list[str], delimiter: str = "\n") -> str:
    """`PLAIN_TEMPLATE` filled with the problem, then each prefix step followed by the delimiter."""
    return PLAIN_TEMPLATE.replace("{problem}", problem.strip()) + "".join(s + delimiter for s in prefix_steps)


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


def chat_prompt(tokenizer, problem: str, prefix_steps: list[str], delimiter: str = "\n") -> str:
    """The chat template rendered with the problem as the user turn and the prefix steps as the
    unfinished start of the assistant turn (no end-of-turn after them)."""
    messages = [{"role": "user", "content": problem.strip()},
                {"role": "assistant", "content": _SENTINEL}]
    rendered = tokenizer.apply_chat_template(messages, tokenize=False)
    if _SENTINEL in rendered:
        head = rendered[:rendered.index(_SENTINEL)]
    else:  # a template that rewrites the assistant turn: fall back to the generation prompt
        head = tokenizer.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    return head + "".join(step + delimiter for step in prefix_steps)


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
