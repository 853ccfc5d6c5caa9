"""The demo's protocol stage: the original's per-row files scored with its exact tie order, beside merged files.

It runs the trained action model on per-row val files (one element per csv row, as the original's; ground-truth
and detector boxes), scores them with the original ties and the merged files with the stable rule, both over
the config's sweep as the original scores it (K = cap_min..cap_max-1, no exclusions), and reports each mAP with
its tie band (why the layout and the tie order matter: docs/protocol.md, section 1; docs/numerics.md quirk 18).
"""
from __future__ import annotations

import logging
from pathlib import Path

from config import load_config
from evaluation import EvaluationResult, run_evaluation

LOGGER = logging.getLogger(__name__)

# Our own names for the per-row val files (no original file name is reused for a file we derive).
PER_ROW_NAMES = {"gt": "cw_data_test1fps_per_row.pkl", "detector": "cw_test_yolov8_demo_per_row.pkl"}


def sweep_range(config: Path) -> tuple[int, int]:
    """The original's sweep of a config: ``range(cap_min, cap_max)``, i.e. cap_min..cap_max-1 inclusive."""
    cfg = load_config(config)
    if cfg.cap_min is None or cfg.cap_max is None:
        raise ValueError(f"{config}: the demo's protocol comparison needs cap_min and cap_max")
    return int(cfg.cap_min), max(int(cfg.cap_min), int(cfg.cap_max) - 1)


def _figures(result: EvaluationResult) -> dict:
    band = result.tie_band
    return {"mAP": result.mAP, "best_capacity": result.capacity, "ties": result.ties,
            "tie_band_low": band.low if band else None, "tie_band_high": band.high if band else None,
            "predict_rows": result.counts.get("detection_rows")}


def score_protocols(label_map: Path, ground_truth: Path, cap_range: tuple[int, int],
                    per_row_predict: Path, merged_predict: Path) -> dict:
    """Score a per-row predict file as the original (exact ties) and a merged one with the stable rule.

    Both use the original's sweep without exclusions, so the two figures differ only by the file layout and
    the order of equal scores.

    Returns:
        ``{'original': figures, 'merged_stable': figures}`` (mAP at the best K, the K, the tie band).
    """
    original = run_evaluation(label_map, ground_truth, per_row_predict, cap_range=cap_range, ties="original")
    merged = run_evaluation(label_map, ground_truth, merged_predict, cap_range=cap_range, ties="stable")
    return {"original": _figures(original), "merged_stable": _figures(merged)}
