"""A loop-for-loop mirror of the original evaluator: the baseline of ``benchmarks/capacity_sweep.py`` and a test oracle.

It does what the original's ``calc_mAP.py`` + ``ava_evaluation`` do for one capacity, in the same
steps and at the same cost: parse the csv files with the ``csv`` module, keep each keyframe's rows on a
``heapq`` of ``(score, class id, y1, x1, y2, x2)`` tuples, sort each heap by descending score, match
per keyframe and class with numpy IoU matrices, concatenate per class and rank with an argsort
(numpy 1.21.6's order by default, ``evaluation.original.numpy_argsort.numpy_1_21_argsort``). It is slow by
design; use ``evaluation.run_evaluation`` for real work.
"""
from __future__ import annotations

import csv
import heapq
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import numpy as np

from evaluation.boxes import iou_matrix
from evaluation.original.numpy_argsort import numpy_1_21_argsort
from formats.pbtxt import read_label_map


def _image_key(video: str, timestamp: str) -> str:
    return "%s,%04d" % (video, float(timestamp))


def read_rows(path: str | Path, class_ids: set[int], capacity: int) -> dict[str, list[tuple]]:
    """Per keyframe (first-appearance order), the kept ``(score, class, y1, x1, y2, x2)`` by descending score."""
    entries: dict[str, list[tuple]] = defaultdict(list)
    with open(path, newline="") as handle:
        for row in csv.reader(handle):
            key = _image_key(row[0], row[1])
            x1, y1, x2, y2 = (float(value) for value in row[2:6])
            action = int(row[6])
            if action not in class_ids:
                continue
            score = float(row[7]) if len(row) == 8 else 1.0
            item = (score, action, y1, x1, y2, x2)
            if capacity < 1 or len(entries[key]) < capacity:
                heapq.heappush(entries[key], item)
            elif score > entries[key][0][0]:
                heapq.heapreplace(entries[key], item)
    return {key: sorted(heap, key=lambda entry: -entry[0]) for key, heap in entries.items()}


def _average_precision(tp: np.ndarray, num_gt: int) -> float:
    cum_tp = np.cumsum(tp.astype(int))
    cum_fp = np.cumsum(1 - tp.astype(int))
    if tp.size == 0:
        return 0.0
    precision = np.concatenate([[0.0], cum_tp / (cum_tp + cum_fp), [0.0]])
    recall = np.concatenate([[0.0], cum_tp / num_gt, [1.0]])
    for index in range(len(precision) - 2, -1, -1):
        precision[index] = max(precision[index], precision[index + 1])
    steps = np.where(recall[1:] != recall[:-1])[0] + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def evaluate_like_original(labelmap: str | Path, groundtruth: str | Path, detections: str | Path,
                           exclusions: str | Path | None = None, capacity: int = 50,
                           argsort: Callable[[np.ndarray], np.ndarray] = numpy_1_21_argsort,
                           ) -> tuple[float, dict[int, float]]:
    """mAP and per-class AP of one predict file at one capacity, computed as the original computes them.

    Args:
        labelmap, groundtruth, detections, exclusions: the evaluator's files.
        capacity: rows kept per keyframe (< 1: all).
        argsort: the ranking sort; numpy 1.21.6's order by default.

    Returns:
        ``(mAP, {class_id: AP})`` over the classes with ground truth.
    """
    class_ids = set(read_label_map(labelmap))
    excluded = set()
    if exclusions is not None:
        with open(exclusions, newline="") as handle:
            excluded = {_image_key(row[0], row[1]) for row in csv.reader(handle) if row}
    truth = {key: rows for key, rows in read_rows(groundtruth, class_ids, 0).items() if key not in excluded}
    num_gt: dict[int, int] = defaultdict(int)
    for rows in truth.values():
        for row in rows:
            num_gt[row[1]] += 1
    scores: dict[int, list[np.ndarray]] = defaultdict(list)
    flags: dict[int, list[np.ndarray]] = defaultdict(list)
    for key, rows in read_rows(detections, class_ids, capacity).items():
        if key in excluded:
            continue
        det = np.array([row[2:] for row in rows], dtype=float).reshape(-1, 4)
        det_score = np.array([row[0] for row in rows], dtype=float)
        det_class = np.array([row[1] for row in rows], dtype=int)
        valid = (det[:, 0] < det[:, 2]) & (det[:, 1] < det[:, 3])
        det, det_score, det_class = det[valid], det_score[valid], det_class[valid]
        gt_rows = truth.get(key, [])
        gt = np.array([row[2:] for row in gt_rows], dtype=float).reshape(-1, 4)
        gt_class = np.array([row[1] for row in gt_rows], dtype=int)
        for cls in np.unique(det_class):
            mine, theirs = det[det_class == cls], gt[gt_class == cls]
            tp = np.zeros(len(mine), dtype=bool)
            if len(theirs):
                iou = iou_matrix(mine, theirs)  # (y1, x1, y2, x2) boxes: the formula is symmetric
                best = np.argmax(iou, axis=1)
                taken = np.zeros(len(theirs), dtype=bool)
                for index, gt_index in enumerate(best):
                    if iou[index, gt_index] >= 0.5 and not taken[gt_index]:
                        tp[index] = taken[gt_index] = True
            scores[int(cls)].append(det_score[det_class == cls])
            flags[int(cls)].append(tp)
    per_class = {}
    for cls in sorted(num_gt):
        if not scores[cls]:
            per_class[cls] = 0.0
            continue
        order = argsort(np.concatenate(scores[cls]))[::-1]
        per_class[cls] = _average_precision(np.concatenate(flags[cls])[order], num_gt[cls])
    mean = float(np.mean(list(per_class.values()))) if per_class else 0.0
    return mean, per_class
