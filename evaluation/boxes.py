"""Box geometry of the AVA evaluator: validity of detection boxes and pairwise IoU on normalised boxes."""
from __future__ import annotations

import numpy as np


def valid_box_mask(boxes: np.ndarray) -> np.ndarray:
    """Detection boxes the official evaluator keeps: ``x1 < x2`` and ``y1 < y2`` (strictly).

    Args:
        boxes: ``[N, 4]`` (x1, y1, x2, y2), normalised.

    Returns:
        ``[N]`` bool.
    """
    return (boxes[:, 0] < boxes[:, 2]) & (boxes[:, 1] < boxes[:, 3])


def paired_iou(det_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """IoU of row-aligned box pairs, with the official AVA arithmetic (no +1, normalised boxes).

    The official code computes ``area = (y2 - y1) * (x2 - x1)``, the intersection as height times
    width clipped at 0 and ``union = area_det + area_gt - intersection``; the same float operations
    are used here so results are bit-identical (floating-point products and sums of two terms are
    commutative, so only the grouping matters).

    Args:
        det_boxes: ``[P, 4]`` detection boxes (x1, y1, x2, y2).
        gt_boxes: ``[P, 4]`` ground-truth boxes (x1, y1, x2, y2), pair i with ``det_boxes[i]``.

    Returns:
        ``[P]`` float64 IoU; 0 where the union is not positive.
    """
    x1d, y1d, x2d, y2d = det_boxes.T
    x1g, y1g, x2g, y2g = gt_boxes.T
    height = np.maximum(0.0, np.minimum(y2d, y2g) - np.maximum(y1d, y1g))
    width = np.maximum(0.0, np.minimum(x2d, x2g) - np.maximum(x1d, x1g))
    intersection = height * width
    area_det = (y2d - y1d) * (x2d - x1d)
    area_gt = (y2g - y1g) * (x2g - x1g)
    union = area_det + area_gt - intersection
    iou = np.zeros_like(intersection)
    np.divide(intersection, union, out=iou, where=union > 0)
    return iou


def iou_matrix(boxes_a: np.ndarray, boxes_b: np.ndarray) -> np.ndarray:
    """Pairwise IoU of (x1, y1, x2, y2) boxes with the same arithmetic as ``paired_iou``.

    The formula is symmetric in the two axes, so (y1, x1, y2, x2) boxes give the same values.

    Args:
        boxes_a: ``[A, 4]``.
        boxes_b: ``[B, 4]``.

    Returns:
        ``[A, B]`` float64; 0 where the union is not positive.
    """
    boxes_a = np.asarray(boxes_a, dtype=np.float64).reshape(-1, 4)
    boxes_b = np.asarray(boxes_b, dtype=np.float64).reshape(-1, 4)
    pairs_a = np.repeat(boxes_a, len(boxes_b), axis=0)
    pairs_b = np.tile(boxes_b, (len(boxes_a), 1))
    return paired_iou(pairs_a, pairs_b).reshape(len(boxes_a), len(boxes_b))
