"""Errors raised for bad input.

Every error about a data file says where the problem is (file, line, field) so that a
user can open the file and fix it; the CLI prints the message alone, never a traceback.
"""

from __future__ import annotations


class RecordError(ValueError):
    """A record that cannot be read: names the file, the 1-based line and the field."""

    def __init__(self, message: str, *, path: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.path, self.line, self.field, self.reason = path, line, field, message
        where = []
        if path is not None:
            where.append(str(path))
        if line is not None:
            where.append(f"line {line}")
        if field is not None:
            where.append(f"field '{field}'")
        super().__init__(f"{', '.join(where)}: {message}" if where else message)

    def located(self, *, path: str | None = None, line: int | None = None) -> "RecordError":
        """The same error with the file and line filled in by the reader that knows them."""
        return RecordError(self.reason, path=self.path or path, line=self.line or line,
                           field=self.field)
