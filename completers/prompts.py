"""How a problem and a prefix of steps become a prompt.

The tiny model of the embedded world was trained on exactly `plain_prompt` followed by the
remaining steps, one per line, ending with `#### <answer>`. Models with a chat template
(e.g. SmolLM2-Instruct) get the problem as the user turn and the prefix as the start of
the assistant turn (see `TransformersCompleter`).
"""

from __future__ import annotations

# Also the `prompt_template` of reward models that read traces the way tiny-gsm wrote them.
PLAIN_TEMPLATE = "Question: {problem}\nAnswer:\n"


def plain_prompt(problem: str, prefix_steps: list[str], delimiter: str = "\n") -> str:
    """`PLAIN_TEMPLATE` filled with the problem, then each prefix step followed by the delimiter."""
    return PLAIN_TEMPLATE.replace("{problem}", problem.strip()) + "".join(s + delimiter for s in prefix_steps)
