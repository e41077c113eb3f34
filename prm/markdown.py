"""Markdown tables for the reports the toolkit writes (`prm eval`, `prm check-report`, the
demo, the benchmarks): one way to build them, with cells that cannot break the table."""

from __future__ import annotations

import math

MISSING = "–"  # a value there is no data for (None, or NaN), in every report alike


def cell(value, limit: int | None = None) -> str:
    """A value as one table cell: `|` escaped, newlines as spaces, cut at `limit` characters."""
    text = "" if value is None else str(value)
    text = text.replace("|", "\\|").replace("\n", " ")
    return text if limit is None else text[:limit]


def table_lines(headers: list[str], rows) -> list[str]:
    """The lines of a markdown table: a header row, the separator, one line per row."""
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(cell(value) for value in row) + " |" for row in rows]
    return lines


def table(headers: list[str], rows) -> str:
    """A markdown table as text, ending with a newline."""
    return "\n".join(table_lines(headers, rows)) + "\n"


def percent(value: float | None, digits: int = 1) -> str:
    """A share in [0, 1] as a percentage with `digits` decimals ("58.3%"); `MISSING` for none."""
    return MISSING if _missing(value) else f"{100 * value:.{digits}f}%"


def number(value: float | None, digits: int = 3) -> str:
    """A number with `digits` decimals ("0.912"); `MISSING` for none."""
    return MISSING if _missing(value) else f"{value:.{digits}f}"


def _missing(value) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))
