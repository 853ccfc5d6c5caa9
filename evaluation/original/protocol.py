"""The original evaluator's exact order of equal scores, reproduced for every capacity (``--ties original``).

It runs the original's path step by step, whatever numpy is installed: the per-keyframe heap and its
capacity cut, the stable per-keyframe sort, the matching, numpy 1.21.6's introsort per class
(``evaluation.original.numpy_argsort``) and VOC AP (docs/protocol.md, section 2; why the order of equal
scores decides the mAP: section 1). The kernels are compiled with numba. A capacity sweep runs the whole
path once per K (in parallel over K), so its curve is by construction the curve of single runs; it is
fast because nothing is parsed or allocated per K beyond the kept rows, and keyframes with at most K
rows reuse their precomputed order. The tie band is a property of the file, not of this protocol
(``evaluation.tie_band``, the same for both protocols).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numba
import numpy as np

from evaluation.boxes import valid_box_mask
from evaluation.frame_map import FilteredRows, filter_rows
from evaluation.original.numpy_argsort import numpy_1_21_argsort
from formats.eval_csv import MISSING_PERSON_ID, GroundTruth, Predictions

logger = logging.getLogger(__name__)

IOU_THRESHOLD = 0.5


# ----------------------------------------------------------------------------------------------
# Python's heapq on row ids, tuples compared through a dense rank.
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True, inline="always")
def _sift_towards_root(heap: np.ndarray, rank: np.ndarray, start: int, position: int) -> None:
    moving = heap[position]
    while position > start:
        parent_position = (position - 1) >> 1
        parent = heap[parent_position]
        if rank[moving] < rank[parent]:
            heap[position] = parent
            position = parent_position
            continue
        break
    heap[position] = moving


@numba.njit(cache=True, inline="always")
def _sift_towards_leaves(heap: np.ndarray, rank: np.ndarray, size: int, position: int) -> None:
    # heapq's variant: walk the smaller child down to a leaf, then bubble the item back up.
    start = position
    moving = heap[position]
    child = 2 * position + 1
    while child < size:
        right = child + 1
        if right < size and not rank[heap[child]] < rank[heap[right]]:
            child = right
        heap[position] = heap[child]
        position = child
        child = 2 * position + 1
    heap[position] = moving
    _sift_towards_root(heap, rank, start, position)


@numba.njit(cache=True)
def _keyframe_order(first: int, last: int, capacity: int, score: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """Rows ``first..last-1`` (one keyframe, file order) kept at ``capacity``, in the original's order."""
    count = last - first
    limit = count if capacity < 1 else min(capacity, count)
    heap = np.empty(limit, dtype=np.int64)
    size = 0
    for row in range(first, last):
        if capacity < 1 or size < capacity:
            heap[size] = row
            _sift_towards_root(heap, rank, 0, size)
            size += 1
        elif score[row] > score[heap[0]]:
            heap[0] = row
            _sift_towards_leaves(heap, rank, size, 0)
    negated = np.empty(size)
    for slot in range(size):
        negated[slot] = -score[heap[slot]]
    return heap[np.argsort(negated, kind="mergesort")]


@numba.njit(cache=True)
def _full_orders(key_start: np.ndarray, score: np.ndarray, rank: np.ndarray) -> np.ndarray:
    """The unlimited-capacity order of every keyframe, concatenated (same layout as the rows)."""
    out = np.empty(len(score), dtype=np.int64)
    for key in range(len(key_start) - 1):
        out[key_start[key]:key_start[key + 1]] = _keyframe_order(key_start[key], key_start[key + 1], 0, score, rank)
    return out


# ----------------------------------------------------------------------------------------------
# One capacity: cut, match, rank, AP.
# ----------------------------------------------------------------------------------------------


@numba.njit(cache=True)
def _voc_ap(flags: np.ndarray, num_gt: int) -> float:
    """VOC all-point AP of true-positive flags already in ranking order (the official formula)."""
    count = len(flags)
    if count == 0:
        return 0.0
    precision = np.empty(count + 2)
    recall = np.empty(count + 2)
    precision[0], recall[0] = 0.0, 0.0
    true_pos = 0
    for index in range(count):
        true_pos += flags[index]
        precision[index + 1] = true_pos / (index + 1)
        recall[index + 1] = true_pos / num_gt
    precision[count + 1], recall[count + 1] = 0.0, 1.0
    for index in range(count, -1, -1):
        precision[index] = max(precision[index], precision[index + 1])
    total = 0.0
    for index in range(1, count + 2):
        if recall[index] != recall[index - 1]:
            total += (recall[index] - recall[index - 1]) * precision[index]
    return total


@numba.njit(cache=True)
def _iou(det: np.ndarray, gt: np.ndarray) -> float:
    """IoU of two (x1, y1, x2, y2) boxes with the official arithmetic (heights first, no +1)."""
    height = max(0.0, min(det[3], gt[3]) - max(det[1], gt[1]))
    width = max(0.0, min(det[2], gt[2]) - max(det[0], gt[0]))
    intersection = height * width
    union = (det[3] - det[1]) * (det[2] - det[0]) + (gt[3] - gt[1]) * (gt[2] - gt[0]) - intersection
    return intersection / union if union > 0 else 0.0


@numba.njit(cache=True)
def _evaluate_capacity(capacity: int, key_start: np.ndarray, full_order: np.ndarray,
                       rank: np.ndarray, score: np.ndarray, det_class: np.ndarray, det_boxes: np.ndarray,
                       det_valid: np.ndarray, gt_start: np.ndarray, gt_boxes: np.ndarray, class_start: np.ndarray,
                       num_gt: np.ndarray, out_ap: np.ndarray) -> tuple[int, int]:
    """Fill ``out_ap[C]`` with the per-class AP in the original's order; return (kept rows, true positives)."""
    num_classes = len(num_gt)
    ranked_score = np.empty(len(score))
    ranked_tp = np.zeros(len(score), dtype=np.bool_)
    cursor = class_start[:-1].copy()
    taken = np.zeros(len(gt_boxes), dtype=np.bool_)
    kept = 0
    true_positives = 0
    for key in range(len(key_start) - 1):
        first, last = key_start[key], key_start[key + 1]
        if capacity < 1 or last - first <= capacity:
            rows = full_order[first:last]
        else:
            rows = _keyframe_order(first, last, capacity, score, rank)
        kept += len(rows)
        for row in rows:
            if not det_valid[row]:
                continue
            cls = det_class[row]
            group = key * num_classes + cls
            best, best_iou = -1, -1.0
            for gt in range(gt_start[group], gt_start[group + 1]):
                overlap = _iou(det_boxes[row], gt_boxes[gt])
                if overlap > best_iou:
                    best, best_iou = gt, overlap
            hit = best >= 0 and best_iou >= IOU_THRESHOLD and not taken[best]
            if hit:
                taken[best] = True
                true_positives += 1
            ranked_score[cursor[cls]] = score[row]
            ranked_tp[cursor[cls]] = hit
            cursor[cls] += 1
    for cls in range(num_classes):
        if num_gt[cls] == 0:
            continue
        values = ranked_score[class_start[cls]:cursor[cls]]
        flags = ranked_tp[class_start[cls]:cursor[cls]]
        order = numpy_1_21_argsort(values)[::-1]
        out_ap[cls] = _voc_ap(flags[order], num_gt[cls])
    return kept, true_positives


@numba.njit(cache=True, parallel=True)
def _evaluate_capacities(capacities: np.ndarray, key_start: np.ndarray, full_order: np.ndarray, rank: np.ndarray, score: np.ndarray, det_class: np.ndarray,
                         det_boxes: np.ndarray, det_valid: np.ndarray, gt_start: np.ndarray, gt_boxes: np.ndarray,
                         class_start: np.ndarray, num_gt: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    out = np.full((len(capacities), len(num_gt)), np.nan)
    kept = np.zeros(len(capacities), dtype=np.int64)
    true_positives = np.zeros(len(capacities), dtype=np.int64)
    for index in numba.prange(len(capacities)):
        kept[index], true_positives[index] = _evaluate_capacity(
            capacities[index], key_start, full_order, rank, score, det_class, det_boxes, det_valid,
            gt_start, gt_boxes, class_start, num_gt, out[index])
    return out, kept, true_positives


# ----------------------------------------------------------------------------------------------
# Preparation (numpy) and the public entry points.
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class OriginalData:
    """Detections and ground truth laid out for the original's per-capacity path.

    Detection arrays are grouped by keyframe (keyframes in first-appearance order, rows in file order);
    ``full_order`` is every keyframe's order at unlimited capacity.

    Attributes:
        class_ids: ``[C]`` label-map ids, ascending.
        num_gt: ``[C]`` ground-truth rows per class (exclusions applied).
        key_start: ``[F + 1]`` row offsets of the F detection keyframes.
        rank: ``[D]`` dense rank of each row's ``(score, class id, y1, x1, y2, x2)`` tuple.
        score, det_class, det_boxes, det_valid: per row (boxes x1, y1, x2, y2).
        full_order: ``[D]`` row ids, per keyframe in the original's order.
        class_start: ``[C + 1]`` offsets of each class's slice in the ranking buffers.
        gt_start: ``[F * C + 1]`` offsets of each (keyframe, class) ground-truth group.
        gt_boxes: ``[G, 4]`` in the original's per-keyframe order.
        counts: row and keyframe counts for reports (``frame_map.filter_rows``).
    """

    class_ids: np.ndarray
    num_gt: np.ndarray
    key_start: np.ndarray
    rank: np.ndarray
    score: np.ndarray
    det_class: np.ndarray
    det_boxes: np.ndarray
    det_valid: np.ndarray
    full_order: np.ndarray
    class_start: np.ndarray
    gt_start: np.ndarray
    gt_boxes: np.ndarray
    counts: dict


@dataclass(frozen=True, eq=False)
class OriginalRun:
    """AP at one or more capacities under the original's order.

    Attributes:
        capacities: ``[K]`` int64.
        average_precision: ``[K, C]`` per-class AP, NaN for classes without ground truth.
        mean_ap: ``[K]`` mAP (the original's ``nanmean`` over ids 1..max id).
        num_kept: ``[K]`` rows kept by the cut.
        num_true_positives: ``[K]``.
    """

    capacities: np.ndarray
    average_precision: np.ndarray
    mean_ap: np.ndarray
    num_kept: np.ndarray
    num_true_positives: np.ndarray


def _dense_tuple_rank(columns: list[np.ndarray]) -> np.ndarray:
    """Dense rank of the rows' tuples ``(columns[0], columns[1], ...)`` under Python's tuple order."""
    if len(columns[0]) == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.lexsort(columns[::-1])
    differs = np.zeros(len(order), dtype=bool)
    for column in columns:
        sorted_column = column[order]
        differs[1:] |= sorted_column[1:] != sorted_column[:-1]
    rank = np.empty(len(order), dtype=np.int64)
    rank[order] = np.cumsum(differs)
    return rank


def _heap_columns(score: np.ndarray, class_id: np.ndarray, boxes: np.ndarray) -> list[np.ndarray]:
    """The original's heap tuple ``(score, class id, y1, x1, y2, x2)`` as columns."""
    return [score, class_id.astype(np.float64), boxes[:, 1], boxes[:, 0], boxes[:, 3], boxes[:, 2]]


def _group_rows(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Renumber ``keys`` by first appearance; return (row order grouped by key, key offsets, new key per row)."""
    if len(keys) == 0:
        return np.zeros(0, np.int64), np.zeros(1, np.int64), np.zeros(0, np.int64)
    unique, first = np.unique(keys, return_index=True)
    position = np.empty(len(unique), dtype=np.int64)
    position[np.argsort(first, kind="stable")] = np.arange(len(unique))
    renumbered = position[np.searchsorted(unique, keys)]
    order = np.argsort(renumbered, kind="stable")
    key_start = np.r_[0, np.cumsum(np.bincount(renumbered, minlength=len(unique)))].astype(np.int64)
    return order, key_start, renumbered


def _ground_truth_sequence(rows: FilteredRows, gt: GroundTruth) -> np.ndarray:
    """Positions in ``rows.gt_kept`` of the evaluated ground-truth rows in the original's order.

    Per keyframe, the original's heap with the csv's 8th column as the score (the person id in our files,
    1.0 where a 7-column file has none); keyframes in first-appearance order.
    """
    kept = rows.gt_kept
    gt_score = np.where(gt.person_id[kept] == MISSING_PERSON_ID, 1.0, gt.person_id[kept].astype(np.float64))
    gt_boxes = np.asarray(gt.boxes[kept], dtype=np.float64)
    gt_order, gt_key_start, _ = _group_rows(rows.gt_keys[kept])
    gt_rank = _dense_tuple_rank(_heap_columns(gt_score[gt_order], gt.class_id[kept][gt_order], gt_boxes[gt_order]))
    return gt_order[_full_orders(gt_key_start, gt_score[gt_order], gt_rank)]


def ground_truth_priority(rows: FilteredRows, gt: GroundTruth) -> np.ndarray:
    """Where each ground-truth row comes in the original's order (which box is first on an exact IoU tie).

    Args:
        rows: the filtered rows (``frame_map.filter_rows``) of ``gt`` and the predictions.
        gt: the ground truth.

    Returns:
        ``[len(gt)]`` int64: the position of each evaluated row in the original's order, -1 for the others.
    """
    priority = np.full(len(gt), -1, dtype=np.int64)
    priority[rows.gt_kept[_ground_truth_sequence(rows, gt)]] = np.arange(len(rows.gt_kept))
    return priority


def prepare_original(label_map: dict[int, str], gt: GroundTruth, preds: Predictions,
                     excluded: set[tuple[str, int]] | None = None) -> OriginalData:
    """Filter by label map and exclusions and lay the rows out for the original's path.

    Excluded keyframes are dropped whole, which leaves the other keyframes' cuts and their
    first-appearance order as the original's (it skips them after the cut).

    Args:
        label_map: ``{class_id: name}``.
        gt: ground truth.
        preds: detections (predict.csv rows).
        excluded: keyframes ``(video_id, time)`` dropped from both.

    Returns:
        The prepared data.

    Raises:
        ValueError: empty label map, or a non-finite score or box.
    """
    rows = filter_rows(label_map, gt, preds, excluded)
    class_ids = rows.class_ids
    num_classes = len(class_ids)

    det_order, key_start, _ = _group_rows(rows.det_keys[rows.det_kept])
    source = rows.det_kept[det_order]
    score = preds.score[source].astype(np.float64)
    det_class_id = preds.class_id[source]
    det_boxes = np.ascontiguousarray(preds.boxes[source], dtype=np.float64)
    rank = _dense_tuple_rank(_heap_columns(score, det_class_id, det_boxes))
    det_class = np.searchsorted(class_ids, det_class_id).astype(np.int64)
    class_start = np.r_[0, np.cumsum(np.bincount(det_class, minlength=num_classes))].astype(np.int64)

    kept = rows.gt_kept
    gt_class_id = gt.class_id[kept]
    gt_boxes_all = np.asarray(gt.boxes[kept], dtype=np.float64)
    sequence = _ground_truth_sequence(rows, gt)
    # Only ground truth at keyframes with detections can match; group it by (detection keyframe, class).
    det_key_codes = rows.det_keys[source][key_start[:-1]]
    position_of_code = {int(code): index for index, code in enumerate(det_key_codes)}
    gt_key = np.array([position_of_code.get(int(code), -1) for code in rows.gt_keys[kept][sequence]], dtype=np.int64)
    usable = np.flatnonzero(gt_key >= 0)
    group = gt_key[usable] * num_classes + np.searchsorted(class_ids, gt_class_id[sequence][usable])
    grouped = usable[np.argsort(group, kind="stable")]
    num_groups = (len(key_start) - 1) * num_classes
    gt_start = np.r_[0, np.cumsum(np.bincount(group, minlength=num_groups))].astype(np.int64)

    return OriginalData(class_ids=class_ids,
                        num_gt=np.bincount(np.searchsorted(class_ids, gt_class_id), minlength=num_classes).astype(np.int64),
                        key_start=key_start, rank=rank, score=score, det_class=det_class, det_boxes=det_boxes,
                        det_valid=valid_box_mask(det_boxes), full_order=_full_orders(key_start, score, rank),
                        class_start=class_start, gt_start=gt_start,
                        gt_boxes=np.ascontiguousarray(gt_boxes_all[sequence][grouped]), counts=dict(rows.counts))


def _original_mean(class_ids: np.ndarray, per_class: np.ndarray) -> float:
    """The original's ``np.nanmean`` over ids 1..max id (NaN-free classes are those with ground truth)."""
    if np.isnan(per_class).all():
        return 0.0
    if class_ids.min() < 1:
        return float(np.nanmean(per_class))
    slots = np.full(int(class_ids.max()), np.nan)
    slots[class_ids - 1] = per_class
    return float(np.nanmean(slots))


def evaluate_original(data: OriginalData, capacities: np.ndarray | list[int]) -> OriginalRun:
    """Run the original's path at each capacity (``< 1`` = unlimited), in parallel over capacities.

    Args:
        data: prepared data (``prepare_original``).
        capacities: the K values.

    Returns:
        Per-class AP, mAP, kept rows and true positives at each K.
    """
    capacities = np.asarray(capacities, dtype=np.int64)
    per_class, kept, true_positives = _evaluate_capacities(
        capacities, data.key_start, data.full_order, data.rank, data.score, data.det_class,
        data.det_boxes, data.det_valid, data.gt_start, data.gt_boxes, data.class_start, data.num_gt)
    # Classes that have ground truth but no kept detection score 0 (the kernel leaves NaN only without GT).
    has_gt = data.num_gt > 0
    per_class[:, ~has_gt] = np.nan
    mean = np.array([_original_mean(data.class_ids, per_class[k]) for k in range(len(capacities))], dtype=np.float64)
    return OriginalRun(capacities=capacities, average_precision=per_class, mean_ap=mean, num_kept=kept,
                       num_true_positives=true_positives)
