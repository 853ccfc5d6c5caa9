"""The one exception type for malformed input files, and the close-match hint of error messages."""
from __future__ import annotations

import difflib
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
