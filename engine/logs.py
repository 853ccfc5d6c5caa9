"""Run logging: console + ``log.txt`` handlers, the original's tab-separated logs, TensorBoard (rank 0)."""
from __future__ import annotations

import contextlib
import logging
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

from tqdm import tqdm
from tqdm.contrib.logging import logging_redirect_tqdm

from common.cli import LOG_FORMAT, OWNED_HANDLER, remove_owned_handlers


def _install(root: logging.Logger, handler: logging.Handler, fmt: str, datefmt: str | None = None) -> None:
    handler.setFormatter(logging.Formatter(fmt, datefmt=datefmt))
    setattr(handler, OWNED_HANDLER, True)
    root.addHandler(handler)


def setup_logging(result_path: str | Path | None, is_main: bool, rank: int = 0) -> None:
    """Configure the root logger once per process.

    Rank 0 logs INFO to the console and to ``result_path/log.txt``; other ranks log warnings and
    errors only, tagged with their rank, so a multi-process run prints one stream of progress.
    It replaces the handlers an earlier call, or the command line's ``common.cli.setup_logging``
    in this process, installed (a one-process ``main.py`` runs its worker in the launcher's
    process); handlers installed by anyone else stay.
    """
    root = logging.getLogger()
    remove_owned_handlers(root)
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    fmt = LOG_FORMAT if is_main else f"[rank {rank}] {LOG_FORMAT}"
    _install(root, logging.StreamHandler(sys.stderr), fmt, datefmt="%H:%M:%S")
    if is_main and result_path is not None:
        Path(result_path).mkdir(parents=True, exist_ok=True)
        _install(root, logging.FileHandler(Path(result_path) / "log.txt", encoding="utf-8"), LOG_FORMAT)
    # Libraries that log chattily at INFO would drown the progress lines.
    for noisy in ("PIL", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


@contextlib.contextmanager
def batch_progress(loader: object, desc: str, enabled: bool) -> Iterator[tqdm]:
    """A tqdm bar over ``loader``'s batches (it must have a length), shown when ``enabled`` (rank 0).

    While the bar is open, the root logger's console handlers write through ``tqdm.write``
    (``logging_redirect_tqdm``), so that a log line inside the loop does not break the bar.
    """
    with logging_redirect_tqdm(), tqdm(loader, total=len(loader), desc=desc, unit="batch", disable=not enabled,
                                       dynamic_ncols=True, leave=False) as bar:
        yield bar


class TabLogger:
    """Append rows to a tab-separated log with a header line, as the original's ``Logger``.

    The header is written when the file is new; appending keeps earlier epochs when a run resumes.
    Each row is flushed at once so a crash loses at most the row being written.
    """

    def __init__(self, path: str | Path, columns: list[str]) -> None:
        self.path = Path(path)
        self.columns = list(columns)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.path.exists() or self.path.stat().st_size == 0
        self._handle = self.path.open("a", encoding="utf-8")
        if new_file:
            self._handle.write("\t".join(self.columns) + "\n")
            self._handle.flush()

    def log(self, values: dict[str, object]) -> None:
        missing = [c for c in self.columns if c not in values]
        if missing:
            raise KeyError(f"{self.path.name}: row lacks column(s) {missing}")
        self._handle.write("\t".join(str(values[c]) for c in self.columns) + "\n")
        self._handle.flush()

    def close(self) -> None:
        self._handle.close()


class ScalarWriter(Protocol):
    """The part of TensorBoard's ``SummaryWriter`` a run uses (``global_step``: ``engine.context.global_step``)."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> None: ...

    def flush(self) -> None: ...

    def close(self) -> None: ...


class NullWriter:
    """Stands in for a SummaryWriter on ranks other than 0, so callers need no rank checks."""

    def add_scalar(self, tag: str, scalar_value: float, global_step: int) -> None:
        return None

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def create_tensorboard_writer(result_path: str | Path, is_main: bool) -> ScalarWriter:
    """A ``SummaryWriter`` on ``result_path/tb`` for rank 0, a no-op writer elsewhere."""
    if not is_main:
        return NullWriter()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(Path(result_path) / "tb"))
