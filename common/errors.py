"""The one exception type for malformed input files, the numeric field parsers that raise it, and
the close-match hint of error messages."""
from __future__ import annotations

import difflib
import math
from collections.abc import Iterable
from pathlib import Path


class FormatError(ValueError):
    """A file does not follow its expected format.

    The message always names the file, and the line (1-based) or record when known, so a user can
    open the file at the right place.
    """

    def __init__(self, path: str | Path, problem: str, line: int | None = None) -> None:
        self.path = str(path)
        self.line = line
        self.problem = problem
        where = f"{self.path}, line {line}" if line is not None else self.path
        super().__init__(f"{where}: {problem}")


def close_match_hint(name: str, choices: Iterable[str]) -> str:
    """``"; did you mean 'x'?"`` for the closest of ``choices`` to a misspelt ``name``, else ``""``.

    Every "unknown key / unknown value" message of the project ends its first clause with this.
    """
    matches = difflib.get_close_matches(str(name), [str(choice) for choice in choices], n=1, cutoff=0.6)
    return f"; did you mean {matches[0]!r}?" if matches else ""


def parse_finite_float(value: str, column: str, path: str | Path, line: int) -> float:
    """A csv field as a finite float, or a FormatError naming the file, line and column.

    'nan' and 'inf' parse as floats but would slip through every range check, so they are errors.
    """
    try:
        number = float(value)
    except ValueError:
        raise FormatError(path, f"column {column!r} is not numeric: {value!r}", line) from None
    if not math.isfinite(number):
        raise FormatError(path, f"column {column!r} is not a finite number: {value!r}", line)
    return number


def parse_integer(value: str, column: str, path: str | Path, line: int) -> int:
    """A csv field as an int (``12`` or ``12.0``), or a FormatError naming the file, line and column."""
    number = parse_finite_float(value, column, path, line)
    if not number.is_integer():
        raise FormatError(path, f"column {column!r} must be an integer, found {value!r}", line)
    return int(number)
