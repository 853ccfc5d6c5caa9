"""The demo's protocol comparison: per-row files with exact ties beside merged files with the stable rule."""
from __future__ import annotations

from pathlib import Path

import pytest

from evaluation import run_evaluation
from tools.demo import format_summary, headline_figures
from tools.demo_protocols import format_protocol_lines, score_protocols, sweep_range

GOLDEN = Path(__file__).parent / "data" / "eval" / "original_protocol" / "golden"


def test_sweep_range_is_the_originals_exclusive_range() -> None:
    assert sweep_range(Path(__file__).parents[1] / "configs" / "tiny_cpu_synthetic.yaml") == (1, 299)


def test_sweep_range_needs_both_bounds(tmp_path: Path) -> None:
    config = tmp_path / "c.yaml"
    config.write_text((Path(__file__).parents[1] / "configs" / "tiny_cpu_synthetic.yaml").read_text()
                      .replace("cap_min: 1\n", "").replace("cap_max: 300\n", ""))
    with pytest.raises(ValueError, match="cap_min and cap_max"):
        sweep_range(config)


def test_score_protocols_scores_each_layout_with_its_rule() -> None:
    folder = GOLDEN / "per_row_gt"
    files = (folder / "labelmap.pbtxt", folder / "gt.csv")
    figures = score_protocols(*files, (40, 60), folder / "predict.csv", folder / "predict.csv")
    original = run_evaluation(*files, folder / "predict.csv", cap_range=(40, 60))
    stable = run_evaluation(*files, folder / "predict.csv", cap_range=(40, 60), ties="stable")
    assert figures["original"]["mAP"] == original.mAP and figures["original"]["ties"] == "original"
    assert figures["merged_stable"]["mAP"] == stable.mAP and figures["merged_stable"]["ties"] == "stable"
    assert figures["original"]["tie_band_low"] <= original.mAP <= figures["original"]["tie_band_high"]
    lines = format_protocol_lines({"gt": figures})
    assert "original protocol" in lines[1] and f"{100 * original.mAP:.2f}%" in lines[1]


def test_headline_uses_the_merged_stable_figures_and_adds_the_original_protocol(tmp_path: Path) -> None:
    pair = {"original": {"mAP": 0.3, "best_capacity": 9, "ties": "original", "tie_band_low": 0.2,
                         "tie_band_high": 0.4},
            "merged_stable": {"mAP": 0.5, "best_capacity": 7, "ties": "stable", "tie_band_low": 0.5,
                              "tie_band_high": 0.5}}
    stages = {"action": {"map_gt_boxes": 0.45, "best_capacity_gt": 7, "checkpoint": "c", "predict_csv": "p",
                         "plot": "m", "tensorboard": "t"},
              "action_detector_boxes": {"map_detector_boxes": 0.25, "best_capacity_detector": 3, "predict_csv": "q"},
              "protocols": {"gt": pair, "detector": pair}}
    figures = headline_figures(stages)
    assert figures["map_gt_boxes"] == 0.5 and figures["map_gt_boxes_original"] == 0.3
    assert figures["tie_band_detector_original"] == [0.2, 0.4]
    table = format_summary({"stages": stages, "timings_s": {name: 1.0 for name in stages}}, tmp_path / "s.json")
    assert "original protocol (per-row files, exact ties) 30.00%" in table and "tie band 20.00..40.00%" in table
