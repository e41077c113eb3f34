"""Step checkers: symbolic (sympy), formal (z3) and Lean verification of single steps."""

from annotate.checkers.base import Checker

__all__ = ["Checker"]
