"""The official AVA v2.2 files: annotation csvs, excluded timestamps, FAIR person proposals, 60-class label map.

Facts (AVA v2.2, as distributed by its authors and used by ACAR-Net and SlowFast):
- ``ava_{train,val}_v2.2.csv``: no header, 8 columns ``video_id, timestamp, x1, y1, x2, y2,
  action_id, person_id``; the timestamp is a whole second written ``%04d``, 0902..1798 (keyframes
  of the 15-minute window 900-1800 s, two seconds trimmed at each end); the box is normalised to
  [0, 1]; ``action_id`` is 1..80; a person with several actions has several rows.
- ``ava_{train,val}_excluded_timestamps_v2.2.csv``: ``video_id,timestamp`` rows left out of the
  evaluation.
- ``ava_action_list_v2.2_for_activitynet_2019.pbtxt``: the 60 evaluated classes (ids among 1..80) in
  the ``label { name label_id label_type }`` layout (read with ``formats.pbtxt``). The type follows
  the id: 1-14 ``PERSON_MOVEMENT`` (pose), 15-63 ``OBJECT_MANIPULATION``, 64-80 ``PERSON_INTERACTION``;
  copies of the list in the ``item { name id }`` layout carry no type.
- person proposals (Facebook's LFB / "FAIR" detector, the ones ACAR-Net and SlowFast use): a
  pickled dict ``"video,%04d"`` -> array ``[N, 5]`` of ``[x1, y1, x2, y2, score]``, normalised.
"""
from __future__ import annotations

import csv
import math
import pickle
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.atomic import atomic_open
from common.errors import FormatError, parse_finite_float, parse_integer
from formats.annotation_pkl import BOX_TOLERANCE
from formats.eval_csv import read_exclusions
from formats.pbtxt import LabelMapEntry, read_label_map_entries
from formats.safe_pickle import safe_load

NUM_COLUMNS = 8
COLUMNS = ("video_id", "timestamp", "x1", "y1", "x2", "y2", "action_id", "person_id")
NUM_ACTIONS = 80
# The last action id of each AVA type (ids 1..14 are pose, 15..63 object manipulation, 64..80 interaction).
_LABEL_TYPE_RANGES = ((14, "PERSON_MOVEMENT"), (63, "OBJECT_MANIPULATION"), (NUM_ACTIONS, "PERSON_INTERACTION"))
# Keyframe seconds of AVA v2.2: 902..1798 inclusive (15th to 30th minute, 2 s trimmed each end).
FIRST_KEYFRAME = 902
LAST_KEYFRAME = 1798


def ava_label_type(action_id: int) -> str:
    """The AVA v2.2 ``label_type`` of an action id (1..80), for label maps written without one."""
    if not 1 <= action_id <= NUM_ACTIONS:
        raise ValueError(f"AVA action ids are 1..{NUM_ACTIONS}, got {action_id}")
    return next(label_type for last, label_type in _LABEL_TYPE_RANGES if action_id <= last)


@dataclass(frozen=True)
class AvaRow:
    """One row of an AVA annotation csv.

    Attributes:
        video: video id (also the frame folder name).
        time: keyframe second, 902..1798.
        box: (x1, y1, x2, y2), normalised to [0, 1].
        action_id: 1..80 (the 60 evaluated ones are listed in the label map).
        person_id: person id within the video.
    """

    video: str
    time: int
    box: tuple[float, float, float, float]
    action_id: int
    person_id: int


@dataclass(frozen=True)
class Proposal:
    """One detector box at a keyframe: ``box`` normalised (x1, y1, x2, y2), ``score`` in [0, 1]."""

    box: tuple[float, float, float, float]
    score: float


def check_keyframe_time(time: int, path: str | Path, where: str, line: int | None = None) -> None:
    """Raise a FormatError unless ``time`` is an AVA v2.2 keyframe second (902..1798)."""
    if not FIRST_KEYFRAME <= time <= LAST_KEYFRAME:
        raise FormatError(path, f"{where}: timestamp {time} outside {FIRST_KEYFRAME:04d}..{LAST_KEYFRAME:04d} "
                          "(AVA v2.2 keyframes of the 15th to 30th minute)", line)


def _check_box(box: tuple[float, ...], path: str | Path, where: str, line: int | None = None) -> None:
    x1, y1, x2, y2 = box
    if min(box) < -BOX_TOLERANCE or max(box) > 1 + BOX_TOLERANCE:
        raise FormatError(path, f"{where}: box {list(box)} is outside [0, 1] (AVA boxes are normalised)", line)
    if x2 < x1 or y2 < y1:
        raise FormatError(path, f"{where}: box {list(box)} has x2 < x1 or y2 < y1", line)


def parse_ava_row(fields: list[str], path: str | Path, line: int, num_actions: int = NUM_ACTIONS) -> AvaRow:
    """Parse and validate one csv row (``line`` is 1-based)."""
    if len(fields) != NUM_COLUMNS:
        raise FormatError(path, f"expected {NUM_COLUMNS} columns ({', '.join(COLUMNS)}), found {len(fields)}", line)
    video = fields[0].strip()
    if not video:
        raise FormatError(path, "empty video id", line)
    time = parse_integer(fields[1], "timestamp", path, line)
    check_keyframe_time(time, path, f"video {video}", line)
    box = tuple(parse_finite_float(fields[i], COLUMNS[i], path, line) for i in range(2, 6))
    _check_box(box, path, f"video {video}, time {time:04d}", line)
    action_id = parse_integer(fields[6], "action_id", path, line)
    if not 1 <= action_id <= num_actions:
        raise FormatError(path, f"action_id {action_id} outside 1..{num_actions} (video {video}, time {time:04d})",
                          line)
    person_id = parse_integer(fields[7], "person_id", path, line)
    return AvaRow(video=video, time=time, box=box, action_id=action_id, person_id=person_id)  # type: ignore[arg-type]


def read_ava_csv(path: str | Path, num_actions: int = NUM_ACTIONS) -> list[AvaRow]:
    """Read and validate ``ava_{train,val}_v2.2.csv`` (no header, 8 columns).

    Args:
        path: the csv file.
        num_actions: action ids must lie in ``1..num_actions``.

    Returns:
        The rows in file order.

    Raises:
        FileNotFoundError: no such file.
        FormatError: no row, or a row with a wrong column count, a non-numeric field, a timestamp
            outside 0902..1798, a box outside [0, 1] or inverted, an action id out of range (file and
            line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AVA annotation csv not found: {path}")
    rows: list[AvaRow] = []
    with path.open(newline="", encoding="utf-8") as handle:
        for line, fields in enumerate(csv.reader(handle), start=1):
            if not fields or (len(fields) == 1 and not fields[0].strip()):
                continue
            rows.append(parse_ava_row(fields, path, line, num_actions))
    if not rows:
        raise FormatError(path, "no data rows")
    return rows


def read_ava_exclusions(path: str | Path) -> set[tuple[str, int]]:
    """Read ``ava_*_excluded_timestamps_v2.2.csv``; every timestamp must be a keyframe second.

    Returns:
        ``{(video_id, second)}``.

    Raises:
        FileNotFoundError, FormatError: as ``formats.eval_csv.read_exclusions``, and for a timestamp
            outside 0902..1798.
    """
    keys = read_exclusions(path)
    for video, time in sorted(keys):
        check_keyframe_time(time, path, f"excluded keyframe {video},{time:04d}")
    return keys


def read_ava_label_map(path: str | Path, num_actions: int = NUM_ACTIONS) -> list[LabelMapEntry]:
    """The evaluated classes (60 for AVA v2.2), in ascending id order; position c is the model's output c.

    Raises:
        FileNotFoundError, FormatError: as ``formats.pbtxt.read_label_map_entries``, and for an id
            outside ``1..num_actions``.
    """
    entries = read_label_map_entries(path)
    for entry in entries:
        if not 1 <= entry.class_id <= num_actions:
            raise FormatError(path, f"class {entry.name!r}: id {entry.class_id} outside 1..{num_actions}")
    return sorted(entries, key=lambda entry: entry.class_id)


def parse_proposal_key(key: object, path: str | Path) -> tuple[str, int]:
    """``"video,%04d"`` -> ``(video, second)``; a FormatError naming the key otherwise."""
    if not isinstance(key, str) or key.count(",") != 1:
        raise FormatError(path, f"proposal key {key!r}: expected 'video_id,timestamp' (e.g. '-5KQ66BBWC4,0902')")
    video, stamp = key.split(",")
    if not video or not stamp.strip().isdigit():
        raise FormatError(path, f"proposal key {key!r}: expected 'video_id,timestamp' with an integer timestamp")
    time = int(stamp)
    check_keyframe_time(time, path, f"proposal key {key!r}")
    return video, time


def _proposal_rows(value: object, key: str, path: str | Path) -> list[Proposal]:
    try:
        rows = [list(map(float, row)) for row in value]  # numpy arrays and nested lists alike
    except (TypeError, ValueError):
        raise FormatError(path, f"proposal key {key!r}: expected an [N, 5] array of x1, y1, x2, y2, score") from None
    proposals = []
    for index, row in enumerate(rows):
        if len(row) != 5 or not all(math.isfinite(v) for v in row):
            raise FormatError(path, f"proposal key {key!r}, box {index}: expected 5 finite numbers "
                              f"[x1, y1, x2, y2, score], found {row}")
        _check_box(tuple(row[:4]), path, f"proposal key {key!r}, box {index}")
        if not 0.0 <= row[4] <= 1.0:
            raise FormatError(path, f"proposal key {key!r}, box {index}: score {row[4]} outside [0, 1]")
        proposals.append(Proposal(box=tuple(row[:4]), score=row[4]))  # type: ignore[arg-type]
    return proposals


def read_ava_proposals(path: str | Path, keyframes: Iterable[tuple[str, int]] | None = None,
                       allow_unannotated: bool = False) -> dict[tuple[str, int], list[Proposal]]:
    """Read a FAIR / LFB person-proposals pickle, without running code from it.

    The file is loaded only through ``formats.safe_pickle.safe_load(path, allow_numpy=True)``.

    Args:
        path: the pickle (``{"video,%04d": [[x1, y1, x2, y2, score], ...]}``).
        keyframes: the ``(video, second)`` keyframes of the matching csv. When given, a key whose
            video is not in the csv is an error, and so is a key of a known video at a second the
            csv does not annotate unless ``allow_unannotated``.
        allow_unannotated: accept (and return) keys at seconds the csv does not annotate.

    Returns:
        ``{(video, second): proposals}``, in the file's key order.

    Raises:
        FileNotFoundError: no such file.
        FormatError: not a dict, a malformed key, a timestamp outside 0902..1798, a key not in the
            csv, or a box that is not ``[x1, y1, x2, y2, score]`` normalised (file and key named).
    """
    data = safe_load(path, allow_numpy=True)
    if not isinstance(data, dict):
        raise FormatError(path, f"expected a pickled dict 'video,%04d' -> [N, 5] array, found {type(data).__name__}")
    known = set(keyframes) if keyframes is not None else None
    videos = {video for video, _ in known} if known is not None else None
    proposals: dict[tuple[str, int], list[Proposal]] = {}
    for key, value in data.items():
        video, time = parse_proposal_key(key, path)
        if known is not None and (video, time) not in known:
            if video not in videos:
                raise FormatError(path, f"proposal key {key!r}: video {video!r} is not in the annotation csv")
            if not allow_unannotated:
                raise FormatError(path, f"proposal key {key!r}: keyframe not in the annotation csv (pass "
                                  "--allow-unannotated to keep proposals of keyframes the csv does not annotate)")
        proposals[(video, time)] = _proposal_rows(value, key, path)
    return proposals


def write_ava_csv(path: str | Path, rows: Iterable[AvaRow]) -> None:
    """Write rows in the official layout (no header, ``%04d`` timestamps, boxes with 3 decimals), atomically."""
    with atomic_open(path, "w") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        for row in rows:
            writer.writerow([row.video, f"{row.time:04d}", *(f"{v:.3f}" for v in row.box), row.action_id,
                             row.person_id])


def write_ava_proposals(path: str | Path, proposals: Mapping[tuple[str, int], Sequence[Proposal]]) -> None:
    """Write a proposals pickle in the FAIR layout (``"video,%04d"`` -> float32 ``[N, 5]``), atomically."""
    data = {f"{video},{time:04d}": np.array([[*p.box, p.score] for p in boxes], dtype=np.float32).reshape(-1, 5)
            for (video, time), boxes in proposals.items()}
    with atomic_open(path, "wb") as handle:
        pickle.dump(data, handle, protocol=4)
