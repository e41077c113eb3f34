"""From what an RL trainer hands over to what a step scorer reads: (problem, steps).

TRL gives a reward function the prompts and completions, as plain text or as chat messages;
OpenRLHF sends each sample to a remote reward model as one `query`: the prompt and the
response decoded together with their special tokens. A step scorer needs the problem (the
question, without the prompt's template around it, because the scorer writes its own
template) and the response's steps.

Steps (`split_steps`): the response is cut at its final-answer line (`#### x`, GSM8K's
format; that line is the answer, not a step), then split on the step separator (a newline by
default); pieces are stripped and empty ones dropped. Trailing special tokens (`<|im_end|>`,
`</s>`, ...) are removed first.

The problem (`problem_from_prompt`):
1. conversational prompts: the content of the last user message;
2. a prompt rendered with a chat template (ChatML, Llama 3, Mistral `[INST]`): the text of
   the last user turn;
3. a prompt written with a template such as `"Question: {problem}\\nAnswer:\\n"` (tiny-gsm's,
   and the prompt template saved with this project's reward models): the text in place of
   `{problem}`;
4. otherwise the prompt itself, stripped.

Query -> (prompt, response) (`QuerySplitter.split`), for OpenRLHF's concatenated queries:
1. when the request also carries the sample's prompt (`prompts`, which OpenRLHF sends), the
   response is what follows the first occurrence of that prompt in the query;
2. otherwise the response starts after the last occurrence of a response marker, tried in
   this order: the markers given by the user (`--response-marker`), the text the prompt
   template writes after the problem when it is more than whitespace (`"\\nAnswer:\\n"`), and
   the assistant-turn openings of the chat formats above;
3. a query where neither works is refused with a message that says so, never guessed.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

# (user turn opening, end of a turn, assistant turn opening) of common chat templates
CHAT_FORMATS = {
    "chatml": ("<|im_start|>user\n", "<|im_end|>", "<|im_start|>assistant\n"),
    "llama3": ("<|start_header_id|>user<|end_header_id|>\n\n", "<|eot_id|>",
               "<|start_header_id|>assistant<|end_header_id|>\n\n"),
    "mistral": ("[INST]", "[/INST]", "[/INST]"),
}

_ANSWER_LINE = re.compile(r"(?m)^[ \t]*####")
_SPECIAL = r"(?:<\|[^|<>\s]{1,40}\|>|</?s>)"
_TRAILING_SPECIAL = re.compile(rf"(?:\s*{_SPECIAL})+\s*$")
_LEADING_SPECIAL = re.compile(rf"^(?:\s*{_SPECIAL})+")


def content_text(content) -> str:
    """A message's content as text: a string, or the text blocks of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content
                       if isinstance(block, dict) and block.get("type", "text") == "text")
    return "" if content is None else str(content)


def completion_text(completion) -> str:
    """A TRL completion as text: the string itself, or the assistant messages' contents joined."""
    if isinstance(completion, str):
        return completion
    if isinstance(completion, list):
        messages = [m for m in completion if isinstance(m, dict)]
        if any("role" in m for m in messages):
            messages = [m for m in messages if m.get("role") == "assistant"]
        return "".join(content_text(m.get("content")) for m in messages)
    raise TypeError(f"a completion must be a string or a list of messages, got {type(completion).__name__}")


def strip_special(text: str) -> str:
    """`text` without the special tokens (`<|...|>`, `<s>`, `</s>`) at its start and end."""
    return _TRAILING_SPECIAL.sub("", _LEADING_SPECIAL.sub("", text))


def split_steps(text: str, separator: str = "\n") -> list[str]:
    """The steps of a response: before its final-answer line, split on `separator`, stripped."""
    return [step for step, _ in step_spans(text, separator)]


def step_spans(text: str, separator: str = "\n") -> list[tuple[str, int]]:
    """Each step of `split_steps` with the character offset in `text` just after its last character."""
    if not separator:
        raise ValueError("the step separator must not be empty")
    lead = len(text) - len(_LEADING_SPECIAL.sub("", text))
    body = strip_special(text)
    match = _ANSWER_LINE.search(body)
    if match:
        body = body[:match.start()]
    spans, position = [], lead
    for piece in body.split(separator):
        step = piece.strip()
        if step:
            spans.append((step, position + piece.index(step) + len(step)))
        position += len(piece) + len(separator)
    return spans


def template_pattern(template: str) -> re.Pattern:
    """A regex capturing the problem of a prompt written with `template` (`{problem}` inside)."""
    if "{problem}" not in template:
        raise ValueError(f"a prompt template must contain {{problem}}, got {template!r}")
    before, _, after = template.partition("{problem}")
    return re.compile(re.escape(before.strip()) + r"\s*(.*?)\s*" + re.escape(after.rstrip()) + r"\s*$",
                      re.DOTALL)


def problem_from_prompt(prompt, template: str | None = None) -> str:
    """The problem inside a prompt (plain text or chat messages); see the module docstring."""
    if isinstance(prompt, list):
        users = [m for m in prompt if isinstance(m, dict) and m.get("role") == "user"]
        if users:
            return content_text(users[-1].get("content")).strip()
        return "\n".join(content_text(m.get("content")) for m in prompt if isinstance(m, dict)).strip()
    if not isinstance(prompt, str):
        raise TypeError(f"a prompt must be a string or a list of messages, got {type(prompt).__name__}")
    for user, end, _ in CHAT_FORMATS.values():
        start = prompt.rfind(user)
        if start >= 0:
            body = prompt[start + len(user):]
            stop = body.find(end)
            return strip_special(body if stop < 0 else body[:stop]).strip()
    text = strip_special(prompt)
    if template:
        match = template_pattern(template).search(text)
        if match:
            return match.group(1).strip()
    return text.strip()


@dataclass
class QuerySplitter:
    """Splits OpenRLHF queries (prompt + response in one text) into (problem, response).

    template: the prompt template of the scorer (`{problem}` inside), used to find the problem
    and, when it writes more than whitespace after the problem, as a response marker.
    markers: extra texts that end a prompt, tried first.
    """

    template: str | None = None
    markers: tuple[str, ...] = ()
    _all_markers: tuple[str, ...] = field(init=False, repr=False)

    def __post_init__(self):
        markers = [m for m in self.markers if m]
        if self.template:
            tail = self.template.partition("{problem}")[2]
            if tail.strip():
                markers.append(tail)
        markers += [assistant for _, _, assistant in CHAT_FORMATS.values()]
        self._all_markers = tuple(dict.fromkeys(markers))

    def split(self, query: str, prompt: str | None = None) -> tuple[str, str]:
        """(problem, response) of one query; ValueError when the response cannot be found."""
        if prompt:
            start = query.find(prompt)
            if start < 0:
                stripped = strip_special(prompt)
                start = query.find(stripped) if stripped else -1
                prompt = stripped
            if start < 0:
                raise ValueError("the query does not contain its prompt")
            return problem_from_prompt(prompt, self.template), strip_special(query[start + len(prompt):])
        for marker in self._all_markers:
            position = query.rfind(marker)
            if position >= 0:
                cut = position + len(marker)
                return problem_from_prompt(query[:cut], self.template), strip_special(query[cut:])
        raise ValueError("cannot tell where the response starts: send `prompts` with the queries, or start "
                         f"the server with --response-marker (markers tried: {list(self._all_markers)})")
