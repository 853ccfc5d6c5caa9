"""Entry points of the evaluator: read the files, evaluate at one capacity or sweep a range, time it."""
from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from evaluation.capacity import sweep_capacities
from evaluation.frame_map import FrameMapResult, PreparedData, evaluate_at_capacity, prepare
from evaluation.report import EvaluationResult, SweepSummary
from formats.eval_csv import GroundTruth, Predictions, read_exclusions, read_ground_truth_csv, read_predict_csv
from formats.pbtxt import read_label_map

logger = logging.getLogger(__name__)

# The official calc_mAP.py keeps 50 rows per keyframe.
DEFAULT_CAPACITY = 50


def load_inputs(labelmap_path: str | Path, gt_path: str | Path, predictions: str | Path | Predictions,
                exclusions_path: str | Path | None = None,
                ) -> tuple[dict[int, str], GroundTruth, Predictions, set[tuple[str, int]]]:
    """Read the label map, ground truth, predictions (unless given) and exclusions.

    Raises:
        FileNotFoundError: a file is missing.
        FormatError: a file is malformed (file and line named).
    """
    label_map = read_label_map(labelmap_path)
    ground_truth = read_ground_truth_csv(gt_path)
    preds = predictions if isinstance(predictions, Predictions) else read_predict_csv(predictions)
    excluded = read_exclusions(exclusions_path) if exclusions_path is not None else set()
    return label_map, ground_truth, preds, excluded


def _per_class(label_map: dict[int, str], data: PreparedData, ap: np.ndarray) -> dict[int, float | None]:
    by_id = {int(cid): (None if np.isnan(value) else float(value)) for cid, value in zip(data.class_ids, ap)}
    return {int(cid): by_id[int(cid)] for cid in sorted(label_map)}


def _single_counts(data: PreparedData, run: FrameMapResult) -> dict[str, int]:
    return {**data.counts, "kept_rows": run.num_kept, "true_positives": run.num_true_positives}


def evaluate_predictions(label_map: dict[int, str], ground_truth: GroundTruth, predictions: Predictions,
                         excluded: set[tuple[str, int]] | None = None,
                         capacity: int = DEFAULT_CAPACITY) -> EvaluationResult:
    """Frame-mAP at one capacity.

    Args:
        label_map: ``{class_id: name}``.
        ground_truth: ground-truth boxes.
        predictions: scored detections (predict.csv rows).
        excluded: keyframes ``(video_id, time)`` to drop from both.
        capacity: rows kept per keyframe over all classes; < 1 keeps all.

    Returns:
        The result; ``per_class`` holds every label-map id (None without ground truth).
    """
    start = time.perf_counter()
    data = prepare(label_map, ground_truth, predictions, excluded)
    prepared = time.perf_counter()
    run = evaluate_at_capacity(data, capacity)
    done = time.perf_counter()
    logger.info("frame-mAP %.6f at capacity %d", run.mean_ap, capacity)
    return EvaluationResult(mAP=run.mean_ap, capacity=int(capacity),
                            per_class=_per_class(label_map, data, run.average_precision),
                            class_names=dict(sorted(label_map.items())), counts=_single_counts(data, run),
                            timings={"prepare": prepared - start, "evaluate": done - prepared})


def sweep_capacity(label_map: dict[int, str], ground_truth: GroundTruth, predictions: Predictions,
                   excluded: set[tuple[str, int]] | None = None,
                   cap_range: tuple[int, int] = (50, 2200)) -> EvaluationResult:
    """Frame-mAP for every capacity in ``cap_range`` (inclusive) in one pass.

    Args:
        label_map: ``{class_id: name}``.
        ground_truth: ground-truth boxes.
        predictions: scored detections.
        excluded: keyframes to drop from both.
        cap_range: ``(MIN, MAX)`` with ``1 <= MIN <= MAX``.

    Returns:
        The result with ``sweep`` set; ``mAP``, ``capacity`` and ``per_class`` are those of the best K
        (the smallest K on ties).

    Raises:
        ValueError: an invalid range.
    """
    k_min, k_max = (int(k) for k in cap_range)
    start = time.perf_counter()
    data = prepare(label_map, ground_truth, predictions, excluded)
    prepared = time.perf_counter()
    curves = sweep_capacities(data, k_min, k_max)
    best = curves.best_index
    swept = time.perf_counter()
    best_capacity = int(curves.capacities[best])
    # The best K's counts come from a single run there; its per-class AP from the sweep itself.
    run = evaluate_at_capacity(data, best_capacity)
    done = time.perf_counter()
    summary = SweepSummary(best_capacity=best_capacity, best_mAP=float(curves.mean_ap[best]),
                           mAP_by_capacity={int(k): float(v) for k, v in zip(curves.capacities, curves.mean_ap)})
    logger.info("capacity sweep %d..%d: best K %d, mAP %.6f", k_min, k_max, best_capacity, summary.best_mAP)
    return EvaluationResult(mAP=summary.best_mAP, capacity=best_capacity,
                            per_class=_per_class(label_map, data, curves.average_precision[best]),
                            class_names=dict(sorted(label_map.items())), sweep=summary,
                            counts=_single_counts(data, run),
                            timings={"prepare": prepared - start, "sweep": swept - prepared,
                                     "best_capacity_run": done - swept})


def run_evaluation(labelmap_path: str | Path, gt_path: str | Path, predictions: str | Path | Predictions,
                   exclusions_path: str | Path | None = None, capacity: int = DEFAULT_CAPACITY,
                   cap_range: tuple[int, int] | None = None) -> EvaluationResult:
    """Read the files and evaluate: one capacity, or a sweep when ``cap_range`` is given.

    Args:
        labelmap_path: ``list_action.pbtxt``.
        gt_path: ground-truth csv (``chaos_test_t_+1.csv``).
        predictions: a predict.csv path, or Predictions already in memory (the engine's case).
        exclusions_path: optional ``video_id,timestamp`` csv.
        capacity: rows per keyframe for a single run (< 1: all); ignored when ``cap_range`` is set.
        cap_range: ``(MIN, MAX)`` for a sweep over every K in MIN..MAX.

    Returns:
        The EvaluationResult, with ``timings['read']`` and ``timings['total']`` added.

    Raises:
        FileNotFoundError: a missing file.
        FormatError: a malformed file (file and line named).
        ValueError: an invalid capacity range.
    """
    if cap_range is not None and (cap_range[0] < 1 or cap_range[1] < cap_range[0]):
        raise ValueError(f"capacity range must satisfy 1 <= MIN <= MAX, got {cap_range[0]}..{cap_range[1]}")
    start = time.perf_counter()
    label_map, ground_truth, preds, excluded = load_inputs(labelmap_path, gt_path, predictions, exclusions_path)
    read = time.perf_counter() - start
    if cap_range is None:
        result = evaluate_predictions(label_map, ground_truth, preds, excluded, capacity)
    else:
        result = sweep_capacity(label_map, ground_truth, preds, excluded, cap_range)
    timings = {"read": read, **result.timings, "total": time.perf_counter() - start}
    return EvaluationResult(mAP=result.mAP, capacity=result.capacity, per_class=result.per_class,
                            class_names=result.class_names, sweep=result.sweep, counts=result.counts,
                            timings=timings)
