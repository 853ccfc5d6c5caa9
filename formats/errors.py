"""The one exception type for malformed input files."""
from __future__ import annotations

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
