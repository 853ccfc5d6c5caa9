"""Entry points of the evaluator: read the files, evaluate at one capacity or sweep a range, time it."""
from __future__ import annotations

import dataclasses
import logging
import time
from pathlib import Path

import numpy as np

from evaluation.capacity import sweep_capacities
from evaluation.exclusions import check_exclusion_units
from evaluation.frame_map import PreparedData, evaluate_at_capacity, filter_rows, prepare
from evaluation.original.protocol import evaluate_original, ground_truth_priority, prepare_original
from evaluation.report import EvaluationResult, SweepSummary, TieBand
from evaluation.tie_band import BandCurves, band_at, sweep_band
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
    named in a warning (``evaluation/exclusions.py``; docs/numerics.md quirk 24).

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


def compute_tie_band(label_map: dict[int, str], ground_truth: GroundTruth, predictions: Predictions,
                     excluded: set[tuple[str, int]] | None, data: PreparedData | None,
                     capacities: tuple[int, int] | int) -> BandCurves:
    """The tie band of the file (``evaluation.tie_band``; the same for every tie protocol).

    Args:
        label_map, ground_truth, predictions, excluded: as for ``evaluate_predictions``.
        data: the ``stable`` preparation when already made (its tie rule plays no part in the band).
        capacities: one K (< 1: unlimited), or ``(MIN, MAX)``.

    Returns:
        The band at each capacity.
    """
    prepared = prepare(label_map, ground_truth, predictions, excluded) if data is None else data

    def priority() -> np.ndarray:
        # Asked for only when a detection is at exactly equal IoU from two boxes: the protocols may take
        # different boxes (file order vs the original's heap order), and the band covers both.
        rows = filter_rows(label_map, ground_truth, predictions, excluded)
        return ground_truth_priority(rows, ground_truth)[prepared.gt_row]

    if isinstance(capacities, tuple):
        return sweep_band(prepared, capacities[0], capacities[1], priority)
    return band_at(prepared, capacities, priority)


def _bands(curves: BandCurves) -> dict[int, TieBand]:
    return {int(k): TieBand(low=float(curves.low[i]), high=float(curves.high[i]),
                            low_reached=float(curves.low_reached[i]), high_reached=float(curves.high_reached[i]),
                            low_exact=bool(curves.low_exact[i]), high_exact=bool(curves.high_exact[i]))
            for i, k in enumerate(curves.capacities)}


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
        band: also compute the tie band (``evaluation.tie_band``: every order of equal scores; it does
            not depend on ``ties``).

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
        mean_ap, per_class = float(run.mean_ap[0]), run.average_precision[0]
        kept, true_positives, class_ids = int(run.num_kept[0]), int(run.num_true_positives[0]), data.class_ids
        stable_data = None
    else:
        data = stable_data = prepare(label_map, ground_truth, predictions, excluded)
        prepared = time.perf_counter()
        single = evaluate_at_capacity(data, capacity)
        mean_ap, per_class = single.mean_ap, single.average_precision
        kept, true_positives, class_ids = single.num_kept, single.num_true_positives, data.class_ids
    evaluated = time.perf_counter()
    tie_band = _bands(compute_tie_band(label_map, ground_truth, predictions, excluded, stable_data, capacity))[int(capacity)] \
        if band else None
    done = time.perf_counter()
    logger.info("frame-mAP %.6f at capacity %d (ties %s)", mean_ap, capacity, ties)
    return EvaluationResult(mAP=mean_ap, capacity=int(capacity), per_class=_per_class(label_map, class_ids, per_class),
                            class_names=dict(sorted(label_map.items())),
                            counts={**data.counts, "kept_rows": kept, "true_positives": true_positives},
                            timings={"prepare": prepared - start, "evaluate": evaluated - prepared,
                                     **({"tie_band": done - evaluated} if band else {})},
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
        band: also compute the tie band at every K (one more one-pass sweep; it does not depend on ``ties``).

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
        curve, per_class = run.mean_ap, run.average_precision
        best = int(np.argmax(curve))
        kept, true_positives = int(run.num_kept[best]), int(run.num_true_positives[best])
        stable_data = None
    else:
        data = stable_data = prepare(label_map, ground_truth, predictions, excluded)
        prepared = time.perf_counter()
        curves = sweep_capacities(data, k_min, k_max)
        curve, per_class = curves.mean_ap, curves.average_precision
        best = curves.best_index
        # The best K's counts come from a single run there; its per-class AP from the sweep itself.
        single = evaluate_at_capacity(data, int(capacities[best]))
        kept, true_positives = single.num_kept, single.num_true_positives
    swept = time.perf_counter()
    best_capacity = int(capacities[best])
    bands = _bands(compute_tie_band(label_map, ground_truth, predictions, excluded, stable_data, (k_min, k_max))) \
        if band else None
    banded = time.perf_counter()
    summary = SweepSummary(best_capacity=best_capacity, best_mAP=float(curve[best]),
                           mAP_by_capacity={int(k): float(v) for k, v in zip(capacities, curve)},
                           band_by_capacity=bands)
    logger.info("capacity sweep %d..%d (ties %s): best K %d, mAP %.6f", k_min, k_max, ties, best_capacity,
                summary.best_mAP)
    return EvaluationResult(mAP=summary.best_mAP, capacity=best_capacity,
                            per_class=_per_class(label_map, data.class_ids, per_class[best]),
                            class_names=dict(sorted(label_map.items())), sweep=summary,
                            counts={**data.counts, "kept_rows": kept, "true_positives": true_positives},
                            timings={"prepare": prepared - start, "sweep": swept - prepared,
                                     **({"tie_band": banded - swept} if band else {})},
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
