"""The official Chaotic World annotation csv (``chaos_train_1fps.csv`` / ``chaos_test_1fps.csv``).

A header line, then one row per (keyframe, person, action label) with 13 columns; by position:
0 video id, 1 keyframe frame number, 2-5 x1 y1 x2 y2 normalised, 6 action label 0..49, 7 person id,
8 clip start frame, 9 clip end frame, 10 time in seconds, 11-12 not used by any tool (kept verbatim).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from formats.annotation_pkl import BOX_TOLERANCE
from formats.atomic import atomic_open
from formats.errors import FormatError, parse_finite_float, parse_integer

NUM_COLUMNS = 13
HEADER = (
    "video_id", "keyframe", "x1", "y1", "x2", "y2", "action_id", "person_id",
    "start_frame", "end_frame", "timestamp", "extra_1", "extra_2",
)


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
        extra: columns 11 and 12, unused, kept verbatim for round-trips.
    """

    video: str
    keyframe: int
    box: tuple[float, float, float, float]
    label: int
    person_id: int
    start_frame: int
    end_frame: int
    time: float
    extra: tuple[str, str] = ("", "")

    @property
    def n_frames(self) -> int:
        return self.end_frame - self.start_frame


def parse_official_row(fields: list[str], path: Path, line: int, num_classes: int = 50) -> OfficialRow:
    """Parse and validate one data row (``line`` is 1-based, counting the header)."""
    if len(fields) != NUM_COLUMNS:
        raise FormatError(path, f"expected {NUM_COLUMNS} columns, found {len(fields)}", line)
    video = fields[0].strip()
    if not video:
        raise FormatError(path, "empty video id", line)
    box = tuple(parse_finite_float(fields[i], HEADER[i], path, line) for i in range(2, 6))
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
        extra=(fields[11], fields[12]),
    )
    if row.start_frame < 1:
        raise FormatError(path, f"start frame {row.start_frame} < 1; frames are numbered from 1 (video {video})", line)
    if row.end_frame <= row.start_frame:
        raise FormatError(path, f"end frame {row.end_frame} <= start frame {row.start_frame} (video {video})", line)
    return row


def read_official_csv(path: str | Path, num_classes: int = 50, known_videos: set[str] | None = None) -> list[OfficialRow]:
    """Read and validate an official annotation csv.

    Args:
        path: the csv file (header line first).
        num_classes: labels must lie in ``0..num_classes-1``.
        known_videos: if given, a row whose video is not in this set is an error.

    Returns:
        The rows in file order.

    Raises:
        FileNotFoundError: no such file.
        FormatError: empty file, or a row with a wrong column count, a non-numeric field, a box
            outside [0, 1] or inverted, a label out of range, or an unknown video (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation csv not found: {path}")
    rows: list[OfficialRow] = []
    try:
        with path.open(newline="", encoding="utf-8") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                raise FormatError(path, "empty file (expected a header line and rows)")
            if not header or (len(header) == 1 and not header[0].strip()):
                raise FormatError(path, "empty first line (expected the header line)", 1)
            if len(header) != NUM_COLUMNS:
                raise FormatError(path, f"header has {len(header)} columns, expected {NUM_COLUMNS}", 1)
            if _looks_like_data(header):
                # Reading on would silently drop this row as if it were the header.
                raise FormatError(path, "the first line is a data row; the official csv starts with a header line", 1)
            for line, fields in enumerate(reader, start=2):
                if not fields or (len(fields) == 1 and not fields[0].strip()):
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
        raise FormatError(path, "no data rows after the header")
    return rows


def _looks_like_data(fields: list[str]) -> bool:
    """True when the keyframe and box columns of a first line are all numbers."""
    try:
        for value in fields[1:6]:
            float(value)
    except ValueError:
        return False
    return True


def _format_float(value: float) -> str:
    return repr(float(value))


def write_official_csv(path: str | Path, rows: list[OfficialRow]) -> None:
    """Write rows with the 13-column header, atomically (values round-trip exactly)."""
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(HEADER)
        for row in rows:
            writer.writerow([
                row.video, row.keyframe, *(_format_float(v) for v in row.box), row.label, row.person_id,
                row.start_frame, row.end_frame, _format_float(row.time), *row.extra,
            ])
