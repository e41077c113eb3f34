"""Evals: metrics and reports for labels and reward models (step level, first error,
best-of-N)."""
