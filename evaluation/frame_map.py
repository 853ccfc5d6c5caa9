"""AVA frame-mAP at one capacity under the ``stable`` tie rule: the official PASCAL VOC protocol (IoU 0.5).

The default protocol, ``original`` (``evaluation.original.protocol``), reproduces the original's exact
order of equal scores; this module is the version-independent alternative and the shared row filter.

Semantics (those of the official AVA evaluator as the original project runs it):

- a keyframe is ``(video_id, int(float(timestamp)))``;
- ground-truth and detection rows whose class is not in the label map are dropped first, then every
  row of an excluded keyframe;
- capacity K: per keyframe only the K highest-scoring detection rows (over all classes) are kept;
  ``K < 1`` keeps all;
- detection boxes with ``x1 >= x2`` or ``y1 >= y2`` are dropped after the cut (they use a slot);
- per keyframe and class, detections in score order take their highest-IoU ground-truth box of that
  class (the first in file order on exact ties): a true positive if the IoU is >= 0.5 and that box
  is not taken yet, else a false positive (no fall-back to another box); detections at keyframes
  without ground truth of their class are false positives;
- per class, VOC all-point interpolated AP over all kept detections in score order; mAP is the mean
  over the classes that have ground truth.

Tie rule (scores have 3 decimals, so ties are common; the official result then depends on file order
and an unstable sort): equal scores are ordered by their row in the predict file, earlier first. The
same order "score descending, then file row ascending" is used for the capacity cut, for the matching
order and for the AP ordering, so that at every capacity the kept rows of a (keyframe, class) are a
prefix of that group's list, which is what makes the one-pass capacity sweep exact.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from evaluation.boxes import paired_iou, valid_box_mask
from formats.eval_csv import GroundTruth, Predictions

logger = logging.getLogger(__name__)

IOU_THRESHOLD = 0.5


@dataclass(frozen=True, eq=False)
class PreparedData:
    """Ground truth and detections after the label-map filter and the exclusions, indexed for matching.

    Attributes:
        class_ids: ``[C]`` label-map ids, ascending; a class index is a position in this array.
        num_gt: ``[C]`` int64 ground-truth boxes per class.
        gt_group: ``[G]`` int64 ``keyframe * C + class index``, ascending (file order within a group).
        gt_boxes: ``[G, 4]`` ground-truth boxes in ``gt_group`` order.
        gt_row: ``[G]`` int64 0-based row of each box in the ground-truth file.
        det_key: ``[D]`` int64 keyframe ids; detections are stored in tie-rule order within keyframes.
        det_class: ``[D]`` int64 class indices.
        det_score: ``[D]`` float64 scores.
        det_boxes: ``[D, 4]`` boxes (x1, y1, x2, y2).
        det_row: ``[D]`` int64 0-based row in the predict file (the tie breaker).
        det_tie_rank: ``[D]`` int64 position in the global order "score descending, then row
            ascending" (0 first); sorting by it applies the tie rule with one integer key.
        det_rank: ``[D]`` int64 rank within the keyframe under the tie rule (0 = highest score).
        det_valid: ``[D]`` bool, False for inverted or empty boxes.
        counts: row and keyframe counts for reports.
    """

    class_ids: np.ndarray
    num_gt: np.ndarray
    gt_group: np.ndarray
    gt_boxes: np.ndarray
    gt_row: np.ndarray
    det_key: np.ndarray
    det_class: np.ndarray
    det_score: np.ndarray
    det_boxes: np.ndarray
    det_row: np.ndarray
    det_tie_rank: np.ndarray
    det_rank: np.ndarray
    det_valid: np.ndarray
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_ids)


@dataclass(frozen=True, eq=False)
class FrameMapResult:
    """AP at one capacity.

    Attributes:
        average_precision: ``[C]`` per-class AP, NaN for classes without ground truth.
        mean_ap: mean over classes with ground truth (0.0 when no class has any).
        num_kept: detection rows kept by the cut (including invalid boxes).
        num_true_positives: kept detections matched to a ground-truth box.
    """

    average_precision: np.ndarray
    mean_ap: float
    num_kept: int
    num_true_positives: int


def score_order(group: np.ndarray, tie_rank: np.ndarray) -> np.ndarray:
    """Indices sorting by ``group`` ascending, then by the tie rule (score descending, row ascending).

    Args:
        group: ``[M]`` non-negative int64 group ids (keyframe, class, ...).
        tie_rank: ``[M]`` distinct non-negative int64 positions in the global tie-rule order.
    """
    if len(group) == 0:
        return np.zeros(0, dtype=np.int64)
    # One int64 key (group major) sorts faster than a multi-key lexsort; keys are distinct.
    return np.argsort(group * (int(tie_rank.max()) + 1) + tie_rank)


def _keyframe_ids(gt: GroundTruth, preds: Predictions,
                  excluded: set[tuple[str, int]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Integer keyframe ids shared by ground truth, detections and exclusions."""
    excluded_list = sorted(excluded)
    videos = np.array(gt.video + preds.video + [video for video, _ in excluded_list], dtype=object)
    times = np.concatenate([gt.time, preds.time, np.array([t for _, t in excluded_list], dtype=np.int64)])
    video_codes, _ = pd.factorize(videos)
    if len(times):
        times = times - times.min()
    span = int(times.max()) + 1 if len(times) else 1
    # One int64 per (video, time); factorize keeps it hash-based (no sort of a million strings).
    keys, _ = pd.factorize(video_codes.astype(np.int64) * span + times)
    keys = keys.astype(np.int64)
    n_gt, n_pred = len(gt), len(preds)
    return keys[:n_gt], keys[n_gt:n_gt + n_pred], keys[n_gt + n_pred:]


@dataclass(frozen=True, eq=False)
class FilteredRows:
    """Rows that survive the label-map filter and the exclusions, with shared integer keyframe ids.

    Attributes:
        class_ids: ``[C]`` label-map ids, ascending.
        gt_keys: ``[N_gt]`` int64 keyframe id of every ground-truth row (all rows, file order).
        det_keys: ``[N_det]`` int64 keyframe id of every detection row.
        gt_kept: int64 indices of the ground-truth rows evaluated (in the map, not excluded), ascending.
        det_kept: int64 indices of the detection rows evaluated, ascending.
        counts: row and keyframe counts for reports.
    """

    class_ids: np.ndarray
    gt_keys: np.ndarray
    det_keys: np.ndarray
    gt_kept: np.ndarray
    det_kept: np.ndarray
    counts: dict[str, int]


def filter_rows(label_map: dict[int, str], gt: GroundTruth, preds: Predictions,
                excluded: set[tuple[str, int]] | None = None) -> FilteredRows:
    """Apply the label map and the exclusions (the first step of every tie protocol).

    Raises:
        ValueError: empty label map, or a non-finite score or box in ``preds``.
    """
    if not label_map:
        raise ValueError("the label map has no classes")
    bad = ~np.isfinite(preds.score) | ~np.isfinite(preds.boxes).all(axis=1)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"detection row {row + 1} ({preds.video[row]}, {preds.time[row]}) has a non-finite "
                         "score or box coordinate")
    class_ids = np.array(sorted(label_map), dtype=np.int64)
    gt_keys, det_keys, excluded_keys = _keyframe_ids(gt, preds, excluded or set())
    gt_in_map = np.isin(gt.class_id, class_ids)
    det_in_map = np.isin(preds.class_id, class_ids)
    gt_excluded = np.isin(gt_keys, excluded_keys)
    det_excluded = np.isin(det_keys, excluded_keys)
    gt_kept = np.flatnonzero(gt_in_map & ~gt_excluded)
    det_kept = np.flatnonzero(det_in_map & ~det_excluded)
    # Keyframe ids are dense (factorized), so a bincount finds each keyframe's rows without a sort.
    rows_per_key = np.bincount(det_keys[det_kept]) if len(det_kept) else np.zeros(0, dtype=np.int64)
    det_key_values = np.flatnonzero(rows_per_key)
    gt_class = np.searchsorted(class_ids, gt.class_id[gt_kept])
    counts = {
        "gt_rows": len(gt),
        "gt_rows_outside_label_map": int((~gt_in_map).sum()),
        "gt_rows_excluded": int((gt_in_map & gt_excluded).sum()),
        "gt_rows_evaluated": len(gt_kept),
        "gt_keyframes": int(len(np.unique(gt_keys[gt_kept]))),
        "classes_with_gt": int((np.bincount(gt_class, minlength=len(class_ids)) > 0).sum()),
        "detection_rows": len(preds),
        "detection_rows_outside_label_map": int((~det_in_map).sum()),
        "detection_rows_excluded": int((det_in_map & det_excluded).sum()),
        "detection_rows_evaluated": len(det_kept),
        "detection_keyframes": len(det_key_values),
        "detection_keyframes_without_gt": int((~np.isin(det_key_values, gt_keys[gt_kept])).sum()),
        "max_rows_per_keyframe": int(rows_per_key.max()) if len(rows_per_key) else 0,
        "excluded_keyframes": int(len(np.unique(excluded_keys))),
    }
    return FilteredRows(class_ids=class_ids, gt_keys=gt_keys, det_keys=det_keys, gt_kept=gt_kept,
                        det_kept=det_kept, counts=counts)


def prepare(label_map: dict[int, str], gt: GroundTruth, preds: Predictions,
            excluded: set[tuple[str, int]] | None = None) -> PreparedData:
    """Filter by label map and exclusions, rank detections per keyframe and index ground truth.

    Args:
        label_map: ``{class_id: name}``; only these classes are evaluated.
        gt: ground truth (class ids as in the label map).
        preds: detections, one row per (keyframe, box, class).
        excluded: ``{(video_id, time)}`` keyframes dropped from both.

    Returns:
        The PreparedData used by ``evaluate_at_capacity`` and the capacity sweep.

    Raises:
        ValueError: empty label map, or a non-finite score or box in ``preds``.
    """
    rows = filter_rows(label_map, gt, preds, excluded)
    class_ids, gt_keep, det_keep = rows.class_ids, rows.gt_kept, rows.det_kept
    num_classes = len(class_ids)
    gt_class = np.searchsorted(class_ids, gt.class_id[gt_keep])
    gt_group_unsorted = rows.gt_keys[gt_keep] * num_classes + gt_class
    gt_order = np.argsort(gt_group_unsorted, kind="stable")

    tie_rank = np.empty(len(det_keep), dtype=np.int64)
    tie_rank[np.lexsort((det_keep, -preds.score[det_keep]))] = np.arange(len(det_keep))
    within_keyframe = score_order(rows.det_keys[det_keep], tie_rank)
    det_order = det_keep[within_keyframe]
    det_key = rows.det_keys[det_order]
    starts = np.flatnonzero(np.r_[True, det_key[1:] != det_key[:-1]]) if len(det_key) else np.zeros(0, np.int64)
    run_lengths = np.diff(np.r_[starts, len(det_key)])
    det_rank = np.arange(len(det_key)) - np.repeat(starts, run_lengths)
    det_boxes = preds.boxes[det_order]
    return PreparedData(
        class_ids=class_ids,
        num_gt=np.bincount(gt_class, minlength=num_classes).astype(np.int64),
        gt_group=gt_group_unsorted[gt_order],
        gt_boxes=gt.boxes[gt_keep][gt_order],
        gt_row=gt_keep[gt_order].astype(np.int64),
        det_key=det_key,
        det_class=np.searchsorted(class_ids, preds.class_id[det_order]).astype(np.int64),
        det_score=preds.score[det_order],
        det_boxes=det_boxes,
        det_row=det_order.astype(np.int64),
        det_tie_rank=tie_rank[within_keyframe],
        det_rank=det_rank.astype(np.int64),
        det_valid=valid_box_mask(det_boxes),
        counts=dict(rows.counts),
    )


def best_ground_truth(data: PreparedData, index: np.ndarray,
                      gt_priority: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The ground-truth box each detection takes: the highest IoU in its (keyframe, class) group.

    Args:
        data: prepared data.
        index: ``[M]`` detection indices (into ``data.det_*``).
        gt_priority: ``[G]`` int64 order of the ground-truth boxes for exact IoU ties (lowest first); None
            for their order in ``data`` (file order within a group, the ``stable`` rule).

    Returns:
        ``(best [M] int64, best_iou [M] float64, at_best [M] int64)``: the chosen box (an index into
        ``data.gt_*``; the first in priority order among boxes of exactly equal IoU), its IoU and how many
        boxes share that IoU; ``best = -1``, IoU 0 and 0 boxes where the group has no ground truth.
    """
    group = data.det_key[index] * data.num_classes + data.det_class[index]
    gt_start = np.searchsorted(data.gt_group, group, side="left")
    gt_count = np.searchsorted(data.gt_group, group, side="right") - gt_start
    best = np.full(len(index), -1, dtype=np.int64)
    best_iou = np.zeros(len(index))
    tied = np.zeros(len(index), dtype=np.int64)
    with_gt = np.flatnonzero(gt_count > 0)
    if len(with_gt):
        counts = gt_count[with_gt]
        first_pair = np.cumsum(counts) - counts
        pair_det = np.repeat(np.arange(len(with_gt)), counts)
        pair_gt = np.repeat(gt_start[with_gt] - first_pair, counts) + np.arange(int(counts.sum()))
        iou = paired_iou(data.det_boxes[index[with_gt[pair_det]]], data.gt_boxes[pair_gt])
        top = np.maximum.reduceat(iou, first_pair)
        at_best = np.flatnonzero(iou == np.repeat(top, counts))
        if gt_priority is not None:
            # Among the boxes at the best IoU, the one of lowest priority comes first.
            at_best = at_best[np.lexsort((gt_priority[pair_gt[at_best]], pair_det[at_best]))]
        # The first pair reaching the maximum (in group order or priority order) is the box taken.
        first_at_best = at_best[np.r_[True, pair_det[at_best[1:]] != pair_det[at_best[:-1]]]]
        best[with_gt] = pair_gt[first_at_best]
        best_iou[with_gt] = top
        tied[with_gt] = np.bincount(pair_det[at_best], minlength=len(with_gt))
    return best, best_iou, tied


def match_detections(data: PreparedData, index: np.ndarray) -> np.ndarray:
    """True/false-positive flag of each selected detection under greedy per-(keyframe, class) matching.

    Args:
        data: prepared data.
        index: ``[M]`` detection indices (into ``data.det_*``) to evaluate together (valid boxes only).

    Returns:
        ``[M]`` bool, aligned with ``index``.
    """
    group = data.det_key[index] * data.num_classes + data.det_class[index]
    order = score_order(group, data.det_tie_rank[index])
    best, best_iou, _ = best_ground_truth(data, index[order])
    tp_sorted = np.zeros(len(index), dtype=bool)
    candidate = np.flatnonzero((best >= 0) & (best_iou >= IOU_THRESHOLD))
    # A box is taken by the first candidate (in score order) that chose it; later ones are FPs.
    _, first_claim = np.unique(best[candidate], return_index=True)
    tp_sorted[candidate[first_claim]] = True
    tp = np.empty(len(index), dtype=bool)
    tp[order] = tp_sorted
    return tp


def precision_recall(tp_sorted: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative precision and recall of detections already in score order.

    Args:
        tp_sorted: ``[M]`` bool true-positive flags in descending score order.
        num_gt: ground-truth boxes of the class (> 0).

    Returns:
        ``(precision [M], recall [M])`` float64.
    """
    cum_tp = np.cumsum(tp_sorted.astype(np.int64))
    cum_fp = np.cumsum(1 - tp_sorted.astype(np.int64))
    return cum_tp.astype(np.float64) / (cum_tp + cum_fp), cum_tp.astype(np.float64) / num_gt


def average_precision(precision: np.ndarray, recall: np.ndarray) -> float:
    """VOC all-point interpolated AP (VOCdevkit; the official AVA formula, term by term).

    Args:
        precision: ``[M]`` precision after each detection, in score order.
        recall: ``[M]`` non-decreasing recall after each detection.

    Returns:
        Area under the precision envelope; 0.0 for no detections.
    """
    if precision.size == 0:
        return 0.0
    recall = np.concatenate([[0.0], recall, [1.0]])
    precision = np.concatenate([[0.0], precision, [0.0]])
    precision = np.maximum.accumulate(precision[::-1])[::-1]
    steps = np.flatnonzero(recall[1:] != recall[:-1]) + 1
    return float(np.sum((recall[steps] - recall[steps - 1]) * precision[steps]))


def mean_average_precision(per_class: np.ndarray) -> float:
    """Mean over the classes with ground truth (non-NaN entries); 0.0 when there is none."""
    present = per_class[~np.isnan(per_class)]
    return float(np.mean(present)) if present.size else 0.0


def ranking_order(data: PreparedData, index: np.ndarray) -> np.ndarray:
    """Order of the detections ``index`` by class, then by descending score (tie rule: earlier row first).

    Returns:
        ``[M]`` positions into ``index``.
    """
    return score_order(data.det_class[index], data.det_tie_rank[index])


def class_average_precisions(data: PreparedData, index: np.ndarray, tp: np.ndarray) -> np.ndarray:
    """Per-class AP of the detections ``index`` with flags ``tp``, ranked by ``ranking_order``.

    Returns:
        ``[C]`` float64; NaN where the class has no ground truth, 0.0 where it has no detection.
    """
    classes = data.det_class[index]
    order = ranking_order(data, index)
    sorted_tp = tp[order]
    bounds = np.searchsorted(classes[order], np.arange(data.num_classes + 1))
    result = np.full(data.num_classes, np.nan)
    for class_index in np.flatnonzero(data.num_gt > 0):
        flags = sorted_tp[bounds[class_index]:bounds[class_index + 1]]
        result[class_index] = average_precision(*precision_recall(flags, int(data.num_gt[class_index])))
    return result


def evaluate_at_capacity(data: PreparedData, capacity: int) -> FrameMapResult:
    """Frame-mAP keeping the ``capacity`` highest-scoring rows per keyframe (all if ``capacity < 1``).

    The tie band (every order of equal scores) is ``evaluation.tie_band``'s, not this rule's.

    Args:
        data: prepared data.
        capacity: rows kept per keyframe over all classes (tie rule in the module docstring).

    Returns:
        Per-class AP, mAP and counts.
    """
    kept = data.det_rank < capacity if capacity >= 1 else np.ones(len(data.det_rank), dtype=bool)
    index = np.flatnonzero(kept & data.det_valid)
    tp = match_detections(data, index)
    per_class = class_average_precisions(data, index, tp)
    return FrameMapResult(average_precision=per_class, mean_ap=mean_average_precision(per_class),
                          num_kept=int(kept.sum()), num_true_positives=int(tp.sum()))
