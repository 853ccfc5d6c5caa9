"""The tools' command lines report a bad input in one line on stderr (exit 2), not with a traceback."""
from __future__ import annotations

import os
import sys
from collections.abc import Callable, Sequence

from engine.worker_errors import one_line

# What bad input raises here: FormatError and ConfigError are ValueErrors; a missing, unreadable or
# unwritable file an OSError (DiskFullError included).
USER_ERRORS = (ValueError, OSError)


def run_cli(body: Callable[[Sequence[str] | None], int], argv: Sequence[str] | None) -> int:
    """Run a tool's ``main`` body; a user error becomes ``error: <message>`` and exit status 2.

    ``SFMVIT_DEBUG=1`` in the environment lets the traceback through instead.
    """
    try:
        return body(argv)
    except USER_ERRORS as error:
        if os.environ.get("SFMVIT_DEBUG"):
            raise
        print(f"error: {one_line(error)}", file=sys.stderr)
        return 2
