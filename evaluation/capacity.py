"""One-pass capacity sweep: frame-mAP for every capacity K in MIN..MAX from one matching pass.

Why it is exact: under the tie rule of ``evaluation.frame_map`` a detection is kept at capacity K iff
its rank in its keyframe is < K, and the rows of one (keyframe, class) kept at K are a prefix of that
group's score-ordered list. Greedy matching of a prefix is the prefix of the greedy matching of the
whole list, so each detection's true/false-positive flag is the same at every K; only membership
changes. Each detection therefore carries ``(class, position in its class's score order, tp,
min_k = rank + 1)`` and, per class, AP(K) is the AP over the detections with ``min_k <= K``.

How it is fast: AP only needs the precision at the kept true positives, ``T(j) / C(j)`` with ``T``
the kept TPs and ``C`` the kept detections up to position j, and its envelope (the running maximum
from the low-score end). Per class, the capacities where anything changes are the distinct
``min_k`` values in the range ("states"). One walk over the class's true positives from the lowest
score up carries ``T`` and ``C`` for all states as vectors, updating them only by the detections that
join late, so the work is ``O(true positives x states)`` vector arithmetic per class instead of one
full evaluation per K, and memory stays ``O(states)``.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from evaluation.frame_map import PreparedData, match_detections, mean_average_precision, ranking_order

logger = logging.getLogger(__name__)


@dataclass(frozen=True, eq=False)
class SweepCurves:
    """mAP and per-class AP for every capacity of a sweep.

    Attributes:
        capacities: ``[K]`` int64, MIN..MAX.
        mean_ap: ``[K]`` float64 mAP (mean over classes with ground truth; 0.0 when none).
        average_precision: ``[K, C]`` float64 per-class AP, NaN for classes without ground truth.
    """

    capacities: np.ndarray
    mean_ap: np.ndarray
    average_precision: np.ndarray

    @property
    def best_index(self) -> int:
        """Index of the highest mAP (``np.argmax``: the smallest capacity on ties)."""
        return int(np.argmax(self.mean_ap))


def class_sweep(tp: np.ndarray, min_k: np.ndarray, num_gt: int, k_min: int, k_max: int) -> np.ndarray:
    """AP of one class for every capacity in ``k_min..k_max``.

    One pass over the class's true positives from the lowest score up, carrying for every state the
    number of kept detections and kept true positives ranked after the current one, so that the
    precision envelope (a running maximum) and the AP sum are updated with vector operations over
    the states only.

    Args:
        tp: ``[M]`` bool flags of the class's detections in score order (tie rule), valid boxes only.
        min_k: ``[M]`` int64 smallest capacity keeping each detection (rank in its keyframe + 1).
        num_gt: ground-truth boxes of the class (> 0).
        k_min: first capacity (>= 1).
        k_max: last capacity (>= k_min).

    Returns:
        ``[k_max - k_min + 1]`` float64 AP.
    """
    capacities = np.arange(k_min, k_max + 1)
    in_range = min_k <= k_max
    tp_position = np.flatnonzero(tp & in_range)
    if len(tp_position) == 0:
        return np.zeros(len(capacities))
    thresholds = np.r_[k_min, np.unique(min_k[(min_k > k_min) & in_range])]
    num_states = len(thresholds)
    # State s holds for K in [thresholds[s], thresholds[s + 1]); a detection is kept from state_of on
    # (num_states: never kept in the range).
    state_of = np.searchsorted(thresholds, np.maximum(min_k, k_min), side="right") - 1
    state_of[~in_range] = num_states
    tp_state = state_of[tp_position]
    # Detections strictly between consecutive true positives, split into always-kept and late ones.
    always = np.r_[0, np.cumsum(state_of == 0)]
    segment_end = np.r_[tp_position[1:] + 1, len(min_k)]
    always_after = np.cumsum((always[segment_end] - always[tp_position + 1])[::-1])[::-1]
    late_position = np.flatnonzero(state_of > 0)
    late_bounds = np.searchsorted(late_position, np.r_[tp_position + 1, len(min_k)])
    # Per state: kept true positives up to the current one (its recall rank) and kept detections
    # up to it except the always-kept ones after it, which are one scalar per slot.
    tp_rank = np.cumsum(np.bincount(tp_state, minlength=num_states + 1)[:num_states])
    count_base = np.cumsum(np.bincount(state_of, minlength=num_states + 1)[:num_states])
    envelope = np.zeros(num_states)
    precision_sum = np.zeros(num_states)
    for slot in range(len(tp_position) - 1, -1, -1):
        lo, hi = late_bounds[slot], late_bounds[slot + 1]
        if hi > lo:
            count_base -= np.cumsum(np.bincount(state_of[late_position[lo:hi]], minlength=num_states + 1)[:num_states])
        first = tp_state[slot]
        if first >= num_states:
            continue
        ranks = tp_rank[first:]
        running = envelope[first:]
        np.maximum(running, ranks / (count_base[first:] - always_after[slot]), out=running)
        precision_sum[first:] += running
        ranks -= 1
    # Each true positive raises recall by 1/G; the official code forms k/G - (k-1)/G, equal to
    # within one rounding, so the sweep matches single runs to ~1e-15, not bit for bit.
    ap = precision_sum / num_gt
    return ap[np.searchsorted(thresholds, capacities, side="right") - 1]


def sweep_capacities(data: PreparedData, k_min: int, k_max: int) -> SweepCurves:
    """Frame-mAP for every capacity in ``k_min..k_max`` (inclusive) in one pass.

    The tie band of every K is ``evaluation.tie_band.sweep_band``'s (it does not depend on the tie rule).

    Args:
        data: prepared data (``evaluation.frame_map.prepare``).
        k_min: smallest capacity, >= 1.
        k_max: largest capacity, >= k_min.

    Returns:
        The curves; equal (to float rounding) to ``evaluate_at_capacity`` at each K.

    Raises:
        ValueError: ``k_min < 1`` or ``k_max < k_min``.
    """
    if k_min < 1 or k_max < k_min:
        raise ValueError(f"capacity range must satisfy 1 <= MIN <= MAX, got {k_min}..{k_max}")
    # Rows ranked at or beyond k_max are never kept; matching the rest once gives every K's flags.
    index = np.flatnonzero(data.det_valid & (data.det_rank < k_max))
    tp = match_detections(data, index)
    classes = data.det_class[index]
    order = ranking_order(data, index)
    per_class = sweep_classes(classes[order], tp[order], data.det_rank[index][order] + 1, data.num_gt, k_min, k_max)
    capacities = np.arange(k_min, k_max + 1, dtype=np.int64)
    return SweepCurves(capacities=capacities, mean_ap=mean_ap_curve(per_class), average_precision=per_class)


def sweep_classes(classes: np.ndarray, tp: np.ndarray, min_k: np.ndarray, num_gt: np.ndarray,
                  k_min: int, k_max: int) -> np.ndarray:
    """``[K, C]`` per-class AP over ``k_min..k_max`` of detection lists already in ranking order.

    Args:
        classes: ``[M]`` int64 class index of each detection, ascending (each class's list contiguous).
        tp: ``[M]`` bool flags, each class's list in its ranking order.
        min_k: ``[M]`` int64 smallest capacity keeping each detection.
        num_gt: ``[C]`` ground-truth boxes per class.
        k_min, k_max: the capacity range.

    Returns:
        ``[K, C]`` float64, NaN for classes without ground truth.
    """
    bounds = np.searchsorted(classes, np.arange(len(num_gt) + 1))
    per_class = np.full((k_max - k_min + 1, len(num_gt)), np.nan)
    for class_index in np.flatnonzero(num_gt > 0):
        span = slice(bounds[class_index], bounds[class_index + 1])
        per_class[:, class_index] = class_sweep(tp[span], min_k[span], int(num_gt[class_index]), k_min, k_max)
    return per_class


def mean_ap_curve(per_class: np.ndarray) -> np.ndarray:
    """``[K]`` mAP (mean over classes with ground truth, 0.0 when none) of a ``[K, C]`` per-class curve."""
    if not (~np.isnan(per_class)).any():
        return np.zeros(len(per_class))
    return np.array([mean_average_precision(row) for row in per_class])
