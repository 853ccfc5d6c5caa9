"""The evaluator's csv files: ground truth, predict.csv and exclusions, as columnar numpy arrays.

Formats (no header line in any of them):

- ground truth (``chaos_test_t_+1.csv``): ``video_id,%04d time,x1,y1,x2,y2,class_id,person_id``
  (a 7-column row without person id is accepted, as by the official AVA reader; person id -1);
- predict.csv: ``video_id,time,x1,y1,x2,y2,class_id,score``, written with 3 decimals;
- exclusions: ``video_id,timestamp``.

Times are normalised on read as ``int(float(field))``, so ``0902`` and ``902`` name the same keyframe.
Class ids must be integers but are not range-checked here: the evaluator drops ids outside the label
map. Boxes and scores must be finite numbers. Readers take a fast columnar path (pandas' C parser);
only when that path sees something wrong does a line-by-line scan find the first offending line, so
every error names the file and the 1-based line.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from common.atomic import atomic_open
from common.errors import FormatError, parse_finite_float, parse_integer

GT_COLUMNS = ("video_id", "time", "x1", "y1", "x2", "y2", "class_id", "person_id")
PREDICT_COLUMNS = ("video_id", "time", "x1", "y1", "x2", "y2", "class_id", "score")
EXCLUSION_COLUMNS = ("video_id", "timestamp")
# Person id used for 7-column ground-truth rows (the official reader allows them).
MISSING_PERSON_ID = -1


def _as_boxes(boxes: object) -> np.ndarray:
    array = np.asarray(boxes, dtype=np.float64)
    if array.size == 0:
        array = array.reshape(0, 4)
    if array.ndim != 2 or array.shape[1] != 4:
        raise ValueError(f"boxes must have shape [N, 4], found {array.shape}")
    return array


def _check_lengths(name: str, video: list[str], **columns: np.ndarray) -> None:
    for column, array in columns.items():
        if array.ndim != 1 and column != "boxes":
            raise ValueError(f"{name}.{column} must be one-dimensional, found shape {array.shape}")
        if len(array) != len(video):
            raise ValueError(f"{name}: {column} has {len(array)} rows but video has {len(video)}")


@dataclass(frozen=True, eq=False)
class GroundTruth:
    """Ground-truth boxes, one row per (keyframe, person, action).

    Attributes:
        video: video ids, length N.
        time: keyframe times in whole seconds, int64 ``[N]``.
        boxes: ``[N, 4]`` float64 (x1, y1, x2, y2), normalised to [0, 1].
        class_id: int64 ``[N]`` action ids (1..50 for Chaotic World).
        person_id: int64 ``[N]`` person ids (-1 when the file has none).
    """

    video: list[str]
    time: np.ndarray
    boxes: np.ndarray
    class_id: np.ndarray
    person_id: np.ndarray

    def __post_init__(self) -> None:
        # Coerce once here so every consumer can rely on the dtypes in the docstring.
        object.__setattr__(self, "video", [str(v) for v in self.video])
        object.__setattr__(self, "time", np.asarray(self.time, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "boxes", _as_boxes(self.boxes))
        object.__setattr__(self, "class_id", np.asarray(self.class_id, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "person_id", np.asarray(self.person_id, dtype=np.int64).reshape(-1))
        _check_lengths("GroundTruth", self.video, time=self.time, boxes=self.boxes,
                       class_id=self.class_id, person_id=self.person_id)

    def __len__(self) -> int:
        return len(self.video)


@dataclass(frozen=True, eq=False)
class Predictions:
    """Scored detections, one row per (keyframe, box, class), as in predict.csv.

    Attributes:
        video: video ids, length N.
        time: keyframe times in whole seconds, int64 ``[N]``.
        boxes: ``[N, 4]`` float64 (x1, y1, x2, y2), normalised to [0, 1].
        class_id: int64 ``[N]`` action ids (1..50 for Chaotic World).
        score: float64 ``[N]`` class probabilities.
    """

    video: list[str]
    time: np.ndarray
    boxes: np.ndarray
    class_id: np.ndarray
    score: np.ndarray

    def __post_init__(self) -> None:
        object.__setattr__(self, "video", [str(v) for v in self.video])
        object.__setattr__(self, "time", np.asarray(self.time, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "boxes", _as_boxes(self.boxes))
        object.__setattr__(self, "class_id", np.asarray(self.class_id, dtype=np.int64).reshape(-1))
        object.__setattr__(self, "score", np.asarray(self.score, dtype=np.float64).reshape(-1))
        _check_lengths("Predictions", self.video, time=self.time, boxes=self.boxes,
                       class_id=self.class_id, score=self.score)

    def __len__(self) -> int:
        return len(self.video)


# ----------------------------------------------------------------------------------------------
# Line-by-line validation (the slow path, run only to locate an error).
# ----------------------------------------------------------------------------------------------


def _check_fields(fields: list[str], columns: Sequence[str], integer_columns: set[int],
                  allowed_counts: tuple[int, ...], path: Path, line: int) -> None:
    """Validate one row of ``fields``; raise FormatError naming the file and line."""
    if len(fields) not in allowed_counts:
        expected = " or ".join(str(count) for count in allowed_counts)
        raise FormatError(path, f"expected {expected} comma-separated columns, found {len(fields)}", line)
    if not fields[0]:
        raise FormatError(path, "empty video id", line)
    for index in range(1, len(fields)):
        if index in integer_columns:
            parse_integer(fields[index], columns[index], path, line)
        else:
            parse_finite_float(fields[index], columns[index], path, line)


def _csv_rows(path: Path) -> Iterator[tuple[int, list[str]]]:
    """``(1-based line, fields)`` of the non-blank rows; undecodable or NUL-holding text is a FormatError."""
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        try:
            for fields in reader:
                if fields:
                    yield reader.line_num, fields
        except UnicodeDecodeError as error:
            raise FormatError(path, f"not UTF-8 text ({error.reason} at byte {error.start})") from None
        except csv.Error as error:
            raise FormatError(path, f"unreadable csv ({error})", reader.line_num + 1) from None


def _locate_error(path: Path, columns: Sequence[str], integer_columns: set[int],
                  allowed_counts: tuple[int, ...]) -> FormatError:
    """Scan ``path`` line by line and return the error of its first bad line."""
    try:
        for line, fields in _csv_rows(path):
            _check_fields(fields, columns, integer_columns, allowed_counts, path, line)
    except FormatError as error:
        return error
    # The fast path disagreed with the scan; still fail rather than return doubtful data.
    return FormatError(path, "could not be parsed as a csv of columns " + ",".join(columns))


# ----------------------------------------------------------------------------------------------
# Fast columnar reading.
# ----------------------------------------------------------------------------------------------


def _read_table(path: str | Path, columns: Sequence[str], integer_columns: set[int],
                allowed_counts: tuple[int, ...], what: str) -> tuple[list[str], np.ndarray]:
    """Read a header-less csv into video ids and a float64 matrix of the other columns.

    Returns:
        ``(video, values [N, C-1])``; where the last column is optional, rows without it hold
        NaN there.

    Raises:
        FileNotFoundError: no such file.
        FormatError: empty file or a bad row (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    if path.stat().st_size == 0:
        raise FormatError(path, f"empty file (expected {what} rows: {','.join(columns)})")
    width = len(columns)
    try:
        frame = pd.read_csv(path, header=None, names=list(range(width)), dtype=str, na_filter=False,
                            engine="c", skip_blank_lines=True, encoding="utf-8")
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError):
        raise _locate_error(path, columns, integer_columns, allowed_counts) from None
    if len(frame) == 0:
        raise FormatError(path, f"empty file (expected {what} rows: {','.join(columns)})")
    raw = frame.to_numpy()
    video = raw[:, 0]
    values = np.full((len(frame), width - 1), np.nan)
    optional_last = min(allowed_counts) == width - 1
    # pandas pads short rows with '': legal only in an optional last column (then NaN).
    without_last = raw[:, -1] == "" if optional_last else np.zeros(len(frame), dtype=bool)
    for index in range(1, width):
        present = ~without_last if index == width - 1 else slice(None)
        column = raw[present, index]
        if (column == "").any():
            raise _locate_error(path, columns, integer_columns, allowed_counts)
        try:
            values[present, index - 1] = column.astype(np.float64)
        except ValueError:
            raise _locate_error(path, columns, integer_columns, allowed_counts) from None
    bad = ~np.isfinite(values[:, :-1]).all(axis=1) | (~np.isfinite(values[:, -1]) & ~without_last)
    integral = np.nan_to_num(values[:, sorted(i - 1 for i in integer_columns)])
    bad |= (integral != np.floor(integral)).any(axis=1)
    bad |= video == ""
    if bad.any():
        raise _locate_error(path, columns, integer_columns, allowed_counts)
    return video.tolist(), values


def read_ground_truth_csv(path: str | Path) -> GroundTruth:
    """Read the evaluator's ground truth (``video_id,%04d time,x1,y1,x2,y2,class_id,person_id``).

    Args:
        path: header-less csv; 8 columns (7 without person id, as the official AVA reader allows).

    Returns:
        A GroundTruth in file order, times as ``int(float(field))``.

    Raises:
        FileNotFoundError: no such file.
        FormatError: empty file, wrong column count, non-numeric or non-finite field, or a class id,
            person id or time that is not an integer (the message names the file and line).
    """
    # Time is written '%04d' but older tools wrote seconds as floats; int(float()) reads both.
    video, values = _read_table(path, GT_COLUMNS, {6, 7}, (7, 8), "ground-truth csv")
    person = values[:, 6]
    person = np.where(np.isnan(person), MISSING_PERSON_ID, person)
    return GroundTruth(video=video, time=np.trunc(values[:, 0]).astype(np.int64), boxes=values[:, 1:5],
                       class_id=values[:, 5].astype(np.int64), person_id=person.astype(np.int64))


def read_predict_csv(path: str | Path) -> Predictions:
    """Read a predict.csv (``video_id,time,x1,y1,x2,y2,class_id,score``, 8 columns).

    Args:
        path: header-less csv, as written by the engine or a challenge entrant.

    Returns:
        Predictions in file order, times as ``int(float(field))``.

    Raises:
        FileNotFoundError: no such file.
        FormatError: empty file, wrong column count, non-numeric or non-finite field, or a class id
            that is not an integer (the message names the file and line).
    """
    video, values = _read_table(path, PREDICT_COLUMNS, {6}, (8,), "predict csv")
    return Predictions(video=video, time=np.trunc(values[:, 0]).astype(np.int64), boxes=values[:, 1:5],
                       class_id=values[:, 5].astype(np.int64), score=values[:, 6])


def read_exclusion_lines(path: str | Path) -> list[tuple[int, str, int]]:
    """Read an exclusions file (``video_id,timestamp`` rows) keeping its lines.

    Args:
        path: header-less csv; an empty file means no exclusions.

    Returns:
        ``[(line, video_id, int(float(timestamp)))]`` in file order, repeats kept. The number is
        whatever the file holds: seconds for AVA and the evaluator, frame numbers in Chaotic World's
        published files (``evaluation/exclusions.py``).

    Raises:
        FileNotFoundError: no such file.
        FormatError: wrong column count or non-numeric timestamp (file and line named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"exclusions csv not found: {path}")
    lines = []
    # Exclusion files have a few hundred rows at most: the line-by-line reader is fast enough.
    for line, fields in _csv_rows(path):
        _check_fields(fields, EXCLUSION_COLUMNS, set(), (2,), path, line)
        lines.append((line, fields[0], int(float(fields[1]))))
    return lines


def read_exclusions(path: str | Path) -> set[tuple[str, int]]:
    """The distinct ``(video_id, int(float(timestamp)))`` keys of an exclusions file (``read_exclusion_lines``)."""
    return {(video, number) for _, video, number in read_exclusion_lines(path)}


# ----------------------------------------------------------------------------------------------
# Writers (atomic).
# ----------------------------------------------------------------------------------------------


def format_predict_row(video: str, time: int | float | str, box: Sequence[float], class_id: int,
                       score: float) -> str:
    """One predict.csv line without the newline: ``'%s,%s,%.3f,%.3f,%.3f,%.3f,%d,%.3f'``.

    Args:
        video: video id.
        time: keyframe time in seconds (written as ``str(int(float(time)))``).
        box: (x1, y1, x2, y2) normalised.
        class_id: action id (1..50).
        score: class probability.
    """
    x1, y1, x2, y2 = box
    return "%s,%s,%.3f,%.3f,%.3f,%.3f,%d,%.3f" % (
        video, str(int(float(time))), x1, y1, x2, y2, int(class_id), score)


def write_predict_csv(path: str | Path, preds: Predictions) -> None:
    """Write Predictions as a predict.csv, atomically (temp file + os.replace)."""
    rows = zip(preds.video, preds.time.tolist(), preds.boxes.tolist(), preds.class_id.tolist(),
               preds.score.tolist())
    with atomic_open(path, "w") as handle:
        handle.writelines(format_predict_row(*row) + "\n" for row in rows)


def write_ground_truth_csv(path: str | Path, gt: GroundTruth) -> None:
    """Write a GroundTruth csv atomically; time as ``%04d``, boxes at full precision (round-trips)."""
    rows = zip(gt.video, gt.time.tolist(), gt.boxes.tolist(), gt.class_id.tolist(), gt.person_id.tolist())
    with atomic_open(path, "w") as handle:
        for video, time, (x1, y1, x2, y2), class_id, person_id in rows:
            handle.write(f"{video},{time:04d},{x1!r},{y1!r},{x2!r},{y2!r},{class_id},{person_id}\n")


def write_exclusions(path: str | Path, keys: Iterable[tuple[str, int]]) -> None:
    """Write ``video_id,timestamp`` rows (sorted, time as ``%04d``) atomically."""
    with atomic_open(path, "w") as handle:
        for video, time in sorted(keys):
            handle.write(f"{video},{int(time):04d}\n")
