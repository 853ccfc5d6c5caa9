"""AVA frame extraction in ACAR-Net's layout: ``data/<vid>/image_%06d.jpg``, the 15th to 30th minute at 30 fps.

ACAR-Net's layout (DATA.md, section 9): ffmpeg seeks to second 900 of the video, writes
``ceil(900 * 30) = 27000`` frames at 30 fps, 340 pixels high (width keeping the aspect ratio), best jpeg
quality, numbered from 1. So frame ``i`` shows second ``900 + (i - 1) / 30`` and the
keyframe at second ``t`` is frame ``(t - 900) * 30 + 1`` (``tools.ava_to_pkl.keyframe_to_frame``).
The ffmpeg machinery is ``tools.extract_frames`` (parallel, resumable, atomic per video).
"""
from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from common.cli import run_main
from tools.ava_to_pkl import FORMAT_STR, FRAME_RATE, WINDOW_START_SECONDS
from tools.extract_frames import EXTRACTION_FAILURES, FrameLayout, extract_frames, print_extraction

LOGGER = logging.getLogger(__name__)

WINDOW_END_SECONDS = 1800
HEIGHT = 340
# ACAR-Net asks ffmpeg for ceil((1800 - 900) * 30 + 1e-8) frames: 27000.
NUM_FRAMES = math.ceil((WINDOW_END_SECONDS - WINDOW_START_SECONDS) * FRAME_RATE)


def ava_layout(start_seconds: float = WINDOW_START_SECONDS, num_frames: int = NUM_FRAMES,
               height: int = HEIGHT) -> FrameLayout:
    """ACAR-Net's AVA frame layout (30 fps, ``height`` pixels high, ``image_%06d.jpg``, jpeg quality 1)."""
    return FrameLayout(fps=FRAME_RATE, width=-1, height=height, pattern=FORMAT_STR, start_seconds=start_seconds,
                       max_frames=num_frames, jpeg_quality=1)


def extract_ava_frames(videos: str | Path, frames: str | Path, workers: int = 2, height: int = HEIGHT,
                       start_seconds: float = WINDOW_START_SECONDS, num_frames: int = NUM_FRAMES,
                       progress: bool = True) -> dict:
    """Extract every AVA video of a folder in ACAR-Net's layout (see the module docstring).

    Args:
        videos: folder of ``<vid>.mp4`` / ``.mkv`` / ``.webm`` files.
        frames: output root (``frames/<vid>/image_%06d.jpg``).
        workers: videos decoded at once.
        height: output height in pixels (width keeps the aspect ratio).
        start_seconds: second of the first frame (900 for AVA; the synthetic set uses the same).
        num_frames: frames per video (27000 for AVA).
        progress: show a tqdm bar.

    Returns:
        ``tools.extract_frames.extract_frames``' summary.

    Raises:
        FileNotFoundError, tools.extract_frames.FrameExtractionError: as ``extract_frames``.
    """
    return extract_frames(videos, frames, ava_layout(start_seconds, num_frames, height), workers=workers,
                          progress=progress)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.ava_frames",
                                     description="Extract AVA frames as ACAR-Net does: data/<vid>/image_%%06d.jpg, "
                                                 "seconds 900-1800 at 30 fps, 340 pixels high.")
    parser.add_argument("--videos", required=True, help="folder of AVA videos")
    parser.add_argument("--frames", required=True, help="output root, e.g. data")
    parser.add_argument("--workers", type=int, default=2, help="videos decoded at once (default 2)")
    parser.add_argument("--height", type=int, default=HEIGHT, help=f"frame height (default {HEIGHT})")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; exit status 1 when a video could not be read."""
    return run_main(build_parser().parse_args, _run, argv, failures=EXTRACTION_FAILURES)


def _run(args: argparse.Namespace) -> int:
    return print_extraction(extract_ava_frames(args.videos, args.frames, workers=args.workers, height=args.height))


if __name__ == "__main__":
    raise SystemExit(main())
