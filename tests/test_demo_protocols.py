"""The demo's protocol comparison: per-row files with exact ties beside merged files with the stable rule."""
from __future__ import annotations

from pathlib import Path

import pytest

from evaluation import run_evaluation
from tools.demo_protocols import score_protocols, sweep_range

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
