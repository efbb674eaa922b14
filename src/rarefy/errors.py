"""Errors that rarefy raises for bad user input.

Every input problem is reported as a :class:`InputError` whose message is a single
line naming where the problem is (file, column, row) and what the bad value was.
The CLI turns it into that line on stderr and exit code 2.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


class InputError(ValueError):
    """Bad user input: a config, a data file, or a value in one.

    Parameters
    ----------
    message:
        What is wrong, in words.
    file, column, row:
        Where it is wrong, each optional. ``row`` is the 0-based data row of the file
        (the header is not counted).
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | Path | None = None,
        column: str | None = None,
        row: int | None = None,
    ) -> None:
        self.file = None if file is None else str(file)
        self.column = column
        self.row = row
        self.reason = message
        super().__init__(self._format())

    def _format(self) -> str:
        where = []
        if self.file is not None:
            where.append(self.file)
        if self.column is not None:
            where.append(f"column {self.column!r}")
        if self.row is not None:
            where.append(f"row {self.row}")
        prefix = ", ".join(where)
        text = f"{prefix}: {self.reason}" if prefix else self.reason
        return " ".join(text.split())  # always one line


def fmt_value(value: Any) -> str:
    """Short printable form of a bad value for an error message."""
    if hasattr(value, "item") and getattr(value, "ndim", 1) == 0:
        value = value.item()  # numpy scalar -> plain Python value
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
