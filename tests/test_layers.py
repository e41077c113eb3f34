"""The import graph matches the layers in docs/architecture.md.

Every module of the four packages belongs to one layer; a module may import (at the top or
inside a function) only from its own layer and the layers its layer builds on, and no two
files import each other, directly or through others. A new module that matches no layer
fails here until it is given one.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("prm", "annotate", "completers", "evals")

# layer -> module prefixes (the longest matching prefix decides); bottom to top
LAYERS = {
    "base": ("prm", "prm.errors", "prm.records", "prm.io", "prm.formats", "prm.model_names", "prm.aggregate",
             "prm.progress", "prm.markdown",
             "prm.view_html", "prm.serving", "prm.agreement"),
    "completers": ("completers",),
    "reward": ("prm.reward",),
    "annotate": ("annotate",),
    "evals": ("evals",),
    "search": ("prm.search",),
    "rl": ("prm.rl",),
    "app": ("prm.app",),
}
# layer -> the other layers it may import
MAY_IMPORT = {
    "base": set(),
    "completers": {"base"},
    "reward": {"base"},
    "annotate": {"base", "completers", "reward"},
    "evals": {"base", "reward"},
    "search": {"base", "completers", "reward", "annotate"},
    "rl": {"base", "reward", "annotate"},
    "app": set(LAYERS),
}


def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            found[name.removesuffix(".__init__")] = path
    return found


def layer_of(module: str) -> str | None:
    best, best_prefix = None, ""
    for layer, prefixes in LAYERS.items():
        for prefix in prefixes:
            matches = module == prefix or (module.startswith(prefix + ".") and prefix != "prm")
            if matches and len(prefix) > len(best_prefix):
                best, best_prefix = layer, prefix
    return best


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """The project modules a file imports anywhere in it (lazy imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    found = set()
    for name in names:
        while name and name not in known:
            name = name.rpartition(".")[0]
        if name:
            found.add(name)
    return found


def graph() -> dict[str, set[str]]:
    known = modules()
    return {m: {d for d in imports(p, known) if d != m and not m.startswith(d + ".")} for m, p in known.items()}


def test_every_module_belongs_to_a_layer():
    assert [m for m in modules() if layer_of(m) is None] == []


def test_modules_import_only_their_own_layer_and_the_layers_below():
    wrong = []
    for module, deps in graph().items():
        layer = layer_of(module)
        for dep in deps:
            if layer_of(dep) not in MAY_IMPORT[layer] | {layer}:
                wrong.append(f"{module} ({layer}) imports {dep} ({layer_of(dep)})")
    assert sorted(wrong) == []


def test_no_two_files_import_each_other():
    edges = graph()

    def reachable(start: str) -> set[str]:
        seen, todo = set(), [start]
        while todo:
            for dep in edges[todo.pop()]:
                if dep not in seen:
                    seen.add(dep)
                    todo.append(dep)
        return seen

    cycles = sorted({tuple(sorted((a, b))) for a in edges for b in edges[a] if a in reachable(b)})
    assert cycles == []


def test_the_layer_check_catches_an_upward_import(tmp_path):
    """The checker itself: a base module importing the app is reported."""
    fake = tmp_path / "records.py"
    fake.write_text("from prm.app.cli import main\n", encoding="utf-8")
    deps = imports(fake, modules())
    assert "prm.app.cli" in deps and layer_of("prm.app.cli") not in MAY_IMPORT[layer_of("prm.records")]
