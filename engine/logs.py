"""Run logging: console + ``log.txt`` handlers, the original's tab-separated logs, TensorBoard (rank 0)."""
from __future__ import annotations

import logging
import sys
from pathlib import Path

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(result_path: str | Path | None, is_main: bool, rank: int = 0) -> None:
    """Configure the root logger once per process.

    Rank 0 logs INFO to the console and to ``result_path/log.txt``; other ranks log warnings and
    errors only, tagged with their rank, so a multi-process run prints one stream of progress.
    """
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
        handler.close()
    root.setLevel(logging.INFO if is_main else logging.WARNING)
    fmt = LOG_FORMAT if is_main else f"[rank {rank}] {LOG_FORMAT}"
    console = logging.StreamHandler(sys.stderr)
    console.setFormatter(logging.Formatter(fmt, datefmt="%H:%M:%S"))
    root.addHandler(console)
    if is_main and result_path is not None:
        Path(result_path).mkdir(parents=True, exist_ok=True)
        file_handler = logging.FileHandler(Path(result_path) / "log.txt", encoding="utf-8")
        file_handler.setFormatter(logging.Formatter(LOG_FORMAT))
        root.addHandler(file_handler)
    # Libraries that log chattily at INFO would drown the progress lines.
    for noisy in ("PIL", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


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


class NullWriter:
    """Stands in for a SummaryWriter on ranks other than 0, so callers need no rank checks."""

    def add_scalar(self, *args: object, **kwargs: object) -> None:
        return None

    def flush(self) -> None:
        return None

    def close(self) -> None:
        return None


def create_tensorboard_writer(result_path: str | Path, is_main: bool):
    """A ``SummaryWriter`` on ``result_path/tb`` for rank 0, a no-op writer elsewhere."""
    if not is_main:
        return NullWriter()
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(log_dir=str(Path(result_path) / "tb"))
