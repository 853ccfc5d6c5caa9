"""Given person boxes for the video demo: a plain csv (``time_s or frame, x1, y1, x2, y2[, track_id]``)
or the keyframes of an annotation pkl, validated line by line before any video is decoded."""
from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from common.errors import FormatError, parse_finite_float, parse_integer
from formats.annotation_pkl import load_annotation_pkl

TIME_COLUMNS = {"time_s": "seconds", "frame": "frame"}
# Pixel boxes may reach a little past the border (detectors and annotators round outwards);
# beyond this it is a wrong unit or a wrong video.
_PIXEL_SLACK = 2.0
_NORMALISED_SLACK = 0.01


@dataclass(frozen=True)
class GivenBox:
    """One given person box.

    Attributes:
        time: seconds from the start of the video.
        box: ``(x1, y1, x2, y2)`` normalised to [0, 1] of the video frame.
        track_id: the person's id when given (None: the tracker assigns one).
        line: where it came from (csv line, 1-based, or pkl element index), for messages.
    """

    time: float
    box: tuple[float, float, float, float]
    track_id: int | None
    line: int


def _time_unit(first: list[str], line: int, path: Path, wanted: str | None) -> tuple[str, bool]:
    """``(unit, first line is a header)``: a header ``time_s,...`` or ``frame,...`` names the unit."""
    head = first[0].strip().lower() if first else ""
    try:
        float(head)
    except ValueError:
        if head not in TIME_COLUMNS:
            raise FormatError(path, f"the first column must be a number or the header 'time_s' or 'frame', "
                                    f"found {first[0]!r}", line) from None
        unit = TIME_COLUMNS[head]
        if wanted is not None and wanted != unit:
            raise FormatError(path, f"the header says {head!r} but the boxes were declared as {wanted}", line)
        return unit, True
    return wanted or "seconds", False


def _parse_row(row: list[str], line: int, path: Path, unit: str,
               fps: float | None) -> tuple[float, list[float], int | None]:
    if len(row) not in (5, 6):
        raise FormatError(path, f"expected 5 or 6 columns (time_s or frame, x1, y1, x2, y2[, track_id]), "
                                f"found {len(row)}", line)
    if unit == "frame":
        frame = parse_integer(row[0], "frame", path, line)
        if frame < 0:
            raise FormatError(path, f"frame must be >= 0, found {frame}", line)
        time = frame / fps
    else:
        time = parse_finite_float(row[0], "time_s", path, line)
        if time < 0:
            raise FormatError(path, f"time_s must be >= 0, found {time:g}", line)
    box = [parse_finite_float(value, name, path, line) for value, name in zip(row[1:5], ("x1", "y1", "x2", "y2"))]
    track_id = parse_integer(row[5], "track_id", path, line) if len(row) == 6 else None
    if track_id is not None and track_id < 0:
        raise FormatError(path, f"track_id must be >= 0, found {track_id}", line)
    return time, box, track_id


def _normalise(box: list[float], line: int, path: Path, normalised: bool, size: tuple[int, int]) -> tuple[float, ...]:
    """The box in [0, 1], clipped to the frame; errors for an empty box or one far outside the frame."""
    width, height = (1.0, 1.0) if normalised else (float(size[0]), float(size[1]))
    slack = _NORMALISED_SLACK if normalised else _PIXEL_SLACK
    x1, y1, x2, y2 = box
    if x2 <= x1 or y2 <= y1:
        raise FormatError(path, f"box {box} is empty: x2 must exceed x1 and y2 exceed y1", line)
    if not normalised and max(box) <= 1.0:
        raise FormatError(path, f"box {box} is under a pixel; are these normalised boxes? say so with "
                                "--boxes-normalised", line)
    if min(x1, y1) < -slack or x2 > width + slack or y2 > height + slack:
        what = "[0, 1] (normalised)" if normalised else f"the {size[0]}x{size[1]} video (pixels)"
        raise FormatError(path, f"box {box} lies outside {what}", line)
    return (min(max(x1 / width, 0.0), 1.0), min(max(y1 / height, 0.0), 1.0),
            min(max(x2 / width, 0.0), 1.0), min(max(y2 / height, 0.0), 1.0))


def read_boxes_csv(path: str | Path, size: tuple[int, int], fps: float | None, time_unit: str | None = None,
                   normalised: bool = False) -> list[GivenBox]:
    """Read given person boxes, one per line: ``time_s or frame, x1, y1, x2, y2[, track_id]``.

    An optional header line names the first column (``time_s`` or ``frame``); blank lines and lines
    starting with ``#`` are skipped. Either every line has a track id or none has.

    Args:
        path: the csv.
        size: ``(width, height)`` of the video in pixels (pixel boxes are divided by it).
        fps: the video's own frame rate (``frame`` values are 0-based frames at this rate); None
            when unknown, and then frames are refused.
        time_unit: ``seconds`` or ``frame``; None = from the header, else seconds.
        normalised: the boxes are in [0, 1] of the frame (else pixels).

    Returns:
        The boxes in file order.

    Raises:
        FileNotFoundError: no such file.
        FormatError: a bad line (the message names the file and the line), or no box at all.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"boxes csv not found: {path}")
    with path.open(newline="", encoding="utf-8") as handle:
        rows = [(number, row) for number, row in enumerate(csv.reader(handle), start=1)
                if row and any(cell.strip() for cell in row) and not row[0].lstrip().startswith("#")]
    if not rows:
        raise FormatError(path, "no box in the file")
    unit, header = _time_unit(rows[0][1], rows[0][0], path, time_unit)
    if unit == "frame" and fps is None:
        raise FormatError(path, "boxes at frames need the video's frame rate, which ffmpeg does not list for this "
                                "video; give times in seconds", rows[0][0])
    boxes = []
    for number, row in rows[1:] if header else rows:
        time, box, track_id = _parse_row([cell.strip() for cell in row], number, path, unit, fps)
        boxes.append(GivenBox(time, _normalise(box, number, path, normalised, size), track_id, number))
    if not boxes:
        raise FormatError(path, "no box in the file (only a header)")
    with_id = [box.track_id is not None for box in boxes]
    if any(with_id) and not all(with_id):
        odd = boxes[with_id.index(not with_id[0])]
        raise FormatError(path, "either every line has a track_id or none has; this line differs from line "
                                f"{boxes[0].line}", odd.line)
    return boxes


def boxes_from_pkl(path: str | Path, video_id: str) -> list[GivenBox]:
    """The boxes of ``video_id``'s keyframes in an annotation or proposals pkl, at their keyframe times.

    A person seen in several rows of one keyframe (the original's per-row pkls) is one box. Person
    ids become track ids when they tell people apart (ground truth); proposals carry 0 for every box,
    and their boxes are then tracked like detections.

    Raises:
        FileNotFoundError: no such file.
        FormatError: the pkl breaks the schema.
        ValueError: the pkl has no keyframe of this video.
    """
    loaded = load_annotation_pkl(path)
    seen: dict[tuple, GivenBox] = {}
    for index, element in enumerate(loaded.elements):
        if element["video"] != video_id:
            continue
        for entry in element["labels"]:
            box = tuple(float(v) for v in entry["bounding_box"])
            person = tuple(entry.get("person_id", [0]))
            key = (int(element["time"]), person, tuple(round(v, 6) for v in box))
            seen.setdefault(key, GivenBox(float(element["time"]), box, int(person[0]) if person else 0, index))
    if not seen and not any(element["video"] == video_id for element in loaded.elements):
        videos = sorted({element["video"] for element in loaded.elements})
        raise ValueError(f"{path} has no keyframe of video {video_id!r} (its videos: {videos[:5]})")
    boxes = list(seen.values())
    by_time: dict[float, list[int | None]] = {}
    for box in boxes:
        by_time.setdefault(box.time, []).append(box.track_id)
    if any(len(set(ids)) < len(ids) for ids in by_time.values()):
        boxes = [GivenBox(box.time, box.box, None, box.line) for box in boxes]
    return boxes
