"""The official Chaotic World annotation csv (``chaos_train_1fps.csv`` / ``chaos_test_1fps.csv``).

As published (DATA.md, "What you start from"): no header line, one row per (keyframe, person,
action label), 13 columns; by position: 0 video id, 1 keyframe frame number, 2-5 x1 y1 x2 y2
normalised, 6 action label 0..49, 7 person id, 8 clip start frame, 9 clip end frame, 10 keyframe
time in seconds, 11-12 clip start and end in seconds (columns 8 and 9 divided by the 25 fps).
A file derived from these by pandas may carry a header line: the first line is told from data by
its content, never assumed. ``*_final_version.csv`` (the same rows cut to 8 columns, no clip
window) cannot feed the pipeline and is refused with a message naming the file to use.
"""
from __future__ import annotations

import csv
import logging
from dataclasses import dataclass
from pathlib import Path

from common.atomic import atomic_open
from common.errors import FormatError, parse_finite_float, parse_integer
from formats.annotation_pkl import BOX_TOLERANCE

LOGGER = logging.getLogger(__name__)

NUM_COLUMNS = 13
# The cut published beside each csv: video, keyframe, box, label, person id (no clip window).
FINAL_VERSION_COLUMNS = 8
# Chaotic World videos are annotated and extracted at 25 fps: frame f is second f / 25.
FRAME_RATE = 25
# Column names, for messages only: the published files have no header line.
COLUMNS = (
    "video_id", "keyframe", "x1", "y1", "x2", "y2", "action_id", "person_id",
    "start_frame", "end_frame", "timestamp", "start_seconds", "end_seconds",
)
# Columns 11-12 are written with two decimals (677 / 25 = 27.08); a larger gap means another layout.
_WINDOW_SECONDS_TOLERANCE = 0.011


@dataclass(frozen=True)
class OfficialRow:
    """One row of the official csv.

    Attributes:
        video: video id (also the frame folder name).
        keyframe: keyframe frame number (the frame file is ``<video>_%06d.png % keyframe``).
        box: (x1, y1, x2, y2), normalised to [0, 1].
        label: action label, 0-based (0..49 for Chaotic World).
        person_id: person id within the video.
        start_frame: first frame of the clip window.
        end_frame: end frame of the clip window (``n_frames = end_frame - start_frame``).
        time: keyframe time in seconds.
        window_seconds: columns 11-12, the clip window in seconds (``start_frame / 25``,
            ``end_frame / 25``); no tool reads them, they are kept for round-trips.
    """

    video: str
    keyframe: int
    box: tuple[float, float, float, float]
    label: int
    person_id: int
    start_frame: int
    end_frame: int
    time: float
    window_seconds: tuple[float, float]

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame


def window_seconds(start_frame: int, end_frame: int, fps: int = FRAME_RATE) -> tuple[float, float]:
    """Columns 11-12 as the published files write them: the window's frames in seconds, two decimals."""
    return round(start_frame / fps, 2), round(end_frame / fps, 2)


def parse_official_row(fields: list[str], path: Path, line: int, num_classes: int = 50) -> OfficialRow:
    """Parse and validate one data row (``line`` is 1-based)."""
    if len(fields) != NUM_COLUMNS:
        raise FormatError(path, _column_count_problem(path, len(fields)), line)
    video = fields[0].strip()
    if not video:
        raise FormatError(path, "empty video id", line)
    box = tuple(parse_finite_float(fields[i], COLUMNS[i], path, line) for i in range(2, 6))
    x1, y1, x2, y2 = box
    if min(box) < -BOX_TOLERANCE or max(box) > 1 + BOX_TOLERANCE:
        raise FormatError(path, f"box {list(box)} is outside [0, 1] (video {video})", line)
    if x2 < x1 or y2 < y1:
        raise FormatError(path, f"box {list(box)} has x2 < x1 or y2 < y1 (video {video})", line)
    label = parse_integer(fields[6], "action_id", path, line)
    if not 0 <= label < num_classes:
        raise FormatError(path, f"action label {label} outside 0..{num_classes - 1} (video {video})", line)
    row = OfficialRow(
        video=video,
        keyframe=parse_integer(fields[1], "keyframe", path, line),
        box=box,  # type: ignore[arg-type]
        label=label,
        person_id=parse_integer(fields[7], "person_id", path, line),
        start_frame=parse_integer(fields[8], "start_frame", path, line),
        end_frame=parse_integer(fields[9], "end_frame", path, line),
        time=parse_finite_float(fields[10], "timestamp", path, line),
        window_seconds=(parse_finite_float(fields[11], "start_seconds", path, line),
                        parse_finite_float(fields[12], "end_seconds", path, line)),
    )
    if row.start_frame < 1:
        raise FormatError(path, f"start frame {row.start_frame} < 1; frames are numbered from 1 (video {video})", line)
    if row.end_frame <= row.start_frame:
        raise FormatError(path, f"end frame {row.end_frame} <= start frame {row.start_frame} (video {video})", line)
    return row


def _column_count_problem(path: Path, found: int) -> str:
    if found == FINAL_VERSION_COLUMNS:
        full = path.name.replace("_final_version", "") if "_final_version" in path.name else "chaos_*_1fps.csv"
        return (f"{found} columns: this is the '_final_version' cut (video, keyframe, box, label, person id) "
                f"without the clip window the pipeline needs; use the 13-column {full} published beside it")
    return f"expected {NUM_COLUMNS} columns, found {found}"


def is_header(fields: list[str]) -> bool:
    """True when a first line is a header (a derived file), i.e. its keyframe and box columns are not numbers."""
    try:
        for value in fields[1:6]:
            float(value)
    except ValueError:
        return True
    return len(fields) < 6


def read_official_csv(path: str | Path, num_classes: int = 50, known_videos: set[str] | None = None,
                      fps: int = FRAME_RATE) -> list[OfficialRow]:
    """Read and validate an official annotation csv, headerless as published or with a header line.

    Args:
        path: the csv file.
        num_classes: labels must lie in ``0..num_classes-1``.
        known_videos: if given, a row whose video is not in this set is an error.
        fps: the frame rate of the frame numbers; rows whose columns 11-12 are not the clip window
            in seconds at this rate are counted in a warning.

    Returns:
        The rows in file order (every data line; a header line, if any, is skipped).

    Raises:
        FileNotFoundError: no such file.
        FormatError: empty file, the 8-column ``_final_version`` cut, or a row with a wrong column
            count, a non-numeric field, a box outside [0, 1] or inverted, a label out of range, or an
            unknown video (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation csv not found: {path}")
    rows: list[OfficialRow] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            for line, fields in enumerate(csv.reader(handle), start=1):
                if not fields or (len(fields) == 1 and not fields[0].strip()):
                    continue
                if not rows and line == 1 and is_header(fields):
                    if len(fields) != NUM_COLUMNS:
                        raise FormatError(path, "header line: " + _column_count_problem(path, len(fields)), line)
                    LOGGER.info("%s: line 1 is a header line (a derived file); skipped", path)
                    continue
                row = parse_official_row(fields, path, line, num_classes)
                if known_videos is not None and row.video not in known_videos:
                    raise FormatError(path, f"unknown video {row.video!r} (no frames or video file for it)", line)
                rows.append(row)
    except UnicodeDecodeError as error:  # a binary or non-UTF-8 file
        raise FormatError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
    except csv.Error as error:
        raise FormatError(path, f"unreadable csv ({error})") from None
    if not rows:
        raise FormatError(path, "no data rows (empty file, or a header line alone)")
    _warn_window_seconds(path, rows, fps)
    return rows


def _warn_window_seconds(path: Path, rows: list[OfficialRow], fps: int) -> None:
    """Say so when columns 11-12 are not the clip window in seconds (e.g. a frame size written there)."""
    off = [row for row in rows
           if max(abs(written - frame / fps) for written, frame in zip(row.window_seconds, (row.start_frame, row.end_frame)))
           > _WINDOW_SECONDS_TOLERANCE]
    if off:
        LOGGER.warning("%s: %d of %d rows have columns 11-12 %s, not the clip window in seconds (columns 8-9 / "
                       "%d fps = %s) as the published files; no tool reads them, but check the file's layout",
                       path, len(off), len(rows), list(off[0].window_seconds), fps,
                       [off[0].start_frame / fps, off[0].end_frame / fps])


def _format_float(value: float) -> str:
    return repr(float(value))


def write_official_csv(path: str | Path, rows: list[OfficialRow]) -> None:
    """Write rows in the published layout (no header line, 13 columns), atomically; values round-trip exactly."""
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for row in rows:
            writer.writerow([
                row.video, f"{row.keyframe:06d}", *(_format_float(v) for v in row.box), row.label, row.person_id,
                row.start_frame, row.end_frame, _format_float(row.time), *(_format_float(v) for v in row.window_seconds),
            ])


def write_official_exclusions(path: str | Path, rows: list[OfficialRow]) -> None:
    """Write an exclusions file as Chaotic World publishes them, atomically: ``video,%06d keyframe frame``,
    one line per ground-truth row of the excluded keyframes, in the rows' order."""
    with atomic_open(path, "w") as handle:
        handle.writelines(f"{row.video},{row.keyframe:06d}\n" for row in rows)
