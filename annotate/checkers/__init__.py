"""Step checkers: symbolic (sympy), formal (z3) and Lean verification of single steps.

Every checker has the same small interface (`Checker.check(problem, previous_steps, step)
-> Verdict`); `get_checker(name)` builds one by name without importing the others:

    from annotate.checkers import get_checker
    verdict = get_checker("sympy").check(problem, [], "48/2 = <<48/2=24>>24 clips")
"""

from __future__ import annotations

import importlib

from annotate.checkers.base import Checker

# name -> (module, class): imported only when asked for, so `import annotate.checkers` is light.
CHECKERS: dict[str, tuple[str, str]] = {
    "sympy": ("annotate.checkers.sympy_checker", "SympyChecker"),
    "z3": ("annotate.checkers.z3_checker", "Z3Checker"),
    "lean": ("annotate.checkers.lean_checker", "LeanChecker"),
}


def known_checker(name: str) -> str:
    """`name`, or a ValueError when no checker has it (nothing is imported)."""
    if name not in CHECKERS:
        raise ValueError(f"unknown checker {name!r}; choose from {', '.join(CHECKERS)}")
    return name


def get_checker(name: str, **options) -> Checker:
    """A checker by name ("sympy", "z3", "lean"); `options` go to its constructor."""
    module, cls = CHECKERS[known_checker(name)]
    return getattr(importlib.import_module(module), cls)(**options)


__all__ = ["Checker", "CHECKERS", "get_checker", "known_checker"]
