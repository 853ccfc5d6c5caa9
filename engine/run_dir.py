"""The result folder of a run: refuse to mix two runs, lock it, clean our temporaries, merge the summary."""
from __future__ import annotations

import json
import logging
import os
import re
import socket
from pathlib import Path

from common.atomic import write_text_atomic
from config import Config
from engine.checkpoint import list_checkpoints

logger = logging.getLogger(__name__)

LOCK_NAME = ".run.lock"
SUMMARY_NAME = "run_summary.json"
# common.atomic.atomic_open's temporaries: ``.{name}.{random}.tmp``.
_OUR_TEMPORARY = re.compile(r"^\..+\.tmp$")


class RunDirError(ValueError):
    """A result_path that this run must not write (another run's results, or a run in progress)."""


def check_result_path(cfg: Config) -> None:
    """Refuse, before anything starts, a result_path this run would mix up with another run's.

    A training run that neither resumes nor overwrites must not start in a folder holding
    checkpoints (it would interleave its ckpt_{epoch} files and logs with theirs); and no run may
    start while another live process holds the folder's lock.

    Raises:
        RunDirError: naming the folder, what it holds and the keys that allow it.
    """
    folder = Path(cfg.result_path)
    holder = _live_holder(folder / LOCK_NAME)
    if holder is not None:
        raise RunDirError(f"result_path {folder} is in use by another run ({holder}, lock file "
                          f"{folder / LOCK_NAME}); wait for it to end, choose another result_path, or delete the lock "
                          "file if that run is gone")
    if cfg.evaluate or cfg.auto_resume or cfg.overwrite_result_path:
        return
    found = list_checkpoints(folder)
    if found:
        names = ", ".join(path.name for _, path in found[:3]) + (" ..." if len(found) > 3 else "")
        raise RunDirError(f"result_path {folder} already holds checkpoints of another run ({names}); set "
                          "auto_resume: true to continue it, overwrite_result_path: true to start over there "
                          "(or --set KEY=true), or choose another result_path")


def _lock_text() -> str:
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname()})


def _read_lock(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def _live_holder(path: Path) -> str | None:
    """``'pid N on host H'`` when the lock is held by a process still alive (on this host), else None."""
    data = _read_lock(path)
    if data is None or not isinstance(data.get("pid"), int):
        return None
    if data.get("host") != socket.gethostname():
        return f"pid {data['pid']} on host {data.get('host')}"  # cannot check another host: assume alive
    if data["pid"] == os.getpid() or not _pid_alive(data["pid"]):
        return None
    return f"pid {data['pid']} on host {data['host']}"


class RunLock:
    """An exclusive lock on a result folder (``.run.lock`` holding the owner's pid and host).

    A lock left by a process that died (same host, pid gone) is taken over with a warning.
    """

    def __init__(self, folder: str | Path) -> None:
        self.path = Path(folder) / LOCK_NAME
        self.held = False

    def acquire(self) -> None:
        """Take the lock.

        Raises:
            RunDirError: another live process holds it.
        """
        for _ in range(2):
            try:
                fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
            except FileExistsError:
                holder = _live_holder(self.path)
                if holder is not None:
                    raise RunDirError(f"result_path {self.path.parent} is in use by another run ({holder}, lock "
                                      f"file {self.path})") from None
                logger.warning("taking over the stale lock %s of a run that is no longer alive (%s)", self.path,
                               self.path.read_text(encoding="utf-8", errors="replace").strip())
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                handle.write(_lock_text())
            self.held = True
            return
        raise RunDirError(f"could not take the lock {self.path}: another process keeps creating it")

    def release(self) -> None:
        """Remove the lock if this process holds it."""
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


def remove_stale_temporaries(folder: str | Path) -> list[str]:
    """Delete the temporaries an interrupted atomic write of ours left (``.ckpt_3.pth.tar.x1y2.tmp``).

    Called by the lock holder at start, so no live writer owns them. Returns the names removed.
    """
    removed = []
    for entry in Path(folder).iterdir():
        if _OUR_TEMPORARY.match(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
            removed.append(entry.name)
    if removed:
        logger.info("removed %d temporary file(s) of an interrupted write in %s: %s", len(removed), folder,
                    ", ".join(sorted(removed)))
    return removed


def merge_summary(folder: str | Path, current: dict, begin_epoch: int) -> dict:
    """The run summary of a resumed run: what the earlier runs recorded, then this one's.

    Entries of epochs before ``begin_epoch`` come from ``folder/run_summary.json`` (if any); later
    epochs come from ``current`` (a resumed run re-runs the epochs after its checkpoint, and they
    replace what the killed run had logged). A finished run resumed again keeps its whole record.

    Args:
        folder: the result folder.
        current: this run's summary (``RunSummary.__dict__``).
        begin_epoch: the first epoch this run trained (1 when it did not resume).

    Returns:
        The merged summary dict.
    """
    path = Path(folder) / SUMMARY_NAME
    previous = _read_summary(path) if begin_epoch > 1 and current["mode"] == "train" else None
    if previous is None or previous.get("mode") != "train":
        return current
    merged = dict(current)
    for key in ("epochs", "evaluations"):
        kept = [entry for entry in previous.get(key, []) if isinstance(entry, dict)
                and isinstance(entry.get("epoch"), int) and entry["epoch"] < begin_epoch]
        merged[key] = kept + list(current[key])
    merged["checkpoints"] = list(dict.fromkeys([*previous.get("checkpoints", []), *current["checkpoints"]]))
    return merged


def _read_summary(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        logger.warning("ignoring unreadable %s (%s): the summary starts afresh", path, exc)
        return None
    return data if isinstance(data, dict) else None


def write_summary(folder: str | Path, current: dict, begin_epoch: int) -> None:
    """Write the merged summary atomically (rank 0)."""
    merged = merge_summary(folder, current, begin_epoch)
    write_text_atomic(Path(folder) / SUMMARY_NAME, json.dumps(merged, indent=2) + "\n")
