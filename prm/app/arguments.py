"""Argument types shared by the hand-written command lines (argparse `type=` callables that
refuse a bad value with a one-line message naming it)."""

from __future__ import annotations

import argparse

from annotate.runner import parse_shard


def positive_int(text: str) -> int:
    """A whole number of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def count(text: str) -> int:
    """A whole number of at least 0."""
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, got {value}")
    return value


def shard(text: str) -> tuple[int, int]:
    """`I/N`: shard I of N (see `annotate.runner.parse_shard`)."""
    try:
        return parse_shard(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
