"""Markdown tables for the reports the toolkit writes (`prm eval`, `prm check-report`, the
demo, the benchmarks): one way to build them, with cells that cannot break the table."""

from __future__ import annotations


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
