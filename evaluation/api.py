"""Entry points of the evaluator: read the files, evaluate at one capacity or sweep a range, time it."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from evaluation.capacity import sweep_capacities
from evaluation.exclusions import check_exclusion_units
from evaluation.frame_map import evaluate_at_capacity, prepare
from evaluation.original_protocol import BAND_HIGH, BAND_LOW, ORIGINAL, evaluate_original, prepare_original
from evaluation.report import EvaluationResult, SweepSummary, TieBand
from formats.eval_csv import GroundTruth, Predictions, read_exclusions, read_ground_truth_csv, read_predict_csv
from formats.pbtxt import read_label_map

logger = logging.getLogger(__name__)

# The official calc_mAP.py keeps 50 rows per keyframe.
DEFAULT_CAPACITY = 50
# Tie protocols (docs/protocol.md): the original's exact order of equal scores is the default, so that
# scores of the original's own per-row files are comparable with the published figures.
TIES = ("original", "stable")
DEFAULT_TIES = "original"


def load_inputs(labelmap_path: str | Path, gt_path: str | Path, predictions: str | Path | Predictions,
                exclusions_path: str | Path | None = None,
                ) -> tuple[dict[int, str], GroundTruth, Predictions, set[tuple[str, int]]]:
    """Read the label map, ground truth, predictions (unless given) and exclusions.

    The exclusions are applied as written (in seconds, as the original evaluator read them); a file
    whose keys match the ground truth better as frame numbers (Chaotic World's published files) is
    named in a warning (``evaluation/exclusions.py``).

    Raises:
        FileNotFoundError: a file is missing.
        FormatError: a file is malformed (file and line named).
    """
    label_map = read_label_map(labelmap_path)
    ground_truth = read_ground_truth_csv(gt_path)
    preds = predictions if isinstance(predictions, Predictions) else read_predict_csv(predictions)
    excluded = read_exclusions(exclusions_path) if exclusions_path is not None else set()
    if excluded:
        units = check_exclusion_units(excluded, zip(ground_truth.video, ground_truth.time.tolist()))
        if units.look_like_frames:
            logger.warning(units.message(exclusions_path))
    return label_map, ground_truth, preds, excluded


def _per_class(label_map: dict[int, str], class_ids: np.ndarray, ap: np.ndarray) -> dict[int, float | None]:
    by_id = {int(cid): (None if np.isnan(value) else float(value)) for cid, value in zip(class_ids, ap)}
    return {int(cid): by_id[int(cid)] for cid in sorted(label_map)}


def _check_ties(ties: str) -> None:
    if ties not in TIES:
        raise ValueError(f"unknown tie protocol {ties!r}; choose one of {', '.join(TIES)}")


def evaluate_predictions(label_map: dict[int, str], ground_truth: GroundTruth, predictions: Predictions,
                         excluded: set[tuple[str, int]] | None = None,
                         capacity: int = DEFAULT_CAPACITY, ties: str = DEFAULT_TIES,
                         band: bool = True) -> EvaluationResult:
    """Frame-mAP at one capacity.

    Args:
        label_map: ``{class_id: name}``.
        ground_truth: ground-truth boxes.
        predictions: scored detections (predict.csv rows).
        excluded: keyframes ``(video_id, time)`` to drop from both.
        capacity: rows kept per keyframe over all classes; < 1 keeps all.
        ties: ``original`` (the original evaluator's exact order of equal scores, the default) or
            ``stable`` (earlier predict-file row first).
        band: also compute the tie band.

    Returns:
        The result; ``per_class`` holds every label-map id (None without ground truth).

    Raises:
        ValueError: an unknown ``ties``.
    """
    _check_ties(ties)
    start = time.perf_counter()
    if ties == "original":
        data = prepare_original(label_map, ground_truth, predictions, excluded)
        prepared = time.perf_counter()
        run = evaluate_original(data, [capacity])
        mean_ap, per_class = float(run.mean_ap[0, ORIGINAL]), run.average_precision[0, ORIGINAL]
        tie_band = TieBand(float(run.mean_ap[0, BAND_LOW]), float(run.mean_ap[0, BAND_HIGH])) if band else None
        kept, true_positives, class_ids = int(run.num_kept[0]), int(run.num_true_positives[0]), data.class_ids
    else:
        data = prepare(label_map, ground_truth, predictions, excluded)
        prepared = time.perf_counter()
        single = evaluate_at_capacity(data, capacity, band=band)
        mean_ap, per_class = single.mean_ap, single.average_precision
        tie_band = TieBand(*single.band) if band else None
        kept, true_positives, class_ids = single.num_kept, single.num_true_positives, data.class_ids
    done = time.perf_counter()
    logger.info("frame-mAP %.6f at capacity %d (ties %s)", mean_ap, capacity, ties)
    return EvaluationResult(mAP=mean_ap, capacity=int(capacity), per_class=_per_class(label_map, class_ids, per_class),
                            class_names=dict(sorted(label_map.items())),
                            counts={**data.counts, "kept_rows": kept, "true_positives": true_positives},
                            timings={"prepare": prepared - start, "evaluate": done - prepared},
                            ties=ties, tie_band=tie_band)


def sweep_capacity(label_map: dict[int, str], ground_truth: GroundTruth, predictions: Predictions,
                   excluded: set[tuple[str, int]] | None = None,
                   cap_range: tuple[int, int] = (50, 2200), ties: str = DEFAULT_TIES,
                   band: bool = True) -> EvaluationResult:
    """Frame-mAP for every capacity in ``cap_range`` (inclusive).

    ``original`` runs the original's whole path at every K (compiled, in parallel over K), so the curve is
    that of single runs by construction; ``stable`` uses the one-pass sweep of ``evaluation.capacity``.

    Args:
        label_map: ``{class_id: name}``.
        ground_truth: ground-truth boxes.
        predictions: scored detections.
        excluded: keyframes to drop from both.
        cap_range: ``(MIN, MAX)`` with ``1 <= MIN <= MAX``.
        ties: ``original`` (default) or ``stable``, as in ``evaluate_predictions``.
        band: also compute the tie band at every K.

    Returns:
        The result with ``sweep`` set; ``mAP``, ``capacity`` and ``per_class`` are those of the best K
        (the smallest K on ties).

    Raises:
        ValueError: an invalid range or an unknown ``ties``.
    """
    _check_ties(ties)
    k_min, k_max = (int(k) for k in cap_range)
    if k_min < 1 or k_max < k_min:
        raise ValueError(f"capacity range must satisfy 1 <= MIN <= MAX, got {k_min}..{k_max}")
    start = time.perf_counter()
    capacities = np.arange(k_min, k_max + 1, dtype=np.int64)
    if ties == "original":
        data = prepare_original(label_map, ground_truth, predictions, excluded)
        prepared = time.perf_counter()
        run = evaluate_original(data, capacities)
        curve, per_class = run.mean_ap[:, ORIGINAL], run.average_precision[:, ORIGINAL]
        low, high = run.mean_ap[:, BAND_LOW], run.mean_ap[:, BAND_HIGH]
        best = int(np.argmax(curve))
        kept, true_positives = int(run.num_kept[best]), int(run.num_true_positives[best])
    else:
        data = prepare(label_map, ground_truth, predictions, excluded)
        prepared = time.perf_counter()
        curves = sweep_capacities(data, k_min, k_max, band=band)
        curve, per_class, low, high = curves.mean_ap, curves.average_precision, curves.mean_ap_low, curves.mean_ap_high
        best = curves.best_index
        # The best K's counts come from a single run there; its per-class AP from the sweep itself.
        single = evaluate_at_capacity(data, int(capacities[best]))
        kept, true_positives = single.num_kept, single.num_true_positives
    swept = time.perf_counter()
    best_capacity = int(capacities[best])
    bands = {int(k): TieBand(float(lo), float(hi)) for k, lo, hi in zip(capacities, low, high)} if band else None
    summary = SweepSummary(best_capacity=best_capacity, best_mAP=float(curve[best]),
                           mAP_by_capacity={int(k): float(v) for k, v in zip(capacities, curve)},
                           band_by_capacity=bands)
    logger.info("capacity sweep %d..%d (ties %s): best K %d, mAP %.6f", k_min, k_max, ties, best_capacity,
                summary.best_mAP)
    return EvaluationResult(mAP=summary.best_mAP, capacity=best_capacity,
                            per_class=_per_class(label_map, data.class_ids, per_class[best]),
                            class_names=dict(sorted(label_map.items())), sweep=summary,
                            counts={**data.counts, "kept_rows": kept, "true_positives": true_positives},
                            timings={"prepare": prepared - start, "sweep": swept - prepared},
                            ties=ties, tie_band=bands[best_capacity] if band else None)


def run_evaluation(labelmap_path: str | Path, gt_path: str | Path, predictions: str | Path | Predictions,
                   exclusions_path: str | Path | None = None, capacity: int = DEFAULT_CAPACITY,
                   cap_range: tuple[int, int] | None = None, ties: str = DEFAULT_TIES,
                   band: bool = True) -> EvaluationResult:
    """Read the files and evaluate: one capacity, or a sweep when ``cap_range`` is given.

    Args:
        labelmap_path: ``list_action.pbtxt``.
        gt_path: ground-truth csv (``chaos_test_t_+1.csv``).
        predictions: a predict.csv path, or Predictions already in memory (the engine's case).
        exclusions_path: optional ``video_id,timestamp`` csv.
        capacity: rows per keyframe for a single run (< 1: all); ignored when ``cap_range`` is set.
        cap_range: ``(MIN, MAX)`` for a sweep over every K in MIN..MAX.
        ties: ``original`` (default) or ``stable`` (see ``evaluate_predictions``).
        band: also compute the tie band.

    Returns:
        The EvaluationResult, with ``timings['read']`` and ``timings['total']`` added.

    Raises:
        FileNotFoundError: a missing file.
        FormatError: a malformed file (file and line named).
        ValueError: an invalid capacity range or tie protocol.
    """
    _check_ties(ties)
    if cap_range is not None and (cap_range[0] < 1 or cap_range[1] < cap_range[0]):
        raise ValueError(f"capacity range must satisfy 1 <= MIN <= MAX, got {cap_range[0]}..{cap_range[1]}")
    start = time.perf_counter()
    label_map, ground_truth, preds, excluded = load_inputs(labelmap_path, gt_path, predictions, exclusions_path)
    read = time.perf_counter() - start
    if cap_range is None:
        result = evaluate_predictions(label_map, ground_truth, preds, excluded, capacity, ties, band)
    else:
        result = sweep_capacity(label_map, ground_truth, preds, excluded, cap_range, ties, band)
    timings = {"read": read, **result.timings, "total": time.perf_counter() - start}
    return dataclasses.replace(result, timings=timings)
