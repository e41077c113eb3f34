"""Which model-written Lean code may be run, and the resource limits Lean runs under.

A ```lean block in a step is written by a model, and Lean is a programming language:
`#eval`, `run_cmd`, `macro`/`elab` definitions, `initialize`, `@[extern]`, `unsafe` code
and `IO` can read files, start processes or open sockets while the block is elaborated.
So a block is run only if it passes an allow-list of what a proof needs (`vet`):

- top-level commands: `theorem`, `lemma`, `example`, `def` (with `noncomputable`,
  `private`, `protected` before them), `open` (without `in`), `variable`, `universe`,
  `namespace`/`section`/`end`, and the attribute `@[simp]`;
- `import` lines at the top, of allow-listed modules only (`Mathlib`, `Mathlib.*`,
  `Batteries`, `Batteries.*`, `Aesop`);
- `set_option` only for `linter.*` and `pp.*` options (never `maxHeartbeats 0`,
  `maxRecDepth`, ...);
- nowhere: `#` commands (`#eval`, `#exit`, `#print`, ...), string literals, name literals
  (backquote), `«»` identifiers, or any of the words in `FORBIDDEN_WORDS` (`IO`, `unsafe`,
  `run_cmd`, `macro`, `syntax`, `elab`, `extern`, `implemented_by`, `native_decide`, ...).

A command must start at the beginning of a line; a line that starts at column 0 with
anything else is refused (so a command cannot hide in a continuation line). Comments are
removed first, and the text Lean is sent is exactly the comment-free text that was vetted.

`resource_limits` gives the `preexec_fn` that caps the memory (RLIMIT_DATA: heap and other
private writable memory, not the read-only mapped .olean files), CPU time and file size of
every Lean process.
"""

from __future__ import annotations

import re

ALLOWED_COMMANDS = frozenset({"theorem", "lemma", "example", "def", "open", "variable",
                              "variables", "universe", "namespace", "section", "end"})
MODIFIERS = frozenset({"noncomputable", "private", "protected"})
ALLOWED_ATTRIBUTES = frozenset({"simp"})
ALLOWED_IMPORTS = re.compile(r"(Mathlib|Batteries)(\.[A-Z][A-Za-z0-9_]*)*|Aesop")
ALLOWED_OPTIONS = re.compile(r"(linter|pp)\.[A-Za-z0-9_.]+")
# Words (identifier components) that reach outside pure mathematics or into the elaborator.
FORBIDDEN_WORDS = frozenset("""
    IO BaseIO EIO EStateM ST System Process FS Handle Runtime Lean Elab Meta MetaM CoreM
    TermElabM TacticM CommandElabM MacroM Syntax Environment
    run_cmd run_tac run_elab run_meta by_elab macro macro_rules syntax elab elab_rules
    notation infix infixl infixr prefix postfix declare_syntax_cat attribute instance
    initialize builtin_initialize extern implemented_by export opaque partial
    native_decide ofReduceBool reduceBool dbg_trace dbgTrace import
""".split())
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_'!?]*(?:\.[A-Za-z_][A-Za-z0-9_'!?]*)*")


class Refused(ValueError):
    """The Lean code uses something a proof does not need; it is not run."""


def strip_comments(code: str) -> str:
    """`code` without `-- line` and (nested) `/- block -/` comments; Refused if a block
    comment is not closed."""
    out, i, depth = [], 0, 0
    while i < len(code):
        pair = code[i:i + 2]
        if depth:
            if pair == "/-":
                depth, i = depth + 1, i + 2
            elif pair == "-/":
                depth, i = depth - 1, i + 2
            else:
                i += 1
            continue
        if pair == "--":
            end = code.find("\n", i)
            i = len(code) if end < 0 else end
        elif pair == "/-":
            depth, i = 1, i + 2
        else:
            out.append(code[i])
            i += 1
    if depth:
        raise Refused("a block comment is not closed")
    return "".join(out)


def vet(code: str) -> str:
    """The code to send to Lean (comments removed), or `Refused` naming what is not allowed."""
    text = strip_comments(code)
    for char, what in (("#", "`#` commands (#eval, #exit, ...)"), ('"', "string literals"),
                       ("`", "name literals and quotations"), ("«", "«» identifiers"),
                       ("»", "«» identifiers")):
        if char in text:
            raise Refused(f"{what} are not allowed")
    body: list[str] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        if line.startswith("import ") and not body:
            for name in line[len("import "):].split():
                if not ALLOWED_IMPORTS.fullmatch(name):
                    raise Refused(f"line {number}: import of {name} (only Mathlib, Batteries "
                                  "and Aesop modules)")
            continue
        body.append(line)
        if not line[0].isspace():  # an indented line continues the command above
            _check_command_line(line, number)
    for name in _IDENTIFIER.findall("\n".join(body)):
        for part in name.split("."):
            if part in FORBIDDEN_WORDS or "unsafe" in part.lower():
                raise Refused(f"{part!r} is not allowed in a proof")
    for match in re.finditer(r"\bset_option\s+(\S+)", text):
        if not ALLOWED_OPTIONS.fullmatch(match.group(1)):
            raise Refused(f"set_option {match.group(1)} is not allowed (only linter.* and pp.*)")
    return text.strip()


def _check_command_line(line: str, number: int) -> None:
    rest = line.strip()
    while rest.startswith("@["):
        end = rest.find("]")
        if end < 0:
            raise Refused(f"line {number}: unclosed attribute")
        for attribute in rest[2:end].split(","):
            if attribute.strip() not in ALLOWED_ATTRIBUTES:
                raise Refused(f"line {number}: attribute @[{attribute.strip()}] is not allowed")
        rest = rest[end + 1:].strip()
    words = rest.split()
    while words and words[0] in MODIFIERS:
        words = words[1:]
    if not words:
        raise Refused(f"line {number}: a modifier or attribute without a declaration")
    command = words[0]
    if command == "set_option":  # its option is checked with every set_option in `vet`
        if len(words) <= 4:
            return  # `set_option pp.all true` or `... in` with the command on the next line
        command = words[4]  # set_option pp.all true in theorem ...
    if command not in ALLOWED_COMMANDS:
        raise Refused(f"line {number}: {command!r} is not an allowed command (theorem, lemma, "
                      "example, def, open, variable, namespace, section, end)")
    if command == "open" and re.search(r"\bin\b", rest):
        raise Refused(f"line {number}: `open ... in` is not allowed")


def resource_limits(memory_mb: int | None, cpu_seconds: int | None, file_mb: int = 64):
    """A `preexec_fn` for subprocess that caps the child's memory (RLIMIT_DATA), CPU time
    (RLIMIT_CPU, None: no cap) and the size of any file it writes; no core dumps."""

    def apply() -> None:
        import resource

        if memory_mb is not None:
            size = memory_mb * 1024 * 1024
            resource.setrlimit(resource.RLIMIT_DATA, (size, size))
        if cpu_seconds is not None:
            resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 5))
        resource.setrlimit(resource.RLIMIT_FSIZE, (file_mb * 1024 * 1024,) * 2)
        resource.setrlimit(resource.RLIMIT_CORE, (0, 0))

    return apply
