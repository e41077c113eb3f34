"""Critic prompt templates for the LLM judge (`annotate.judge`), shipped as package data.

A template is a text file with two fields, `{problem}` and `{tagged_response}` (the steps,
each wrapped as `<paragraph_i>...</paragraph_i>` and indexed from 0, as ProcessBench does).
Fields are filled by plain replacement, so the rest of the text (LaTeX braces included) is
kept as written. A template is named by a packaged name or by a path to the user's own file:

- `processbench` (the default): ProcessBench's critic template (arXiv 2412.06559,
  `code/templates/critique_template.txt`): review paragraph by paragraph and put the index
  of the earliest wrong paragraph, or -1, in `\\boxed{}`. It is a user message: a completer
  with a chat template (SmolLM2-Instruct, Qwen, ...) renders it as the user turn.
- `processbench-chatml`: the same text already wrapped in ChatML turns, for servers reached
  through `/v1/completions` (which apply no chat template) that serve a ChatML model.
"""

from __future__ import annotations

import hashlib
from importlib import resources
from pathlib import Path

FIELDS = ("{problem}", "{tagged_response}")
DEFAULT_TEMPLATE = "processbench"


def packaged_templates() -> list[str]:
    """Names of the templates shipped with the package."""
    folder = resources.files(__name__)
    return sorted(p.name[:-4] for p in folder.iterdir() if p.name.endswith(".txt"))


def load_template(name_or_path: str | None = None) -> str:
    """The text of a packaged template (by name) or of a file (by path). A template without
    both fields is refused with a `ValueError` naming it."""
    name = name_or_path or DEFAULT_TEMPLATE
    packaged = resources.files(__name__) / f"{name}.txt"
    if "/" not in name and packaged.is_file():
        text = packaged.read_text(encoding="utf-8")
    else:
        path = Path(name)
        if not path.is_file():
            raise ValueError(f"judge template {name!r}: no such file, and not one of the packaged "
                             f"templates ({', '.join(packaged_templates())})")
        text = path.read_text(encoding="utf-8")
    missing = [f for f in FIELDS if f not in text]
    if missing:
        raise ValueError(f"judge template {name!r} lacks the field(s) {', '.join(missing)}")
    return text


def template_digest(name_or_path: str | None = None) -> str:
    """A short sha256 of the template's text: recorded with the labels, so that a resumed run
    notices an edited template."""
    return hashlib.sha256(load_template(name_or_path).encode("utf-8")).hexdigest()[:16]


def tagged_response(steps: list[str]) -> str:
    """The steps as ProcessBench shows them to a critic: `<paragraph_i>\\nstep\\n</paragraph_i>`,
    separated by blank lines."""
    return "\n\n".join(f"<paragraph_{i}>\n{step}\n</paragraph_{i}>" for i, step in enumerate(steps))


def fill(template: str, problem: str, steps: list[str]) -> str:
    """The template with its fields filled (plain replacement, no `str.format`)."""
    return template.replace("{problem}", problem.strip()).replace("{tagged_response}", tagged_response(steps))
