"""Worker processes that end with their launcher and report a failure as one line, not a traceback wall."""
from __future__ import annotations

import ctypes
import ctypes.util
import faulthandler
import logging
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn

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


def watch_for_crashes() -> None:
    """Print every thread's Python stack if this worker dies of a signal (SIGSEGV, SIGABRT, ...).

    Without it a crash in C++ (torch, gloo) ends a worker with only the launcher's ``terminated with
    signal`` line and no hint of where the process was.
    """
    if not faulthandler.is_enabled():
        faulthandler.enable(all_threads=True)


def leave_worker() -> NoReturn:
    """End a worker whose work is done: output flushed, exit status 0, without the interpreter's teardown.

    torch's gloo backend keeps its C++ threads after ``destroy_process_group`` once a
    DistributedDataParallel model has used the group (torch 2.14: two ``pt_gloo_runloop`` threads
    and a ``gloo_tcp_loop`` thread per process, still there after the model is freed and
    ``gc.collect()``). One 2-process CPU training run of the test suite wrote every file, then its
    rank 1 ended in ``terminate called without an active exception`` (SIGABRT) after its last
    collective, and the launcher reported the run failed. C++ threads meeting a finalising
    interpreter is the usual cause of that message, and nothing is left to do in the teardown
    (every file is written by rename, TensorBoard is closed, the group is left), so the worker
    skips it; ``watch_for_crashes`` prints where, should it happen elsewhere.
    """
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # closed or gone: nothing left to flush
            pass
    os._exit(0)


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
