"""On-disk store of frozen-ViT clip statistics: packed shard files with JSON indices, one writer per rank.

Layout of a cache folder (any number of ranks and runs may share it):

    <writer>-<seq>.pack          records, back to back (immutable once renamed into place)
    <writer>-<seq>.idx.json      the shard's index: key -> (offset, nbytes, crc32), layout, metadata
    <writer>-<seq>.pack.partial  a shard being written (ignored by readers)

A record holds one clip's ``VitStats`` (``structures/vit_stats.py``): the temporal mean map
``[C, H, W]`` as little-endian float32, then the channel sums and sums of squares ``[C]`` as float64.
A writer appends to its ``.partial`` file, then seals it: fsync, rename to ``.pack``, write the
index atomically. Readers merge every index they find; a pack without an index (a writer killed
mid-seal) or shorter than its index says is ignored, and a record whose checksum fails is a miss.
Writers never touch each other's files, so ranks need no locking; a clip cached twice is harmless
(both copies hold the same statistics). Keys are digests of what determines the statistics (see
``engine/vit_cache_loader.py``), so entries are never stale: a changed input is a different key.
"""
from __future__ import annotations

import json
import logging
import os
import re
import uuid
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch

from common.atomic import write_text_atomic
from structures.vit_stats import VitStats

logger = logging.getLogger(__name__)

STORE_FORMAT = "sfmvit-vit-cache"
STORE_VERSION = 1
PACK_SUFFIX = ".pack"
INDEX_SUFFIX = ".idx.json"
PARTIAL_SUFFIX = ".partial"
_WRITER_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
# Read handles kept open at once; many small shards (a lazy run seals one per pass) stay well
# below the usual 1024-descriptor limit.
_MAX_OPEN_PACKS = 128


@dataclass(frozen=True)
class _Entry:
    """Where one record lives."""

    pack: Path
    offset: int
    nbytes: int
    crc32: int
    shape: tuple[int, int, int]
    count: int


def _record_bytes(stats: VitStats) -> tuple[bytes, tuple[int, int, int]]:
    """Serialise a batch of one; returns the bytes and the ``(C, H, W)`` layout."""
    if stats.batch_size != 1:
        raise ValueError(f"a cache record holds one clip, got a batch of {stats.batch_size}")
    mean_map = stats.mean_map[0].detach().to("cpu", torch.float32).numpy().astype("<f4", copy=False)
    sums = stats.sums[0].detach().to("cpu", torch.float64).numpy().astype("<f8", copy=False)
    sq_sums = stats.sq_sums[0].detach().to("cpu", torch.float64).numpy().astype("<f8", copy=False)
    channels, height, width = (int(v) for v in mean_map.shape)
    return mean_map.tobytes() + sums.tobytes() + sq_sums.tobytes(), (channels, height, width)


def _decode(data: bytes, shape: tuple[int, int, int], count: int) -> VitStats:
    channels = shape[0]
    cells = channels * shape[1] * shape[2]
    buffer = bytearray(data)  # writable, so torch.from_numpy does not warn
    mean_map = np.frombuffer(buffer, dtype="<f4", count=cells).reshape(shape)
    sums = np.frombuffer(buffer, dtype="<f8", count=channels, offset=4 * cells)
    sq_sums = np.frombuffer(buffer, dtype="<f8", count=channels, offset=4 * cells + 8 * channels)
    # The map shares the private buffer (no copy on little-endian hosts); the small sums are
    # copied, since their offset need not be 8-byte aligned.
    return VitStats(torch.from_numpy(mean_map.astype(np.float32, copy=False))[None],
                    torch.from_numpy(sums.astype(np.float64))[None],
                    torch.from_numpy(sq_sums.astype(np.float64))[None], count)


def new_writer_name(rank: int) -> str:
    """A writer name unique across ranks, processes and restarts: ``rank<R>-<random hex>``."""
    return f"rank{rank:03d}-{uuid.uuid4().hex[:12]}"


class FeatureStore:
    """A cache folder, read by merging every shard index and written through one private shard at a time.

    Args:
        root: the cache folder (created when missing).
        writer: this process's writer name (``new_writer_name(rank)``); None = read-only.
        seal_every: records per shard; a shard is also sealed by ``seal()`` (end of a pass) and ``close()``.
        meta: JSON-able facts stored in every index this writer seals (e.g. the ViT fingerprint),
            for people inspecting a cache; never used for lookups.
    """

    def __init__(self, root: str | Path, writer: str | None = None, seal_every: int = 256,
                 meta: dict | None = None) -> None:
        if writer is not None and not _WRITER_NAME.match(writer):
            raise ValueError(f"writer name {writer!r} must be made of letters, digits, '_', '.', '-'")
        if seal_every < 1:
            raise ValueError(f"seal_every must be >= 1, got {seal_every}")
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.writer = writer
        self.seal_every = seal_every
        self.meta = dict(meta or {})
        self._entries: dict[str, _Entry] = {}
        self._merged: set[str] = set()
        self._fds: dict[Path, int] = {}
        self._seq = 0
        self._partial: tuple[Path, BinaryIO] | None = None
        self._pending: list[tuple[str, int, int, int]] = []  # (key, offset, nbytes, crc32)
        self._layout: tuple[tuple[int, int, int], int] | None = None  # ((C, H, W), count)
        self._offset = 0
        self.refresh()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: str) -> bool:
        return key in self._entries

    def keys(self) -> list[str]:
        """Every readable key (sealed shards only)."""
        return list(self._entries)

    # -- reading -------------------------------------------------------------------------------

    def refresh(self) -> int:
        """Merge the indices sealed since the last call (by any writer). Returns the number of new keys."""
        before = len(self._entries)
        for index_path in sorted(self.root.glob(f"*{INDEX_SUFFIX}")):
            if index_path.name in self._merged:
                continue
            entries = self._read_index(index_path)
            if entries is None:
                continue
            self._merged.add(index_path.name)
            for key, entry in entries.items():
                self._entries.setdefault(key, entry)
        return len(self._entries) - before

    def _read_index(self, index_path: Path) -> dict[str, _Entry] | None:
        """One shard's entries, or None (with a warning) when the shard is unusable."""
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            if index.get("format") != STORE_FORMAT or index.get("version") != STORE_VERSION:
                logger.warning("%s: not a version-%d ViT cache index; ignored", index_path, STORE_VERSION)
                return None
            pack = self.root / index["pack"]
            channels, height, width = (int(v) for v in index["shape"])
            count = int(index["count"])
            size = pack.stat().st_size
            if size < int(index["pack_bytes"]):
                logger.warning("%s: %d bytes, its index says %d; shard ignored", pack, size, index["pack_bytes"])
                return None
            return {key: _Entry(pack, int(offset), int(nbytes), int(crc), (channels, height, width), count)
                    for key, offset, nbytes, crc in index["entries"]}
        except FileNotFoundError:
            logger.warning("%s: its pack file is missing; shard ignored", index_path)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            logger.warning("%s: unreadable ViT cache index (%s); shard ignored", index_path, exc)
        return None

    def get(self, key: str) -> VitStats | None:
        """The statistics stored under ``key`` (a batch of one, on the CPU), or None.

        A record that cannot be read back intact (short read, checksum mismatch) is dropped from
        the index with a warning and reported as a miss, so it is recomputed rather than trusted.
        """
        entry = self._entries.get(key)
        if entry is None:
            return None
        try:
            fd = self._fds.get(entry.pack)
            if fd is None:
                if len(self._fds) >= _MAX_OPEN_PACKS:
                    self._close_packs()
                fd = self._fds[entry.pack] = os.open(entry.pack, os.O_RDONLY)
            data = os.pread(fd, entry.nbytes, entry.offset)
        except OSError as exc:
            data, problem = b"", str(exc)
        else:
            problem = "short read" if len(data) != entry.nbytes else "checksum mismatch"
        if len(data) != entry.nbytes or zlib.crc32(data) != entry.crc32:
            logger.warning("%s: record %s at offset %d is damaged (%s); treated as a miss", entry.pack, key,
                           entry.offset, problem)
            del self._entries[key]
            return None
        return _decode(data, entry.shape, entry.count)

    # -- writing -------------------------------------------------------------------------------

    def put(self, key: str, stats: VitStats) -> None:
        """Append one clip's statistics to this writer's open shard (readable once sealed).

        Args:
            key: the clip's cache key.
            stats: a batch of one (any device; copied to the CPU).

        Raises:
            RuntimeError: the store was opened without a writer name.
        """
        if self.writer is None:
            raise RuntimeError(f"{self.root}: this FeatureStore is read-only (no writer name)")
        data, shape = _record_bytes(stats)
        if self._partial is not None and self._layout != (shape, stats.count):
            self.seal()  # one layout per shard: start a new one
        if self._partial is None:
            self._open_partial(shape, stats.count)
        assert self._partial is not None  # opened just above
        handle = self._partial[1]
        handle.write(data)
        self._pending.append((key, self._offset, len(data), zlib.crc32(data)))
        self._offset += len(data)
        if len(self._pending) >= self.seal_every:
            self.seal()

    def _open_partial(self, shape: tuple[int, int, int], count: int) -> None:
        while True:
            stem = f"{self.writer}-{self._seq:05d}"
            if not (self.root / f"{stem}{INDEX_SUFFIX}").exists() and not (self.root / f"{stem}{PACK_SUFFIX}").exists():
                break
            self._seq += 1
        path = self.root / f"{stem}{PACK_SUFFIX}{PARTIAL_SUFFIX}"
        self._partial = (path, open(path, "wb"))  # noqa: SIM115 (closed by seal)
        self._layout = (shape, count)
        self._offset = 0
        self._pending = []

    def seal(self) -> Path | None:
        """Make the open shard readable: fsync, rename into place, then write its index atomically.

        Returns:
            The new index file, or None when nothing was pending.
        """
        if self._partial is None:
            return None
        partial, handle = self._partial
        handle.flush()
        os.fsync(handle.fileno())
        handle.close()
        self._partial = None
        if not self._pending:
            partial.unlink(missing_ok=True)
            return None
        pack = partial.with_name(partial.name[: -len(PARTIAL_SUFFIX)])
        os.replace(partial, pack)
        assert self._layout is not None  # set with the partial file
        shape, count = self._layout
        index = {"format": STORE_FORMAT, "version": STORE_VERSION, "pack": pack.name, "pack_bytes": self._offset,
                 "shape": list(shape), "count": count, "meta": self.meta,
                 "entries": [list(entry) for entry in self._pending]}
        index_path = pack.with_name(pack.name[: -len(PACK_SUFFIX)] + INDEX_SUFFIX)
        # The pack is on disk before its index names it: a reader never sees an index without data.
        write_text_atomic(index_path, json.dumps(index, separators=(",", ":")) + "\n")
        logger.debug("%s: sealed %d records (%d bytes)", pack, len(self._pending), self._offset)
        self._pending = []
        self._seq += 1
        self.refresh()
        return index_path

    def close(self) -> None:
        """Seal what is pending and release the file handles."""
        self.seal()
        self._close_packs()

    def _close_packs(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def disk_bytes(self) -> int:
        """Bytes of the sealed packs and indices in the folder (all writers)."""
        return sum(path.stat().st_size for pattern in (f"*{PACK_SUFFIX}", f"*{INDEX_SUFFIX}")
                   for path in self.root.glob(pattern))
