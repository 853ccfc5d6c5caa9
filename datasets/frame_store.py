"""Packed per-video store of decoded, optionally pre-resized uint8 frames: an exact stand-in for PNG decoding.

Decoding 16-32 PNGs per clip dominates the CPU time of the data path. The store keeps, for each
video folder and each deterministic resize (the leading ``Scale`` of a spatial chain), one ``.npy``
array ``[F, H, W, 3]`` uint8 holding every frame image of the folder after
``Image.open(path).convert('RGB')`` and ``resize((w, h), interpolation)``, i.e. exactly the pixels
the PIL path would produce before its random transforms. Readers memory-map it, so loading a clip
is a copy of a few rows.

Layout, for a store root ``S``, a frame folder ``F/<video>`` and a resize key ``K`` (e.g.
``112x112_i2``: width x height and PIL filter 2 = bilinear; ``short112_i2`` for a shorter-edge
resize; ``decoded`` for no resize)::

    S/<video>/K.json               index: version, source listing, shapes, digest, data file name
    S/<video>/K-<digest>.npy       the frames, rows in file-name order
    S/<video>/K.lock               flock'ed while building (several workers or ranks)

The digest covers the source listing (file names, byte sizes, modification times in ns) and the
resize, so a store whose frames changed is never used: it is rebuilt (lazily) or reported. Videos
are filed by folder name, so use one store root per frames root.
Every file is written atomically (temp file + ``os.replace``); the index is written last and names
its data file, so readers never see a half-built store. Concurrent builders on one machine wait
for each other through ``fcntl.flock``; builders on different machines (a shared file system
without working locks) write identical files under identical names, which is harmless.
"""
from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import os
import sys
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from common.atomic import atomic_open, write_text_atomic
from common.cli import run_main
from common.errors import FormatError

if TYPE_CHECKING:  # the transforms import torch: loaded where used, so that --help answers at once
    from datasets.transforms import Compose, Scale

logger = logging.getLogger(__name__)

STORE_VERSION = 1
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
# Every PIL resampling filter, by the name the CLI takes.
INTERPOLATIONS = {"nearest": Image.NEAREST, "lanczos": Image.LANCZOS, "bilinear": Image.BILINEAR,
                  "bicubic": Image.BICUBIC, "box": Image.BOX, "hamming": Image.HAMMING}


@dataclass(frozen=True)
class StoreResize:
    """The deterministic resize baked into a store: the arguments of a chain's leading ``Scale``.

    Attributes:
        resize: ``(width, height)`` in pixels, or an int shorter edge (as ``Scale``).
        interpolation: PIL filter code (2 = bilinear, the ``Scale`` default).
    """

    resize: int | tuple[int, int]
    interpolation: int = int(Image.BILINEAR)

    @classmethod
    def from_scale(cls, scale: Scale) -> StoreResize:
        """The resize a ``Scale`` transform performs."""
        resize = scale.resize if isinstance(scale.resize, int) else tuple(int(v) for v in scale.resize)
        return cls(resize, int(scale.interpolation))

    @property
    def key(self) -> str:
        """File-name key, e.g. ``112x112_i2`` or ``short112_i2``."""
        size = f"short{self.resize}" if isinstance(self.resize, int) else f"{self.resize[0]}x{self.resize[1]}"
        return f"{size}_i{self.interpolation}"

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """Output ``(w, h)`` for a ``width`` x ``height`` frame (``Scale.target_size``)."""
        from datasets.transforms import Scale

        return Scale(self.resize if isinstance(self.resize, int) else list(self.resize),
                     self.interpolation).target_size(width, height)


def store_resize_for(views: Sequence[Compose]) -> StoreResize | None:
    """The resize every view starts with, or None when they do not share one (store decoded frames).

    A leading ``Scale`` is deterministic, so its output can be stored; anything after it (random
    flips and crops, ToTensor, Normalize) still runs on every load. A resize is only baked in when it
    is idempotent on its own output, so that the chain's ``Scale`` then leaves stored frames as they are.
    """
    from datasets.transforms import Scale

    firsts = [view.transforms[0] if view.transforms else None for view in views]
    if not firsts or not all(isinstance(first, Scale) for first in firsts):
        return None
    specs = {StoreResize.from_scale(first) for first in firsts}
    return specs.pop() if len(specs) == 1 else None


@dataclass
class VideoFrames:
    """One video's stored frames.

    Attributes:
        array: ``[F, H, W, 3]`` uint8, memory-mapped read-only.
        rows: frame file name -> row of ``array``.
        folder: the source frame folder.
    """

    array: np.ndarray
    rows: dict[str, int]
    folder: Path


Listing = list[tuple[str, int, int]]


def scan_folder(folder: Path) -> Listing:
    """``[(name, bytes, mtime_ns)]`` of the frame images in ``folder``, sorted by name (empty if none)."""
    entries = []
    with os.scandir(folder) as scan:
        for entry in scan:
            if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                stat = entry.stat()
                entries.append((entry.name, int(stat.st_size), int(stat.st_mtime_ns)))
    entries.sort()
    return entries


def _digest(listing: Listing, key: str) -> str:
    payload = json.dumps({"version": STORE_VERSION, "resize": key, "frames": listing}, separators=(",", ":"))
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


def decode_frame(path: Path) -> Image.Image:
    """``Image.open(path).convert('RGB')`` (the PIL path's decode), with the project's errors.

    Raises:
        FileNotFoundError: the file is missing.
        FormatError: it cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            return image.convert("RGB")
    except FileNotFoundError:
        raise FileNotFoundError(f"frame {path} is missing") from None
    except OSError as exc:
        raise FormatError(path, f"cannot decode this frame: {exc}") from None


class FrameStore:
    """Builds (lazily) and reads packed per-video frame arrays under one store root.

    An instance caches open arrays per (folder, resize); it can be handed to DataLoader workers
    (the cache is dropped when pickled, each worker re-opens its memory maps).

    Args:
        root: store folder (created when building).
        build: build a missing or stale video on first use; False raises instead (read-only stores).
    """

    def __init__(self, root: str | Path, build: bool = True) -> None:
        self.root = Path(root)
        self.build = build
        self._videos: dict[tuple[str, str], VideoFrames] = {}

    def __getstate__(self) -> dict:
        return {"root": self.root, "build": self.build, "_videos": {}}

    def __repr__(self) -> str:
        return f"FrameStore({str(self.root)!r}, build={self.build})"

    def _paths(self, folder: Path, key: str) -> tuple[Path, Path]:
        video_dir = self.root / folder.name
        return video_dir / f"{key}.json", video_dir / f"{key}.lock"

    def load(self, folder: str | Path, names: Sequence[str], resize: StoreResize | None) -> list[Image.Image]:
        """The frames ``names`` of ``folder`` as RGB PIL images, as the PIL path would have them after ``resize``.

        Args:
            folder: the video's frame folder (``<frames root>/<video>``).
            names: frame file names, in clip order (repeats allowed; they share one image).
            resize: the resize baked into the store (None: decoded frames at their own size).

        Returns:
            One image per name, ``(w, h)`` = ``resize.target_size(source size)`` (read-only pixels).

        Raises:
            FileNotFoundError: the folder has no frames, or a name is not among them.
            FormatError: a frame cannot be decoded, or the frames of the video differ in size.
        """
        video = self.video(folder, resize)
        images: dict[int, Image.Image] = {}
        frames = []
        for name in names:
            row = video.rows.get(name)
            if row is None:
                raise FileNotFoundError(f"frame {video.folder / name} is missing")
            if row not in images:
                images[row] = Image.fromarray(video.array[row])
            frames.append(images[row])
        return frames

    def video(self, folder: str | Path, resize: StoreResize | None) -> VideoFrames:
        """Open (building first if allowed and needed) the stored frames of ``folder``.

        Raises:
            FileNotFoundError: no frames in ``folder``, or the store is missing/stale and ``build`` is False.
            FormatError: a frame cannot be decoded, or the frames differ in size.
        """
        folder = Path(folder)
        key = resize.key if resize is not None else "decoded"
        cached = self._videos.get((str(folder), key))
        if cached is not None:
            return cached
        listing = scan_folder(folder) if folder.is_dir() else []
        if not listing:
            raise FileNotFoundError(f"no frame images ({', '.join(IMAGE_SUFFIXES)}) in {folder}")
        digest = _digest(listing, key)
        index_path, lock_path = self._paths(folder, key)
        video = self._open(index_path, digest, folder)
        if video is None:
            if not self.build:
                raise FileNotFoundError(f"frame store {index_path} is missing or stale for {folder}; build it with "
                                        f"`{_build_command(folder.parent, self.root, resize)}`")
            with _locked(lock_path):
                # Another worker may have built it while this one waited for the lock.
                video = self._open(index_path, digest, folder)
                if video is None:
                    self._build(folder, listing, digest, key, resize, index_path)
                    video = self._open(index_path, digest, folder)
            if video is None:
                raise RuntimeError(f"frame store {index_path} could not be read back after building it")
        self._videos[(str(folder), key)] = video
        return video

    @staticmethod
    def _open(index_path: Path, digest: str, folder: Path) -> VideoFrames | None:
        """The stored frames when the index exists and matches ``digest``; None when missing or stale."""
        try:
            index = json.loads(index_path.read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return None
        if index.get("version") != STORE_VERSION or index.get("digest") != digest:
            return None
        try:
            array = np.load(index_path.parent / index["data"], mmap_mode="r", allow_pickle=False)
        except FileNotFoundError:  # replaced by a newer build between reading the index and here
            return None
        if list(array.shape) != index["shape"] or array.dtype != np.uint8:
            return None
        return VideoFrames(array, {name: row for row, (name, _, _) in enumerate(index["frames"])}, folder)

    def _build(self, folder: Path, listing: Listing, digest: str, key: str, resize: StoreResize | None,
               index_path: Path) -> None:
        start = time.perf_counter()
        data_name = f"{key}-{digest}.npy"
        first = decode_frame(folder / listing[0][0])
        source_size = first.size
        target = resize.target_size(*source_size) if resize is not None else source_size
        if resize is not None and resize.target_size(*target) != target:
            raise AssertionError(f"resize {resize} is not idempotent on {target}")
        shape = (len(listing), target[1], target[0], 3)
        with atomic_open(index_path.parent / data_name, "wb") as handle:
            header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
                      "shape": shape}
            np.lib.format.write_array_header_1_0(handle, header)
            for row, (name, _, _) in enumerate(listing):
                image = first if row == 0 else decode_frame(folder / name)
                if image.size != source_size:
                    raise FormatError(folder, f"frames differ in size: {listing[0][0]} is {source_size}, "
                                              f"{name} is {image.size}")
                if target != source_size:
                    image = image.resize(target, resize.interpolation)
                handle.write(np.asarray(image, dtype=np.uint8).tobytes())
        index = {"version": STORE_VERSION, "video": folder.name, "resize": key, "source_size": list(source_size),
                 "shape": list(shape), "digest": digest, "data": data_name, "frames": listing}
        write_text_atomic(index_path, json.dumps(index) + "\n")
        for stale in index_path.parent.glob(f"{key}-*.npy"):
            if stale.name != data_name:
                with contextlib.suppress(FileNotFoundError):
                    stale.unlink()
        logger.info("frame store: packed %d frames of %s at %dx%d in %.1f s", len(listing), folder, target[0],
                    target[1], time.perf_counter() - start)


def _build_command(frames_root: Path, store_root: Path, resize: StoreResize | None) -> str:
    command = f"python -m datasets.frame_store --frames {frames_root} --store {store_root}"
    if resize is None:
        return command
    size = resize.resize if isinstance(resize.resize, int) else f"{resize.resize[0]} {resize.resize[1]}"
    names = {int(code): name for name, code in INTERPOLATIONS.items()}
    return f"{command} --size {size} --interpolation {names.get(resize.interpolation, resize.interpolation)}"


@contextlib.contextmanager
def _locked(lock_path: Path) -> Iterator[None]:
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _build_one(job: tuple[str, str, StoreResize | None]) -> tuple[str, int]:
    store_root, folder, resize = job
    video = FrameStore(store_root).video(folder, resize)
    return folder, int(video.array.shape[0])


def build_store(frames_root: str | Path, store_root: str | Path, resize: StoreResize | None,
                videos: Sequence[str] | None = None, workers: int = 1) -> dict[str, int]:
    """Pack every video folder of ``frames_root`` (or the named ones); up-to-date videos are skipped.

    Args:
        frames_root: folder of ``<video>/`` frame folders.
        store_root: the store folder.
        resize: the resize to bake in (None: decoded frames only).
        videos: video ids to pack (default: every sub-folder).
        workers: processes packing videos in parallel.

    Returns:
        ``{video folder: number of frames}``.

    Raises:
        FileNotFoundError: ``frames_root`` or a named video folder is missing.
    """
    frames_root = Path(frames_root)
    if not frames_root.is_dir():
        raise FileNotFoundError(f"frames folder {frames_root} does not exist")
    names = sorted(p.name for p in frames_root.iterdir() if p.is_dir()) if videos is None else list(videos)
    for name in names:
        if not (frames_root / name).is_dir():
            raise FileNotFoundError(f"video folder {frames_root / name} does not exist")
    jobs = [(str(store_root), str(frames_root / name), resize) for name in names]
    if workers <= 1:
        return dict(_build_one(job) for job in jobs)
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return dict(pool.map(_build_one, jobs))


def main(argv: Sequence[str] | None = None) -> int:
    """CLI: ``python -m datasets.frame_store --frames F --store S --size 112 112 [--workers N]``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", required=True, help="frames root (holds <video>/ folders)")
    parser.add_argument("--store", required=True, help="store root to fill")
    parser.add_argument("--size", type=int, nargs="+", metavar="N",
                        help="the chain's leading Scale: W H, or a shorter-edge int; omit to store decoded frames")
    parser.add_argument("--interpolation", choices=sorted(INTERPOLATIONS), default="bilinear")
    parser.add_argument("--videos", nargs="+", help="only these video ids")
    parser.add_argument("--workers", type=int, default=1)

    def parse(argv: Sequence[str] | None) -> argparse.Namespace:
        args = parser.parse_args(argv)
        if args.size is not None and len(args.size) not in (1, 2):
            parser.error("--size takes W H or a single shorter-edge size")
        return args

    return run_main(parse, _run, argv)


def _run(args: argparse.Namespace) -> int:
    resize = None
    if args.size is not None:
        size = args.size[0] if len(args.size) == 1 else (args.size[0], args.size[1])
        resize = StoreResize(size, int(INTERPOLATIONS[args.interpolation]))
    start = time.perf_counter()
    counts = build_store(args.frames, args.store, resize, args.videos, args.workers)
    print(f"frame store {args.store}: {len(counts)} video(s), {sum(counts.values())} frames, "
          f"key {resize.key if resize else 'decoded'}, {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
