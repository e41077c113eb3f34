"""Imported by `CheckerPool`'s fork server: the checkers' modules, with their one-off costs
paid there once, so that every worker forked from it starts warm.

A process's first checks pay costs that have nothing to do with the step: latex2sympy2_extended
and the sympy modules it and `sympy.simplify` need are imported on first use
(sympy.physics.units alone takes a third of a second), and ANTLR builds the LaTeX parser's
tables; about half a CPU-second in all. Paid in the fork server, it is paid once instead of
once per worker (a fork shares the memory), partly while the main process is still reading
its input, and outside every check's time limit: a cold worker pays it inside its first
checks' limits (1 s a claim), which a loaded machine can stretch past them.

Only speed depends on this: a check gives the same verdict warm or cold (the caches hold
parse tables and sympy's results, not decisions). The steps below are generic arithmetic,
algebra and LaTeX, not taken from any benchmark. The checkers' own modules are preloaded by
name (`annotate.checkers.parallel.start_fork_server`), so only the checkers asked for are
imported.
"""

from __future__ import annotations

import annotate.checkers.sympy_checker

WARM_STEPS = [  # a calculator note, plain text, LaTeX and an equation (sympy.simplify): each path once
    "She sold 48/2 = <<48/2=24>>24 clips in May, so 48 + 24 = 72 in all.",
    "So $\\frac{3}{4} \\cdot 8 = 6$ and $\\sqrt{8} = 2\\sqrt{2}$, and $(x + 1)^2 = x^2 + 2x + 1$.",
    "We have $2x + 1 = 7$.",
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
