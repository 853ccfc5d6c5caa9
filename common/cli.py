"""The one convention of every command line (``main.py``, ``calc_mAP.py``, each ``python -m`` module).

- A usage error is argparse's own (``usage: ...`` then ``prog: error: ...``), exit status 2.
- A known error (``KNOWN_ERRORS``: a bad config or input file, a missing, unreadable or unwritable
  file, a full disk) is ONE line ``error: <message>`` on stderr, no traceback, exit status 2
  (``BAD_INPUT``). ``FormatError``, ``ConfigError`` and the other config errors are ValueErrors;
  ``DiskFullError`` and ``FileNotFoundError`` are OSErrors.
- Exit status 1 (``FAILED``): the job ran and failed or found problems (a worker failed, a video
  could not be read, ``check_data`` found problems). A command line names the errors that mean this
  with ``failures=``; ``calc_mAP.py`` and ``tools.video_demo`` report a bad input file with 1, as
  before this convention, because their callers and tests rely on it.
- ``--debug`` (where the command line has it) or ``SFMVIT_DEBUG=1`` lets the traceback through.
- Logging: one format for every command line, INFO unless the command line asks for less; one
  console handler per process, whoever sets it up (``OWNED_HANDLER``), so every line is printed once.

It lives in common/, the bottom layer, because every layer with a ``__main__`` may import it
(``datasets.frame_store`` may not import tools/ or engine/), and it imports the standard library only,
so that ``--help`` costs no more than the command line's own parser.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

ERROR_PREFIX = "error: "
FAILED = 1
BAD_INPUT = 2
KNOWN_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError)
DEBUG_ENV = "SFMVIT_DEBUG"
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
LOG_DATE_FORMAT = "%H:%M:%S"
# Attribute set on the handlers this module and ``engine.logs`` install. Each setup removes the marked
# handlers before adding its own: ``main.py`` with one process runs the worker in the launcher's
# process, and two console handlers there printed every line of the run twice.
OWNED_HANDLER = "_sfmvit_log_handler"

Argv = Sequence[str] | None


def one_line(error: BaseException) -> str:
    """``str(error)`` on one line (a multi-line message joined with ' | '), or its type when empty."""
    text = " | ".join(line.strip() for line in str(error).strip().splitlines() if line.strip())
    return text or type(error).__name__


def print_error(message: str) -> None:
    """``error: <message>`` on stderr: the one line a command line prints for a known error."""
    print(f"{ERROR_PREFIX}{message}", file=sys.stderr)


def debug_requested(args: argparse.Namespace | None = None) -> bool:
    """True when the command line's ``--debug`` or ``SFMVIT_DEBUG`` asks for tracebacks."""
    return bool(getattr(args, "debug", False) or os.environ.get(DEBUG_ENV))


def remove_owned_handlers(root: logging.Logger) -> None:
    """Remove and close the handlers an earlier setup of ours installed; everyone else's stay."""
    for handler in list(root.handlers):
        if getattr(handler, OWNED_HANDLER, False):
            root.removeHandler(handler)
            handler.close()


def setup_logging(level: int = logging.INFO) -> None:
    """The log format of every command line (time, level, logger, message) on stderr.

    As ``logging.basicConfig``, it leaves a root logger alone that already has handlers of someone
    else (pytest's, an embedding program's); unlike it, a second call replaces the handler of the
    first instead of keeping it beside a later one.
    """
    root = logging.getLogger()
    remove_owned_handlers(root)
    if root.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT, datefmt=LOG_DATE_FORMAT))
    setattr(handler, OWNED_HANDLER, True)
    root.addHandler(handler)
    root.setLevel(level)


def run_main(parse: Callable[[Argv], argparse.Namespace], body: Callable[[argparse.Namespace], int], argv: Argv,
             *, failures: tuple[type[BaseException], ...] = (),
             log_level: int | Callable[[argparse.Namespace], int] = logging.INFO) -> int:
    """The tail of every ``main``: parse, set up logging, run ``body``; returns the exit status.

    Args:
        parse: ``argv -> Namespace`` (``build_parser().parse_args`` or the command line's own parse
            function); its usage errors stay argparse's (SystemExit 2).
        body: the work; returns the exit status (0, or ``FAILED`` when it found problems).
        argv: the arguments (None: ``sys.argv[1:]``).
        failures: errors that mean "ran and failed": one line, exit status 1. Checked before
            ``KNOWN_ERRORS``, which give one line and exit status 2.
        log_level: the logging level, or a function of the parsed arguments giving it (``-v``).
    """
    args = parse(argv)
    setup_logging(log_level(args) if callable(log_level) else log_level)
    try:
        return body(args)
    except (*failures, *KNOWN_ERRORS) as error:
        if debug_requested(args):
            raise
        print_error(one_line(error))
        return FAILED if isinstance(error, failures) else BAD_INPUT
