"""The tie band: the lowest and highest frame-mAP that any order of equal scores can give.

"Any order" is every choice at the three steps where an evaluator meets equal scores (the capacity cut,
the greedy matching, the per-class ranking), one cut per keyframe for all its classes: every single order
of the file, the original evaluator's and any other, so the band is the same for both ``--ties``.
``low``/``high`` are guaranteed bounds, from closed-form per-class extremes at every level of equal scores
that straddles the cut (``_bounds``); ``low_reached``/``high_reached`` are the mAPs of two concrete orders
(``_reached``); an end is exact where bound and reached agree to ``EXACT_TOLERANCE``. Each end is a list
of (class, flag, smallest K keeping it) in ranking order, a row's membership only grows with K, so every
curve is a one-pass sweep like ``evaluation.capacity``. Why the bounds hold and how tight they are:
docs/protocol.md, section 3.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from evaluation.capacity import mean_ap_curve, sweep_classes
from evaluation.frame_map import IOU_THRESHOLD, PreparedData, best_ground_truth

# Reached and bound values closer than this are the same number (float rounding of the AP sums).
EXACT_TOLERANCE = 1e-12


@dataclass(frozen=True, eq=False)
class BandCurves:
    """The tie band at every capacity of a range.

    Attributes:
        capacities: ``[K]`` int64 (0 = unlimited for a single run).
        low, high: ``[K]`` mAP bounds: no order of equal scores gives less than ``low`` or more than ``high``.
        low_reached, high_reached: ``[K]`` mAP of two orders that exist; the true lowest and highest mAP
            lie in ``[low, low_reached]`` and ``[high_reached, high]``.
        ground_truth_orders: 1, or 2 where the two protocols' orders of ground-truth boxes at equal IoU
            change a match and the band is the hull of both.
    """

    capacities: np.ndarray
    low: np.ndarray
    high: np.ndarray
    low_reached: np.ndarray
    high_reached: np.ndarray
    ground_truth_orders: int = 1

    @property
    def low_exact(self) -> np.ndarray:
        """``[K]`` bool: ``low`` is the true lowest mAP (an order reaches it)."""
        return self.low_reached - self.low <= EXACT_TOLERANCE

    @property
    def high_exact(self) -> np.ndarray:
        """``[K]`` bool: ``high`` is the true highest mAP (an order reaches it)."""
        return self.high - self.high_reached <= EXACT_TOLERANCE


@dataclass(frozen=True, eq=False)
class _Rows:
    """Per-row structure of the file that no order of equal scores changes.

    All arrays are ``[D]`` over ``data.det_*`` (keyframe-major, score descending within a keyframe).
    ``above``: rows of the keyframe with a higher score; ``level_size``: rows of the keyframe with this
    score (all rows, also invalid boxes and classes without ground truth: they take slots too);
    ``counting``: valid box of a class with ground truth; ``free``: the row wants a box (IoU >= 0.5) that
    no row of a higher level of its keyframe wants; ``box``: that box (-1 otherwise); ``first``: one row
    per free box (the one that takes it in the concrete orders); ``group``: rows wanting the same free box
    (at this level), 0 for the others; ``harm``: how many of its class's true positives rank below the
    row, per ground-truth box (the concrete orders' guess of what a false positive here costs).
    """

    level: np.ndarray
    above: np.ndarray
    level_size: np.ndarray
    counting: np.ndarray
    free: np.ndarray
    box: np.ndarray
    first: np.ndarray
    group: np.ndarray
    harm: np.ndarray


def _row_structure(data: PreparedData, claims: np.ndarray) -> _Rows:
    """The levels and the free boxes, given each counting row's box (``claims``, -1 for none)."""
    count = len(data.det_key)
    key, score = data.det_key, data.det_score
    new_level = np.r_[True, (key[1:] != key[:-1]) | (score[1:] != score[:-1])] if count else np.zeros(0, bool)
    level = np.cumsum(new_level) - 1
    level_start = np.flatnonzero(new_level)
    sizes = np.diff(np.r_[level_start, count])
    above = data.det_rank[level_start][level]
    level_size = sizes[level]
    counting = data.det_valid & (data.num_gt[data.det_class] > 0)

    wanting = np.flatnonzero(claims >= 0)
    top = np.full(len(data.gt_group), -np.inf)
    np.maximum.at(top, claims[wanting], score[wanting])
    free = np.zeros(count, dtype=bool)
    free[wanting] = score[wanting] == top[claims[wanting]]
    free_rows = np.flatnonzero(free)
    group_size = np.bincount(claims[free_rows], minlength=len(data.gt_group))
    group = np.zeros(count, dtype=np.int64)
    group[free_rows] = group_size[claims[free_rows]]
    first = np.zeros(count, dtype=bool)
    _, first_of_box = np.unique(claims[free_rows], return_index=True)
    first[free_rows[first_of_box]] = True

    # harm: true positives (one per free box) of the row's class at a strictly lower score, / its boxes.
    _, score_rank = np.unique(score, return_inverse=True)
    num_scores = int(score_rank.max()) + 1 if count else 1
    tp_key = np.sort(data.det_class[first] * num_scores + score_rank[first])
    below = np.searchsorted(tp_key, data.det_class * num_scores + score_rank, side="left") - \
        np.searchsorted(tp_key, data.det_class * num_scores, side="left")
    harm = below / np.maximum(data.num_gt[data.det_class], 1)
    return _Rows(level=level, above=above, level_size=level_size, counting=counting, free=free, box=claims,
                 first=first, group=group, harm=harm)


def _claims(data: PreparedData, counting: np.ndarray, best: np.ndarray, best_iou: np.ndarray) -> np.ndarray:
    """``[D]`` the box each counting row would take (IoU >= 0.5), -1 for none and for non-counting rows."""
    claims = np.full(len(data.det_key), -1, dtype=np.int64)
    claims[counting] = np.where(best_iou >= IOU_THRESHOLD, best, -1)
    return claims


def _positions(keys: list[np.ndarray], cell: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sort rows by ``cell`` then ``keys`` (lexsort order, last key first); return (order, 1-based rank in cell)."""
    order = np.lexsort(keys + [cell])
    sorted_cell = cell[order]
    starts = np.flatnonzero(np.r_[True, sorted_cell[1:] != sorted_cell[:-1]]) if len(order) else order
    run = np.diff(np.r_[starts, len(order)])
    return order, np.arange(1, len(order) + 1) - np.repeat(starts, run)


def _class_curve(data: PreparedData, rows: np.ndarray, flags: np.ndarray, min_k: np.ndarray,
                 true_positives_first: bool, k_min: int, k_max: int) -> np.ndarray:
    """``[K]`` mAP of the items (``rows``, ``flags``, ``min_k``) ranked by score, TPs first or last on ties."""
    classes = data.det_class[rows]
    tie = ~flags if true_positives_first else flags
    # One int64 key (faster than a lexsort): class, descending score, the flag's side, then the row.
    _, score_rank = np.unique(-data.det_score[rows], return_inverse=True)
    key = ((classes * (int(score_rank.max(initial=0)) + 1) + score_rank) * 2 + tie) * (len(data.det_key) + 1) + rows
    order = np.argsort(key)
    per_class = sweep_classes(classes[order], flags[order], min_k[order], data.num_gt, k_min, k_max)
    return mean_ap_curve(per_class)


def _bounds(data: PreparedData, rows_info: _Rows, k_min: int, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """``(low, high)`` ``[K]``: the per-class extremes of every straddling level, all classes at once."""
    rows = np.flatnonzero(rows_info.counting)
    cell = rows_info.level[rows] * data.num_classes + data.det_class[rows]
    first = rows_info.first[rows]
    _, cell_of_row, per_cell = np.unique(cell, return_inverse=True, return_counts=True)
    above = rows_info.above[rows]
    # Rows of the level that are not this class's counting rows: the slots another choice could fill.
    others = rows_info.level_size[rows] - per_cell[cell_of_row]

    # High: the class keeps one row per free box first (true positives from K = above + 1 on), its other
    # rows only when the cut leaves no other class's row to keep (from K = above + others + position).
    order, position = _positions([rows, ~first], cell)
    high_flags = first[order]
    high_min_k = above[order] + position + np.where(high_flags, 0, others[order])
    high = _class_curve(data, rows[order], high_flags, high_min_k, True, k_min, k_max)

    # Low: rows wanting no free box first, then boxes wanted by the most rows, one box at a time; its false
    # positives as if the class had every slot (from K = above + position), its true positives as if it
    # had only the slots the other classes' rows cannot fill (from K = above + others + position).
    free = rows_info.free[rows]
    order, position = _positions([rows, ~first, rows_info.box[rows], -rows_info.group[rows], free], cell)
    low_flags = first[order]
    low_min_k = above[order] + position + np.where(low_flags, others[order], 0)
    low = _class_curve(data, rows[order], low_flags, low_min_k, False, k_min, k_max)
    return low, high


def _reached(data: PreparedData, rows_info: _Rows, k_min: int, k_max: int) -> tuple[np.ndarray, np.ndarray]:
    """``(low_reached, high_reached)`` ``[K]``: mAP of two concrete orders (a cut, a matching, a ranking)."""
    everything = np.arange(len(data.det_key))
    counting, first, free = rows_info.counting, rows_info.first, rows_info.free
    rarity = 1.0 / np.maximum(data.num_gt[data.det_class], 1)
    # High: per level, one row per free box (rarest class first), then rows that count for no class, then
    # the other rows, least harmful first.
    tier = np.where(first, 0, np.where(counting, 2, 1))
    cost = np.where(first, -rarity, np.where(counting, rows_info.harm, 0.0))
    order, position = _positions([everything, cost, tier], rows_info.level)
    high_min_k = np.empty(len(everything), dtype=np.int64)
    high_min_k[order] = rows_info.above[order] + position
    # Low: rows that want no free box (most harmful first), then rows that count for no class, then the
    # boxes wanted by the most rows, the box's first row before the others.
    tier = np.where(~counting, 1, np.where(free, 2, 0))
    cost = np.where(counting & ~free, -rows_info.harm, 0.0)
    order, position = _positions([everything, ~first, rows_info.box, -rows_info.group, cost, tier],
                                 rows_info.level)
    low_min_k = np.empty(len(everything), dtype=np.int64)
    low_min_k[order] = rows_info.above[order] + position
    rows = np.flatnonzero(counting)
    low = _class_curve(data, rows, first[rows], low_min_k[rows], False, k_min, k_max)
    high = _class_curve(data, rows, first[rows], high_min_k[rows], True, k_min, k_max)
    return low, high


def sweep_band(data: PreparedData, k_min: int, k_max: int,
               gt_priority: np.ndarray | Callable[[], np.ndarray] | None = None) -> BandCurves:
    """The tie band at every capacity in ``k_min..k_max`` (inclusive), in one pass.

    Args:
        data: prepared data (``evaluation.frame_map.prepare``; its tie rule plays no part).
        k_min, k_max: the capacity range, ``1 <= k_min <= k_max``.
        gt_priority: ``[G]`` another order of the ground-truth boxes for exact IoU ties (the original
            protocol's, ``evaluation.original.protocol.ground_truth_priority`` taken at ``data.gt_row``), or a function
            returning it, called only when some detection has two boxes at exactly its best IoU (>= 0.5);
            where the other order changes a match, the band is the hull over both orders.

    Returns:
        The band curves.

    Raises:
        ValueError: an invalid range.
    """
    if k_min < 1 or k_max < k_min:
        raise ValueError(f"capacity range must satisfy 1 <= MIN <= MAX, got {k_min}..{k_max}")
    counting = np.flatnonzero(data.det_valid & (data.num_gt[data.det_class] > 0))
    best, best_iou, tied = best_ground_truth(data, counting)
    claim_sets = [_claims(data, counting, best, best_iou)]
    if gt_priority is not None and ((best_iou >= IOU_THRESHOLD) & (tied > 1)).any():
        priority = gt_priority() if callable(gt_priority) else gt_priority
        alternative = _claims(data, counting, *best_ground_truth(data, counting, priority)[:2])
        if not np.array_equal(alternative, claim_sets[0]):
            claim_sets.append(alternative)
    ends = []
    for claims in claim_sets:
        rows_info = _row_structure(data, claims)
        low, high = _bounds(data, rows_info, k_min, k_max)
        # A level straddles K when above < K < above + size. If none does anywhere in the range, the cut is
        # fixed and the bounds are reached (the orders with true positives last / first).
        straddles = (rows_info.level_size > 1) & (rows_info.above + 1 <= k_max) & \
            (rows_info.above + rows_info.level_size - 1 >= k_min)
        low_reached, high_reached = _reached(data, rows_info, k_min, k_max) if straddles.any() else (low, high)
        ends.append((low, high, low_reached, high_reached))
    low = np.min([end[0] for end in ends], axis=0)
    high = np.max([end[1] for end in ends], axis=0)
    low_reached = np.min([end[2] for end in ends], axis=0)
    high_reached = np.max([end[3] for end in ends], axis=0)
    # A reached value is an order's mAP, so it lies inside the bounds; only rounding could put it outside.
    return BandCurves(capacities=np.arange(k_min, k_max + 1, dtype=np.int64),
                      low=np.minimum(low, low_reached), high=np.maximum(high, high_reached),
                      low_reached=low_reached, high_reached=high_reached, ground_truth_orders=len(claim_sets))


def band_at(data: PreparedData, capacity: int,
            gt_priority: np.ndarray | Callable[[], np.ndarray] | None = None) -> BandCurves:
    """The tie band at one capacity (``< 1``: unlimited, where no level is cut and the band is exact)."""
    if capacity >= 1:
        return sweep_band(data, capacity, capacity, gt_priority)
    everything = int(data.det_rank.max()) + 1 if len(data.det_rank) else 1
    band = sweep_band(data, everything, everything, gt_priority)
    return BandCurves(capacities=np.array([capacity], dtype=np.int64), low=band.low, high=band.high,
                      low_reached=band.low_reached, high_reached=band.high_reached,
                      ground_truth_orders=band.ground_truth_orders)
