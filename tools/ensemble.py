"""Ensemble several predict.csv files into one: weighted score averages over IoU-matched boxes."""
from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from common.cli import run_main
from detect.quality import iou_matrix
from formats.eval_csv import Predictions, read_predict_csv, write_predict_csv

LOGGER = logging.getLogger(__name__)

DEFAULT_IOU = 0.5
KeyframeKey = tuple[str, int]
_BOX_COLUMNS = ["x1", "y1", "x2", "y2"]


@dataclass
class _Cluster:
    """Boxes of several files taken as one person box: weighted sums, divided at the end."""

    box_sum: np.ndarray
    box_weight: float
    score_sum: np.ndarray
    members: int = 1

    @property
    def box(self) -> np.ndarray:
        return self.box_sum / self.box_weight


@dataclass
class EnsembleStats:
    """What the merge did: output size and how many boxes were matched across files."""

    files: int
    keyframes: int
    boxes: int
    classes: int
    matched_boxes: int
    rows: int
    boxes_per_file: list[int] = field(default_factory=list)


def file_boxes(preds: Predictions, classes: np.ndarray) -> dict[KeyframeKey, tuple[np.ndarray, np.ndarray]]:
    """One file's distinct boxes per keyframe with their score vector over ``classes``.

    Rows are grouped by (video, time, box); a class the file does not list for a box scores 0, and a
    (box, class) repeated in the file (e.g. from a pkl with one element per csv row) is averaged.

    Returns:
        ``{(video, time): (boxes [M, 4], scores [M, K])}`` in file order, K = ``len(classes)``.
    """
    frame = pd.DataFrame({"video": preds.video, "time": preds.time, "class_id": preds.class_id, "score": preds.score})
    frame[_BOX_COLUMNS] = preds.boxes
    wide = frame.pivot_table(index=["video", "time", *_BOX_COLUMNS], columns="class_id", values="score",
                             aggfunc="mean", sort=False)
    wide = wide.reindex(columns=classes).fillna(0.0)
    index = wide.index.to_frame(index=False)
    boxes, scores = index[_BOX_COLUMNS].to_numpy(np.float64), wide.to_numpy(np.float64)
    out: dict[KeyframeKey, tuple[np.ndarray, np.ndarray]] = {}
    for (video, time), rows in index.groupby(["video", "time"], sort=False).indices.items():
        out[(str(video), int(time))] = (boxes[rows], scores[rows])
    return out


def greedy_pairs(overlaps: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """One-to-one pairs ``(row, column)`` with IoU >= ``threshold``, highest IoU first."""
    rows, cols = np.nonzero(overlaps >= threshold)
    order = np.argsort(-overlaps[rows, cols], kind="stable")
    used_rows, used_cols, pairs = set(), set(), []
    for row, col in zip(rows[order].tolist(), cols[order].tolist()):
        if row not in used_rows and col not in used_cols:
            used_rows.add(row)
            used_cols.add(col)
            pairs.append((row, col))
    return pairs


def merge_keyframe(per_file: list[tuple[np.ndarray, np.ndarray] | None], weights: Sequence[float],
                   iou_threshold: float) -> list[_Cluster]:
    """Merge the boxes of one keyframe across files.

    Files are taken in order; each file's boxes are matched one-to-one (greedy, highest IoU first) to
    the clusters built from the previous files, compared with the cluster's current weighted-mean
    box. Unmatched boxes start new clusters. A cluster's box is the weighted mean of its members'
    boxes; its scores are the weighted sum over files, a file without a box in the cluster adding 0.

    Args:
        per_file: per file ``(boxes [M, 4], scores [M, K])``, or None when it lacks the keyframe.
        weights: one positive weight per file.
        iou_threshold: minimum IoU for two boxes to be one.
    """
    clusters: list[_Cluster] = []
    for entry, weight in zip(per_file, weights):
        if entry is None:
            continue
        boxes, scores = entry
        matched: dict[int, int] = {}
        if clusters:
            centres = np.stack([cluster.box for cluster in clusters])
            matched = dict(greedy_pairs(iou_matrix(boxes, centres), iou_threshold))
        for index in range(len(boxes)):
            if index in matched:
                cluster = clusters[matched[index]]
                cluster.box_sum = cluster.box_sum + weight * boxes[index]
                cluster.box_weight += weight
                cluster.score_sum = cluster.score_sum + weight * scores[index]
                cluster.members += 1
            else:
                clusters.append(_Cluster(weight * boxes[index], weight, weight * scores[index]))
    return clusters


def _check_weights(weights: Sequence[float] | None, count: int) -> list[float]:
    if weights is None:
        return [1.0] * count
    weights = [float(w) for w in weights]
    if len(weights) != count:
        raise ValueError(f"{len(weights)} weight(s) given for {count} predict file(s)")
    bad = [w for w in weights if not (math.isfinite(w) and w > 0)]
    if bad:
        raise ValueError(f"weights must be positive finite numbers, got {bad}")
    return weights


def ensemble_predictions(predictions: Sequence[Predictions], weights: Sequence[float] | None = None,
                         iou_threshold: float = DEFAULT_IOU) -> tuple[Predictions, EnsembleStats]:
    """Merge several prediction sets (see ``merge_keyframe``); scores are divided by the total weight.

    The output lists every box once per keyframe with a row for every class present in any input,
    so the evaluator sees a score for each class of each box. Keyframes appear in first-appearance
    order over the files; boxes in cluster order; classes ascending.

    Raises:
        ValueError: no input, or weights of the wrong count or not positive.
    """
    if not predictions:
        raise ValueError("no predict files to ensemble")
    weights = _check_weights(weights, len(predictions))
    total = sum(weights)
    classes = np.unique(np.concatenate([p.class_id for p in predictions]))
    tables = [file_boxes(p, classes) for p in predictions]
    keys = list(dict.fromkeys(key for table in tables for key in table))
    videos, times, boxes, scores = [], [], [], []
    matched = 0
    for key in keys:
        for cluster in merge_keyframe([table.get(key) for table in tables], weights, iou_threshold):
            videos.append(key[0])
            times.append(key[1])
            boxes.append(cluster.box)
            scores.append(cluster.score_sum / total)
            matched += cluster.members > 1
    count = len(boxes)
    box_array = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    score_array = np.asarray(scores, dtype=np.float64).reshape(count, len(classes))
    merged = Predictions(video=np.repeat(np.asarray(videos, dtype=object), len(classes)).tolist(),
                         time=np.repeat(np.asarray(times, dtype=np.int64), len(classes)),
                         boxes=np.repeat(box_array, len(classes), axis=0),
                         class_id=np.tile(classes, count), score=score_array.reshape(-1))
    stats = EnsembleStats(files=len(predictions), keyframes=len(keys), boxes=count, classes=len(classes),
                          matched_boxes=matched, rows=len(merged),
                          boxes_per_file=[sum(len(b) for b, _ in t.values()) for t in tables])
    return merged, stats


def ensemble_files(paths: Sequence[str | Path], out_csv: str | Path, weights: Sequence[float] | None = None,
                   iou_threshold: float = DEFAULT_IOU) -> EnsembleStats:
    """Read predict.csv files, ensemble them and write one predict.csv atomically.

    Args:
        paths: predict.csv files (``video,time,x1,y1,x2,y2,class_id,score``, no header).
        out_csv: the merged predict.csv.
        weights: one positive weight per file (default: equal).
        iou_threshold: boxes of different files with IoU >= this are one box.

    Raises:
        FileNotFoundError: an input is missing.
        FormatError: a malformed input (file and line named).
        ValueError: bad weights.
    """
    predictions = [read_predict_csv(path) for path in paths]
    merged, stats = ensemble_predictions(predictions, weights, iou_threshold)
    write_predict_csv(out_csv, merged)
    LOGGER.info("wrote %s: %d keyframes, %d boxes (%d merged across files), %d rows", out_csv, stats.keyframes,
                stats.boxes, stats.matched_boxes, stats.rows)
    return stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.ensemble",
                                     description="Ensemble predict.csv files (weighted score averages).")
    parser.add_argument("inputs", nargs="+", help="predict.csv files")
    parser.add_argument("--out", required=True, help="merged predict.csv")
    parser.add_argument("--weights", type=float, nargs="+", default=None, help="one weight per input")
    parser.add_argument("--iou", type=float, default=DEFAULT_IOU,
                        help="boxes of different files with at least this IoU are merged")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints a one-line summary."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    stats = ensemble_files(args.inputs, args.out, args.weights, args.iou)
    print(f"{args.out}: {stats.keyframes} keyframes, {stats.boxes} boxes ({stats.matched_boxes} matched across "
          f"files; inputs had {stats.boxes_per_file}), {stats.classes} classes, {stats.rows} rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
