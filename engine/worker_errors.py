"""Worker processes that end with their launcher and report a failure as one line, not a traceback wall."""
from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from common.cli import one_line

_PR_SET_PDEATHSIG = 1  # linux/prctl.h


@dataclass(frozen=True)
class RankFailure:
    """How one rank failed: its exception's type and message (one line), and the traceback."""

    rank: int
    kind: str
    message: str
    traceback: str

    def line(self) -> str:
        return f"rank {self.rank}: {self.kind}: {self.message}"


class WorkersFailed(RuntimeError):
    """One or more workers failed; ``failures`` says how, rank by rank."""

    def __init__(self, failures: list[RankFailure], fallback: str = "") -> None:
        self.failures = failures
        super().__init__("; ".join(f.line() for f in failures) or fallback)


def failure_of(rank: int, error: BaseException) -> RankFailure:
    """The RankFailure of ``error`` raised on ``rank``."""
    return RankFailure(rank, type(error).__name__, one_line(error),
                       "".join(traceback.format_exception(type(error), error, error.__traceback__)))


def end_with_parent(parent_pid: int) -> None:
    """Make this process die when ``parent_pid`` (the launcher) does, however it ends (SIGKILL too).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``; elsewhere a daemon thread polls the parent pid.
    Either way, a parent already gone by now ends this process at once.
    """
    armed = False
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            armed = libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) == 0
        except (OSError, AttributeError):
            armed = False
    if os.getppid() != parent_pid:  # the parent died before the signal was armed
        os._exit(1)
    if not armed:
        def watch() -> None:
            while os.getppid() == parent_pid:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="parent-watchdog", daemon=True).start()


def run_reporting(rank: int, queue: Any, work: Callable[[], object]) -> None:
    """Run ``work`` in a worker; on failure put a RankFailure on ``queue`` and exit with status 1.

    The exit goes through SystemExit, so the worker prints no traceback: the launcher prints the
    one-line report (and the traceback with ``--debug``).
    """
    try:
        work()
    except BaseException as error:  # noqa: BLE001 (every failure is reported, then the process ends)
        queue.put(failure_of(rank, error))
        raise SystemExit(1) from None


def drain(queue: Any) -> list[RankFailure]:
    """The failures put on ``queue`` so far, by rank."""
    failures = []
    while not queue.empty():
        failures.append(queue.get())
    return sorted(failures, key=lambda failure: failure.rank)
