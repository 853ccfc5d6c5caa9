"""Frame extraction: videos -> ``frames/<vid>/<vid>_%06d.png`` (25 fps, 320x180, numbered from 1) with ffmpeg."""
from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from common.cli import run_main
from datasets.ffmpeg_io import FFmpegError, extract_images
from formats.official_csv import FRAME_RATE

LOGGER = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".avi", ".mov", ".webm")
# Unfinished extractions live in hidden sibling folders with this marker; a folder named exactly
# like a video id is only ever created by an atomic rename, so it always holds a complete video.
PARTIAL_MARKER = ".partial-"
# ffmpeg's png encoder defaults to zlib's best compression, about 6x slower than level 3 on video
# frames for files only ~8% smaller (measured on the synthetic clips).
PNG_COMPRESSION_LEVEL = 3


@dataclass(frozen=True)
class FrameLayout:
    """Which frames are written, at what rate and size, under which names (defaults: Chaotic World's).

    Attributes:
        fps: output frame rate (ffmpeg's fps filter duplicates or drops frames to reach it).
        width, height: output size in pixels (the frame is scaled, not cropped); -1 keeps the aspect
            ratio (AVA: width -1, height 340).
        pattern: file name inside ``<frames>/<vid>/``; ``{video}`` is replaced by the video id and
            the ``%06d`` numbers frames from 1.
        start_seconds: seek to this second first (input seek, as ``ffmpeg -ss S -i V``), None = 0.
        max_frames: stop after this many frames, None = the whole video.
        jpeg_quality: ffmpeg's ``-qscale:v`` for jpg output (1 = best), None = encoder default.
    """

    fps: int = FRAME_RATE
    width: int = 320
    height: int = 180
    pattern: str = "{video}_%06d.png"
    start_seconds: float | None = None
    max_frames: int | None = None
    jpeg_quality: int | None = None

    def file_pattern(self, video_id: str) -> str:
        """The printf pattern of one video's frame files, e.g. ``'abc_%06d.png'``."""
        return self.pattern.replace("{video}", video_id)


# Chaotic World: the whole video at 25 fps, 320x180, ``<vid>_%06d.png`` (DATA.md).
CW_LAYOUT = FrameLayout()


class FrameExtractionError(RuntimeError):
    """ffmpeg could not decode one or more videos; the message names each file and ffmpeg's last words."""

    def __init__(self, failures: dict[str, str]) -> None:
        self.failures = failures
        parts = [f"{path}:\n    " + "\n    ".join(message.splitlines()) for path, message in failures.items()]
        super().__init__(f"could not extract frames from {len(failures)} video(s):\n" + "\n".join(parts))


def find_videos(videos_dir: str | Path, video_ids: Iterable[str] | None = None) -> dict[str, Path]:
    """Video files under ``videos_dir`` by id (file stem), sorted by id.

    Args:
        videos_dir: folder of ``<vid>.mp4`` (or .mkv/.avi/.mov/.webm) files.
        video_ids: only these ids (each must exist), or None for all.

    Raises:
        FileNotFoundError: the folder is missing, or a requested id has no video file.
        ValueError: two files share an id.
    """
    folder = Path(videos_dir)
    if not folder.is_dir():
        raise FileNotFoundError(f"videos folder not found: {folder}")
    found: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in VIDEO_SUFFIXES and not path.name.startswith("."):
            if path.stem in found:
                raise ValueError(f"two videos with id {path.stem!r}: {found[path.stem]} and {path}")
            found[path.stem] = path
    if video_ids is None:
        return found
    wanted = list(video_ids)
    missing = [video_id for video_id in wanted if video_id not in found]
    if missing:
        raise FileNotFoundError(f"no video file for id(s) {missing} in {folder}")
    return {video_id: found[video_id] for video_id in sorted(wanted)}


def is_extracted(frames_dir: str | Path, video_id: str, layout: FrameLayout = CW_LAYOUT) -> bool:
    """True when ``frames_dir/<vid>`` exists with at least one frame (it appears only when complete)."""
    folder = Path(frames_dir) / video_id
    return folder.is_dir() and any(folder.glob(layout.file_pattern(video_id).replace("%06d", "*")))


def _remove_partials(frames_dir: Path, video_id: str) -> None:
    for stale in frames_dir.glob(f".{video_id}{PARTIAL_MARKER}*"):
        shutil.rmtree(stale, ignore_errors=True)


def extract_video(video: str | Path, frames_dir: str | Path, layout: FrameLayout = CW_LAYOUT) -> int:
    """Extract one video into ``frames_dir/<vid>/<vid>_%06d.png``, numbered from 1.

    Frames are written into a hidden temporary folder which is renamed to ``<vid>`` only after
    ffmpeg succeeded, so an interrupted run never leaves a folder that looks complete.

    Args:
        video: the video file (its stem is the id).
        frames_dir: root of the frame folders.
        layout: rate, size, file names, start and length (default: Chaotic World's, the whole video).

    Returns:
        Number of frames written.

    Raises:
        FrameExtractionError: ffmpeg failed or wrote no frame (the file and ffmpeg's stderr are named).
    """
    video = Path(video)
    frames_dir = Path(frames_dir)
    frames_dir.mkdir(parents=True, exist_ok=True)
    video_id = video.stem
    _remove_partials(frames_dir, video_id)
    partial = Path(tempfile.mkdtemp(prefix=f".{video_id}{PARTIAL_MARKER}", dir=frames_dir))
    try:
        pattern = layout.file_pattern(video_id)
        options: dict[str, object] = {}
        if pattern.endswith(".png"):
            options["compression_level"] = PNG_COMPRESSION_LEVEL
        if layout.jpeg_quality is not None:
            options["qscale:v"] = layout.jpeg_quality
        if layout.max_frames is not None:
            options["frames:v"] = layout.max_frames
        try:
            extract_images(video, partial / pattern, layout.fps, (layout.width, layout.height), layout.start_seconds,
                           **options)
        except FFmpegError as error:
            raise FrameExtractionError({str(video): error.stderr_tail or "ffmpeg failed"}) from None
        count = sum(1 for _ in partial.glob(pattern.replace("%06d", "*")))
        if count == 0:
            raise FrameExtractionError({str(video): "ffmpeg wrote no frame (empty or unreadable video)"})
        partial.rename(frames_dir / video_id)
        return count
    finally:
        if partial.exists():
            shutil.rmtree(partial, ignore_errors=True)


def extract_frames(videos_dir: str | Path, frames_dir: str | Path, layout: FrameLayout = CW_LAYOUT,
                   workers: int = 2, video_ids: Iterable[str] | None = None, progress: bool = True) -> dict:
    """Extract the frames of every video in a folder, in parallel, skipping videos already done.

    Args:
        videos_dir: folder of video files (``<vid>.mp4``).
        frames_dir: output root (``frames_dir/<vid>/<vid>_%06d.png``).
        layout: rate, size, file names, start and length (default: Chaotic World's).
        workers: videos decoded at the same time (each by its own ffmpeg process).
        video_ids: only these videos, or None for all.
        progress: show a tqdm bar (unit: video).

    Returns:
        ``videos`` (found), ``extracted`` (this run), ``skipped`` (already done), ``frames_written``
        (this run), ``frames_per_video`` ({vid: frames} of this run), ``seconds``.

    Raises:
        FileNotFoundError: no videos folder, or a requested id without a file.
        FrameExtractionError: after all other videos were processed, one error naming every video
            ffmpeg could not read, with its stderr.
    """
    started = time.perf_counter()
    videos = find_videos(videos_dir, video_ids)
    frames_dir = Path(frames_dir)
    todo = {vid: path for vid, path in videos.items() if not is_extracted(frames_dir, vid, layout)}
    LOGGER.info("%d video(s) in %s: %d already extracted, %d to extract", len(videos), videos_dir,
                len(videos) - len(todo), len(todo))
    written: dict[str, int] = {}
    failures: dict[str, str] = {}
    if todo:
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool, \
                tqdm(total=len(todo), unit="video", desc="extract frames", disable=not progress) as bar:
            futures = {vid: pool.submit(extract_video, path, frames_dir, layout)
                       for vid, path in todo.items()}
            for vid, future in futures.items():
                try:
                    written[vid] = future.result()
                except FrameExtractionError as error:
                    failures.update(error.failures)
                bar.update(1)
    if failures:
        raise FrameExtractionError(failures)
    summary = {
        "videos": len(videos),
        "extracted": len(written),
        "skipped": len(videos) - len(todo),
        "frames_written": sum(written.values()),
        "frames_per_video": written,
        "seconds": round(time.perf_counter() - started, 2),
    }
    LOGGER.info("wrote %d frames of %d video(s) under %s in %.1f s", summary["frames_written"], len(written),
                frames_dir, summary["seconds"])
    return summary


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.extract_frames",
                                     description="Extract <vid>_%06d.png frames (numbered from 1) from every video.")
    parser.add_argument("--videos", required=True, help="folder of <vid>.mp4 files")
    parser.add_argument("--frames", required=True, help="output root: frames/<vid>/<vid>_%%06d.png")
    parser.add_argument("--fps", type=int, default=CW_LAYOUT.fps, help="output frame rate (default %(default)s)")
    parser.add_argument("--width", type=int, default=CW_LAYOUT.width,
                        help="output width in pixels (default %(default)s)")
    parser.add_argument("--height", type=int, default=CW_LAYOUT.height,
                        help="output height in pixels (default %(default)s)")
    parser.add_argument("--workers", type=int, default=2, help="videos decoded at once (default 2)")
    parser.add_argument("--video-ids", nargs="*", default=None, help="only these video ids")
    return parser


# What makes an extraction command line exit 1 (one line): a video that could not be read, a missing folder.
EXTRACTION_FAILURES = (FrameExtractionError, FileNotFoundError)


def print_extraction(summary: dict) -> int:
    """Print an extraction's one-line summary for a CLI; returns exit status 0."""
    print(f"{summary['videos']} videos: {summary['extracted']} extracted ({summary['frames_written']} frames), "
          f"{summary['skipped']} already done, in {summary['seconds']} s")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints a one-line summary. Exit status 1 when a video could not be read."""
    return run_main(build_parser().parse_args, _run, argv, failures=EXTRACTION_FAILURES)


def _run(args: argparse.Namespace) -> int:
    layout = FrameLayout(fps=args.fps, width=args.width, height=args.height)
    return print_extraction(extract_frames(args.videos, args.frames, layout, workers=args.workers,
                                           video_ids=args.video_ids))


if __name__ == "__main__":
    raise SystemExit(main())
