"""Annotation: turn unlabeled traces into step-labeled traces (Monte Carlo completions,
binary search for the first error, symbolic and formal checkers)."""
