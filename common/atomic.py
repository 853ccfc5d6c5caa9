"""Atomic file writes: write to a temporary file in the same directory, fsync, then os.replace.

Readers therefore see either the old file or the complete new one, never half a file, even when the
writer is killed mid-write. The file gets the permissions ``open()`` would give it (0666 less the
umask; mkstemp alone would leave 0600), and a full disk is reported as such, naming the file.
"""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO


class DiskFullError(OSError):
    """No space left on the device while writing a file (errno ENOSPC / EDQUOT)."""


def _umask() -> int:
    # Read without changing it where Linux tells it (os.umask would set it, racing other threads).
    try:
        with open("/proc/self/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """Open a temporary sibling of ``path`` for writing; on success rename it over ``path``.

    Args:
        path: destination file; its parent directory is created if needed.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        encoding: text encoding (ignored in binary mode).

    Yields:
        The open temporary file. If the block raises, the temporary file is removed and ``path`` is
        left untouched.

    Raises:
        DiskFullError: the device filled up while writing (the message names ``path``).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open supports modes 'w' and 'wb', not {mode!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, mode, encoding=None if "b" in mode else encoding, newline=None) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp_name)
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            full = DiskFullError(f"disk full while writing {path}")
            full.errno = error.errno
            raise full from None
        raise


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically."""
    with atomic_open(path, "w") as handle:
        handle.write(text)


def write_bytes_atomic(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as handle:
        handle.write(data)
