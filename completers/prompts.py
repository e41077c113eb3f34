"""How a problem and a prefix of steps become a prompt.

The tiny model of the embedded world was trained on exactly `plain_prompt` followed by the
remaining steps, one per line, ending with `#### <answer>`. Models with a chat template
(e.g. SmolLM2-Instruct) get the problem as the user turn and the prefix as the start of
the assistant turn (see `TransformersCompleter`).
"""

from __future__ import annotations


def plain_prompt(problem: str, prefix_steps: list[str], delimiter: str = "\n") -> str:
    """`Question: <problem>\\nAnswer:\\n` then each prefix step followed by the delimiter."""
    return f"Question: {problem.strip()}\nAnswer:\n" + "".join(s + delimiter for s in prefix_steps)
