"""Pre-flight data check: the annotation pkl is well-formed and every frame a config will read exists and decodes."""
from __future__ import annotations

import argparse
import concurrent.futures
import json
import logging
import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from PIL import Image
from tqdm import tqdm

from common.atomic import write_text_atomic
from common.cli import run_main
from common.errors import FormatError
from formats.annotation_pkl import load_annotation_pkl

LOGGER = logging.getLogger(__name__)

DECODE_MODES = ("sampled", "all", "none")
# How many missing or undecodable paths a report lists.
MAX_EXAMPLES = 5
# Below this many elements the check takes well under a second: no progress bar.
PROGRESS_MIN_ELEMENTS = 2000
# PIL signals a damaged or foreign image with any of these.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, Image.DecompressionBombError)


@dataclass
class DataReport:
    """What ``check_dataset`` found.

    Attributes:
        annotation_pkl: the checked pkl.
        frames_root: the frames folder (``<root>/<video>/<format_str % index>``).
        elements: elements in the pkl (a per-row pkl repeats keyframes).
        keyframes: distinct (video, time) pairs.
        boxes: label entries over all elements.
        videos: distinct videos.
        frames_read: distinct frame files the clips read.
        missing_videos: videos without a frame folder.
        missing_frames: frame files the clips read that do not exist.
        missing_examples: the first few missing paths, each with its element.
        decoded: frame files opened with PIL.
        undecodable: decoded files that PIL could not read.
        undecodable_examples: the first few such paths, with the error.
        frame_sizes: ``{'WxH': count}`` over the decoded frames (pixels).
        decode_mode: ``'all'``, ``'sampled'`` (first, middle and last frame read per video) or ``'none'``.
        mixed_size_videos: ``{video: {'WxH': count}}`` for videos whose decoded frames differ in size
            (the clip stacking needs one size per video: an error).
    """

    annotation_pkl: str
    frames_root: str
    elements: int = 0
    keyframes: int = 0
    boxes: int = 0
    videos: int = 0
    frames_read: int = 0
    missing_videos: list[str] = field(default_factory=list)
    missing_frames: int = 0
    missing_examples: list[str] = field(default_factory=list)
    decoded: int = 0
    undecodable: int = 0
    undecodable_examples: list[str] = field(default_factory=list)
    frame_sizes: dict[str, int] = field(default_factory=dict)
    decode_mode: str = "sampled"
    mixed_size_videos: dict[str, dict[str, int]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no frame is missing, none failed to decode and each video has one frame size."""
        return not self.missing_frames and not self.undecodable and not self.missing_videos \
            and not self.mixed_size_videos

    def decoded_text(self) -> str:
        """How much was decoded, in words: ``all 5876 decoded``, ``sampled 150 of 5876 decoded``, ``none decoded``."""
        existing = self.frames_read - self.missing_frames
        if self.decode_mode == "all":
            return f"all {self.decoded} decoded"
        if self.decode_mode == "sampled":
            return f"sampled {self.decoded} of {existing} decoded (first, middle and last per video)"
        return "none decoded (existence checked only)"

    def to_dict(self) -> dict:
        """Plain dict (JSON-ready)."""
        return {**asdict(self), "ok": self.ok}

    def summary(self) -> str:
        """A few human-readable lines."""
        lines = [
            f"{self.annotation_pkl}: {self.elements} elements, {self.keyframes} keyframes, {self.boxes} boxes, "
            f"{self.videos} videos",
            f"frames under {self.frames_root}: {self.frames_read} read by the clips, {self.missing_frames} missing, "
            f"{self.decoded} decoded, {self.undecodable} undecodable, sizes {self.frame_sizes}",
        ]
        if self.decode_mode == "sampled":
            lines.append(f"SAMPLED: decoded {self.decoded} of the {self.frames_read - self.missing_frames} existing "
                         "frames (first, middle and last per video); --decode all decodes every one")
        elif self.decode_mode == "none":
            lines.append("NOT DECODED: only the existence of the frames was checked (--decode none)")
        if self.missing_videos:
            lines.append(f"videos without a frame folder: {self.missing_videos[:MAX_EXAMPLES]}")
        lines += [f"frames of several sizes in video {video!r}: {sizes}"
                  for video, sizes in list(self.mixed_size_videos.items())[:MAX_EXAMPLES]]
        lines += [f"missing: {example}" for example in self.missing_examples]
        lines += [f"undecodable: {example}" for example in self.undecodable_examples]
        lines.append("OK" if self.ok else "PROBLEMS FOUND")
        return "\n".join(lines)


def clip_frame_indices(element: dict, temporal_size: int | None, temporal_step: int) -> list[int]:
    """Frame numbers a clip of this element reads.

    Args:
        element: a pkl element (``start_frame``, ``n_frames``).
        temporal_size: the TemporalCenterCrop size of the config (64 for the shipped configs), or
            None to read the whole window ``range(start_frame, start_frame + n_frames)``.
        temporal_step: the crop's step (2 for the shipped configs).

    Returns:
        Frame numbers (1-based file numbers), possibly repeated.
    """
    if temporal_size is None:
        return list(range(element["start_frame"], element["start_frame"] + element["n_frames"]))
    # Imported here: datasets.transforms loads torch, which the --help of this tool should not wait for.
    from datasets.temporal_transforms import temporal_center_crop

    return temporal_center_crop(element["start_frame"], element["n_frames"], temporal_size, temporal_step)


def decode_frame(path: Path) -> tuple[int, int]:
    """Open and fully decode one image; return its (width, height) in pixels. PIL errors propagate."""
    with Image.open(path) as image:
        image.verify()
    # verify() leaves the image unusable, and does not decode pixel data: load it again in full.
    with Image.open(path) as image:
        image.load()
        return image.size


@dataclass
class _FrameUse:
    """The first element that reads a frame (for error messages)."""

    index: int
    video: str
    time: int

    def describe(self) -> str:
        return f"element {self.index} (video {self.video!r}, time {self.time})"


# A frame file as (video folder, file name): cheaper to hash than a Path for the millions of CW frames.
_Frame = tuple[str, str]


def _scan_frames(elements: list[dict], root: Path, temporal_size: int | None, temporal_step: int,
                 report: DataReport, progress: bool) -> tuple[dict[_Frame, _FrameUse], dict[_Frame, _FrameUse]]:
    """Fill the existence counts of ``report``; return the existing and the missing frames read (first user)."""
    listings: dict[str, set[str] | None] = {}
    existing: dict[_Frame, _FrameUse] = {}
    missing: dict[_Frame, _FrameUse] = {}
    crops: dict[tuple[int, int], list[int]] = {}
    bar = tqdm(elements, unit="keyframe", desc="checking frames",
               disable=not progress or len(elements) < PROGRESS_MIN_ELEMENTS)
    for index, element in enumerate(bar):
        video = element["video"]
        if video not in listings:
            folder = root / video
            # One directory listing per video is far cheaper than a stat per frame on network filesystems.
            listings[video] = {entry.name for entry in folder.iterdir()} if folder.is_dir() else None
            if listings[video] is None:
                report.missing_videos.append(video)
        names = listings[video]
        use = _FrameUse(index, video, element["time"])
        window = (element["start_frame"], element["n_frames"])
        if window not in crops:
            crops[window] = clip_frame_indices(element, temporal_size, temporal_step)
        for frame_index in crops[window]:
            name = element["format_str"] % frame_index
            target = existing if names is not None and name in names else missing
            target.setdefault((video, name), use)
    report.frames_read = len(existing) + len(missing)
    report.missing_frames = len(missing)
    report.missing_examples = [f"{root / video / name} ({use.describe()})"
                               for (video, name), use in list(missing.items())[:MAX_EXAMPLES]]
    return existing, missing


def _frames_to_decode(existing: dict[_Frame, _FrameUse], decode: str) -> list[_Frame]:
    if decode == "none":
        return []
    if decode == "all":
        return list(existing)
    by_video: dict[str, list[_Frame]] = {}
    for frame in existing:
        by_video.setdefault(frame[0], []).append(frame)
    chosen = []
    for frames in by_video.values():
        frames.sort()
        # First, middle and last frame read: a truncated extraction shows at the end, a bad codec anywhere.
        chosen += [frames[i] for i in sorted({0, len(frames) // 2, len(frames) - 1})]
    return chosen


def _decode_one(path: Path) -> tuple[int, int] | BaseException:
    try:
        return decode_frame(path)
    except _DECODE_ERRORS as exc:
        return exc


def _decode_frames(frames: list[_Frame], existing: dict[_Frame, _FrameUse], root: Path, report: DataReport,
                   progress: bool, workers: int) -> tuple[Path, str] | None:
    """Decode ``frames`` on ``workers`` threads (PIL decodes without the GIL); fill the decode counts
    and the per-video sizes of ``report``; return the first failure (path, message), in frame order."""
    sizes: Counter[str] = Counter()
    per_video: dict[str, Counter[str]] = {}
    first_failure = None
    paths = [root / frame[0] / frame[1] for frame in frames]
    bar = tqdm(total=len(frames), unit="frame", desc="decoding frames", disable=not progress or len(frames) < 500)
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for frame, path, result in zip(frames, paths, pool.map(_decode_one, paths, chunksize=64)):
            bar.update(1)
            report.decoded += 1
            if isinstance(result, BaseException):
                report.undecodable += 1
                message = f"cannot decode ({type(result).__name__}: {result}); read by {existing[frame].describe()}"
                if len(report.undecodable_examples) < MAX_EXAMPLES:
                    report.undecodable_examples.append(f"{path}: {message}")
                first_failure = first_failure or (path, message)
                continue
            size = f"{result[0]}x{result[1]}"
            sizes[size] += 1
            per_video.setdefault(frame[0], Counter())[size] += 1
    bar.close()
    report.frame_sizes = dict(sizes.most_common())
    report.mixed_size_videos = {video: dict(counts.most_common()) for video, counts in per_video.items()
                                if len(counts) > 1}
    if len(sizes) > 1:
        LOGGER.warning("frames of several sizes under %s: %s", report.frames_root, report.frame_sizes)
    return first_failure


def check_dataset(
    annotation_pkl: str | Path,
    frames_root: str | Path,
    *,
    decode: str = "sampled",
    temporal_size: int | None = 64,
    temporal_step: int = 2,
    strict: bool = True,
    progress: bool = True,
    workers: int | None = None,
) -> DataReport:
    """Check an annotation pkl and the frames its clips read, before a long job.

    Args:
        annotation_pkl: annotation or proposal pkl (trusted: unpickling executes code).
        frames_root: the config's ``root_path`` (``<root>/<video>/<format_str % index>``).
        decode: ``'sampled'`` decodes the first, middle and last frame read of each video,
            ``'all'`` every frame read, ``'none'`` only checks existence.
        temporal_size: TemporalCenterCrop size of the config (docs/numerics.md §1), or None for
            the whole window of each element.
        temporal_step: TemporalCenterCrop step.
        strict: raise on the first problem found (after the full scan); False returns the report.
        progress: show tqdm bars on large inputs.
        workers: decoding threads (default: the CPU count).

    Returns:
        The report (counts, examples, frame-size histogram).

    Raises:
        FileNotFoundError: the pkl or ``frames_root`` is missing; with ``strict``, a video folder or
            a frame is missing (the first missing file and its element are named).
        FormatError: the pkl is malformed; with ``strict``, a frame does not decode (file named), or
            the frames of one video differ in size (video, sizes and the odd frame named).
        ValueError: an unknown ``decode`` mode.
    """
    if decode not in DECODE_MODES:
        raise ValueError(f"decode must be one of {DECODE_MODES}, not {decode!r}")
    annotations = load_annotation_pkl(annotation_pkl)
    root = Path(frames_root)
    if not root.is_dir():
        raise FileNotFoundError(f"frames folder not found: {root}")
    elements = annotations.elements
    report = DataReport(
        annotation_pkl=str(annotation_pkl),
        frames_root=str(root),
        elements=len(elements),
        keyframes=len({(element["video"], element["time"]) for element in elements}),
        boxes=sum(len(element["labels"]) for element in elements),
        videos=len({element["video"] for element in elements}),
        decode_mode=decode,
    )
    existing, missing = _scan_frames(elements, root, temporal_size, temporal_step, report, progress)
    if strict and missing:
        (video, name), use = next(iter(missing.items()))
        path = root / video / name
        raise FileNotFoundError(
            f"{report.missing_frames} frame file(s) missing under {root} (videos without a folder: "
            f"{report.missing_videos[:MAX_EXAMPLES]}); first: {path}, read by {use.describe()} of {annotation_pkl}"
        )
    to_decode = _frames_to_decode(existing, decode)
    failure = _decode_frames(to_decode, existing, root, report, progress, workers or os.cpu_count() or 1)
    if strict and failure is not None:
        raise FormatError(failure[0], failure[1])
    if strict and report.mixed_size_videos:
        video, sizes = next(iter(report.mixed_size_videos.items()))
        odd = _odd_frame(to_decode, video, root, min(sizes, key=sizes.get))
        raise FormatError(root / video, f"frames of several sizes in one video: {sizes} (WxH: count); e.g. {odd}; "
                          "re-extract the video at one size")
    LOGGER.info("data check of %s: %d elements, %d frames read by the clips, %s: %s", annotation_pkl,
                report.elements, report.frames_read, report.decoded_text(), "OK" if report.ok else "problems found")
    return report


def _odd_frame(frames: list[_Frame], video: str, root: Path, size: str) -> str:
    for frame in frames:
        if frame[0] == video:
            width, height = decode_frame(root / frame[0] / frame[1])
            if f"{width}x{height}" == size:
                return f"{frame[1]} is {size}"
    return f"some frames are {size}"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.check_data",
        description="Check an annotation pkl and every frame its clips read (exists, decodes) before a long job.",
    )
    parser.add_argument("--pkl", required=True, help="annotation or proposal pkl (config: annotation_path)")
    parser.add_argument("--frames", required=True, help="frames folder (config: root_path)")
    parser.add_argument("--decode", choices=DECODE_MODES, default="all",
                        help="decode every frame the clips read (default, in parallel), a sample per video "
                             "(first, middle, last), or none")
    parser.add_argument("--workers", type=int, default=None, help="decoding threads (default: the CPU count)")
    parser.add_argument("--temporal-size", type=int, default=64, help="TemporalCenterCrop size (default 64)")
    parser.add_argument("--temporal-step", type=int, default=2, help="TemporalCenterCrop step (default 2)")
    parser.add_argument("--full-window", action="store_true",
                        help="check every frame of each element's window instead of the cropped clip")
    parser.add_argument("--json", default=None, help="also write the report as JSON here")
    parser.add_argument("--no-strict", action="store_true", help="report problems instead of stopping at them")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the report. Exit status 1 when problems were found (with --no-strict). A bad input: one line, exit 2."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    report = check_dataset(args.pkl, args.frames, decode=args.decode, workers=args.workers,
                           temporal_size=None if args.full_window else args.temporal_size,
                           temporal_step=args.temporal_step, strict=not args.no_strict)
    if args.json:
        write_text_atomic(args.json, json.dumps(report.to_dict(), indent=2) + "\n")
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
