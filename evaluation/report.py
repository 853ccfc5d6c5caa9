"""Evaluation results as objects, JSON, the original's ``cap_mAP_records`` lines and a text summary."""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from common.atomic import write_text_atomic

# What each tie protocol does with equal scores (``--ties``), for the JSON and the summary.
TIE_RULES = {
    "original": "equal scores in the original evaluator's exact order (heapq cut, stable per-keyframe sort, "
                "numpy 1.21.6 introsort per class), as the published figures were computed",
    "stable": "equal scores: earlier predict-file row first (capacity cut, matching and AP order alike)",
}


# What the tie band is (docs/protocol.md section 3), for the JSON.
TIE_BAND_MEANING = (
    "lowest and highest mAP over every order of equal scores: which tied rows the capacity cut keeps, which "
    "tied detection takes a ground-truth box, where tied true positives rank; one cut per keyframe for all "
    "classes. A property of the file, the same for --ties original and stable. low/high are guaranteed bounds "
    "(every order's mAP lies between them); low_reached/high_reached are the mAPs of orders that exist, so the "
    "true extremes lie in [low, low_reached] and [high_reached, high]; low_exact/high_exact: the bound is "
    "reached, i.e. exact (always when no group of equal scores straddles the cut)")


@dataclass(frozen=True)
class TieBand:
    """The lowest and highest mAP over every order of equal scores (``evaluation.tie_band``).

    Attributes:
        low, high: guaranteed bounds: no order of equal scores gives less than ``low`` or more than ``high``.
        low_reached, high_reached: mAPs of orders that exist (None: not computed; then the bounds are exact).
        low_exact, high_exact: the bound is reached by an order, i.e. it is the true extreme.
    """

    low: float
    high: float
    low_reached: float | None = None
    high_reached: float | None = None
    low_exact: bool = True
    high_exact: bool = True

    @property
    def exact(self) -> bool:
        """Both ends are the true extremes."""
        return self.low_exact and self.high_exact


@dataclass(frozen=True)
class SweepSummary:
    """A capacity sweep's curve.

    Attributes:
        best_capacity: the K with the highest mAP (the smallest such K on ties).
        best_mAP: mAP at ``best_capacity``.
        mAP_by_capacity: ``{K: mAP}`` for every K of the range, ascending.
        band_by_capacity: ``{K: TieBand}`` for every K, when the band was computed.
    """

    best_capacity: int
    best_mAP: float
    mAP_by_capacity: dict[int, float]
    band_by_capacity: dict[int, TieBand] | None = None


@dataclass(frozen=True)
class EvaluationResult:
    """Frame-mAP of one predict file.

    Attributes:
        mAP: mean AP over classes with ground truth, a fraction in [0, 1] (never NaN: 0.0 when no
            class has ground truth). For a sweep: the mAP at the best capacity.
        capacity: the capacity ``per_class`` refers to (0 = unlimited; the best K for a sweep).
        per_class: ``{class_id: AP}`` for every label-map id, None for a class without ground truth.
        class_names: ``{class_id: name}`` from the label map.
        sweep: the capacity curve, None for a single run.
        counts: row and keyframe counts (ground truth, detections, exclusions, matches).
        timings: seconds per stage (``read``, ``prepare``, ``evaluate`` or ``sweep``, ``total``).
        ties: the tie protocol (``original`` or ``stable``, see ``TIE_RULES``).
        tie_band: the tie band at ``capacity``, when computed.
    """

    mAP: float
    capacity: int
    per_class: dict[int, float | None]
    class_names: dict[int, str]
    sweep: SweepSummary | None = None
    counts: dict[str, int] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    ties: str = "original"
    tie_band: TieBand | None = None

    def to_json(self) -> dict:
        """The JSON object of ``calc_mAP.py --json`` (keys of ``per_class`` are ids as strings)."""
        payload: dict = {
            "mAP": _finite(self.mAP),
            "capacity": int(self.capacity),
            "per_class": {str(cid): (None if ap is None else _finite(ap)) for cid, ap in self.per_class.items()},
            "class_names": {str(cid): name for cid, name in self.class_names.items()},
        }
        if self.sweep is not None:
            payload["sweep"] = {
                "best_capacity": int(self.sweep.best_capacity),
                "best_mAP": _finite(self.sweep.best_mAP),
                "mAP_by_capacity": {str(k): _finite(v) for k, v in self.sweep.mAP_by_capacity.items()},
            }
            if self.sweep.band_by_capacity is not None:
                bands = self.sweep.band_by_capacity
                payload["sweep"]["mAP_low_by_capacity"] = {str(k): _finite(b.low) for k, b in bands.items()}
                payload["sweep"]["mAP_high_by_capacity"] = {str(k): _finite(b.high) for k, b in bands.items()}
                payload["sweep"]["mAP_low_reached_by_capacity"] = {
                    str(k): _finite(b.low if b.low_reached is None else b.low_reached) for k, b in bands.items()}
                payload["sweep"]["mAP_high_reached_by_capacity"] = {
                    str(k): _finite(b.high if b.high_reached is None else b.high_reached) for k, b in bands.items()}
                payload["sweep"]["tie_band_exact_capacities"] = sum(band.exact for band in bands.values())
        if self.tie_band is not None:
            band = self.tie_band
            payload["tie_band"] = {
                "low": _finite(band.low), "high": _finite(band.high), "capacity": int(self.capacity),
                "exact": band.exact, "low_exact": band.low_exact, "high_exact": band.high_exact,
                "low_reached": _finite(band.low if band.low_reached is None else band.low_reached),
                "high_reached": _finite(band.high if band.high_reached is None else band.high_reached),
                "meaning": TIE_BAND_MEANING,
            }
        payload["counts"] = {key: int(value) for key, value in self.counts.items()}
        payload["timings_s"] = {key: round(float(value), 6) for key, value in self.timings.items()}
        payload["ties"] = self.ties
        payload["tie_rule"] = TIE_RULES[self.ties]
        return payload


def _finite(value: float) -> float:
    value = float(value)
    if not math.isfinite(value):
        # The evaluator never produces NaN; this guards the JSON contract against a future regression.
        raise ValueError(f"non-finite AP value {value} in an evaluation result")
    return value


def write_json(path: str | Path, result: EvaluationResult) -> None:
    """Write ``result.to_json()`` to ``path`` atomically (NaN is refused, not written)."""
    write_text_atomic(path, json.dumps(result.to_json(), indent=2, allow_nan=False) + "\n")


def cap_records_text(sweep: SweepSummary) -> str:
    """The original's ``cap_mAP_records{E}.txt`` content: ``cap: K, mAP: X`` lines, then its best line."""
    lines = [f"cap: {k}, mAP: {float(v)}" for k, v in sweep.mAP_by_capacity.items()]
    lines.append(f"cap:{sweep.best_capacity},max_mAP:{float(sweep.best_mAP)}")
    return "\n".join(lines) + "\n"


def write_cap_records(path: str | Path, sweep: SweepSummary) -> None:
    """Write ``cap_records_text(sweep)`` to ``path`` atomically."""
    write_text_atomic(path, cap_records_text(sweep))


def _ranked_classes(result: EvaluationResult) -> list[tuple[int, float]]:
    scored = [(cid, ap) for cid, ap in result.per_class.items() if ap is not None]
    return sorted(scored, key=lambda item: (-item[1], item[0]))


def describe_band(band: TieBand) -> str:
    """One line: the band, what it covers and whether its ends are exact or guaranteed bounds."""
    text = (f"{100 * band.low:.2f}% .. {100 * band.high:.2f}% (width {100 * (band.high - band.low):.2f} points) "
            "over every order of equal scores (cut, matching and ranking; the same whatever --ties)")
    if band.exact:
        return text + "; exact"
    ends = []
    if not band.low_exact:
        ends.append(f"lowest in {100 * band.low:.3f}..{100 * band.low_reached:.3f}%")
    if not band.high_exact:
        ends.append(f"highest in {100 * band.high_reached:.3f}..{100 * band.high:.3f}%")
    return text + "; guaranteed bounds, " + ", ".join(ends) + " (ties straddle the cut)"


def format_summary(result: EvaluationResult, top: int = 5) -> str:
    """A readable multi-line summary: mAP, best capacity, best and worst classes, counts, time."""
    capacity = "unlimited" if result.capacity < 1 else str(result.capacity)
    lines = [f"frame-mAP@0.5IoU: {100 * result.mAP:.2f}% ({result.mAP:.6f}) at capacity {capacity} "
             f"(ties: {result.ties})"]
    if result.tie_band is not None:
        lines.append(f"tie band at capacity {capacity}: {describe_band(result.tie_band)}")
    if result.sweep is not None:
        ks = list(result.sweep.mAP_by_capacity)
        worst_k = min(ks, key=lambda k: (result.sweep.mAP_by_capacity[k], k))
        lines.append(f"capacity sweep {ks[0]}..{ks[-1]} ({len(ks)} values): best K = {result.sweep.best_capacity} "
                     f"({100 * result.sweep.best_mAP:.2f}%), worst K = {worst_k} "
                     f"({100 * result.sweep.mAP_by_capacity[worst_k]:.2f}%)")
    ranked = _ranked_classes(result)
    lines.append(f"classes with ground truth: {len(ranked)} of {len(result.per_class)}")
    if ranked:
        def describe(items: list[tuple[int, float]]) -> str:
            return ", ".join(f"{cid} {result.class_names.get(cid, '?')} {100 * ap:.1f}%" for cid, ap in items)
        lines.append(f"top {min(top, len(ranked))}: {describe(ranked[:top])}")
        lines.append(f"bottom {min(top, len(ranked))}: {describe(ranked[::-1][:top])}")
    counts = result.counts
    if counts:
        lines.append(
            f"ground truth: {counts.get('gt_rows', 0)} rows, {counts.get('gt_rows_evaluated', 0)} evaluated in "
            f"{counts.get('gt_keyframes', 0)} keyframes ({counts.get('gt_rows_excluded', 0)} excluded, "
            f"{counts.get('gt_rows_outside_label_map', 0)} outside the label map)")
        lines.append(
            f"detections: {counts.get('detection_rows', 0)} rows, {counts.get('detection_rows_evaluated', 0)} "
            f"evaluated in {counts.get('detection_keyframes', 0)} keyframes "
            f"({counts.get('detection_rows_excluded', 0)} rows excluded, "
            f"{counts.get('detection_rows_outside_label_map', 0)} outside the label map; "
            f"{counts.get('detection_keyframes_without_gt', 0)} keyframes without ground truth; at most "
            f"{counts.get('max_rows_per_keyframe', 0)} rows in one keyframe), "
            f"{counts.get('kept_rows', 0)} kept, {counts.get('true_positives', 0)} true positives")
    if result.timings:
        lines.append("time: " + ", ".join(f"{key} {value:.2f} s" for key, value in result.timings.items()))
    return "\n".join(lines)
