"""Imported by `CheckerPool`'s fork server: the checkers' modules, with their one-off costs
paid there once, so that every worker forked from it starts warm.

A process's first checks are slow for reasons that have nothing to do with the step: the
LaTeX parser (latex2sympy2_extended) and the sympy modules it needs are imported on first
use, and ANTLR builds the parser's tables. Paid in every worker, that is up to a second of
CPU each on MATH-style steps, which a second worker does not shorten. Paid in the fork
server (a fraction of a second, while the main process is still starting and reading its
input), the workers inherit it: a fork shares the memory. The checkers' own modules are
preloaded by name (`CheckerPool`), so that only the checkers asked for are imported.

Only speed depends on this: a check gives the same verdict warm or cold (the caches hold
parse tables and sympy's results, not decisions). The steps below are generic arithmetic,
algebra and LaTeX constructs, not taken from any benchmark.
"""

from __future__ import annotations

import annotate.checkers.sympy_checker

WARM_STEPS = [  # a calculator note, plain text and LaTeX: each path through the parsers once
    "She sold 48/2 = <<48/2=24>>24 clips in May, so 48 + 24 = 72 in all.",
    "So $\\frac{3}{4} \\cdot 8 = 6$ and $\\sqrt{8} = 2\\sqrt{2}$, and $(x + 1)^2 = x^2 + 2x + 1$.",
]


def warm_up() -> None:
    """Check `WARM_STEPS` once with the sympy checker (whose parsing the z3 checker shares)."""
    checker = annotate.checkers.sympy_checker.SympyChecker()
    for step in WARM_STEPS:
        checker.check("", [], step)


try:
    warm_up()
except Exception:  # noqa: BLE001 (a failure must not stop the fork server; the workers then warm up alone)
    pass
