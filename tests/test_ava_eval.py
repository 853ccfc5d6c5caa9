"""calc_mAP.py on AVA-format files: only the label map's classes are scored, the exclusions file is used."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

import calc_mAP

DATA = Path(__file__).resolve().parent / "data" / "ava"
EVAL = DATA / "eval"
ARGS = ["-l", str(DATA / "ava_action_list_v2.2_head.pbtxt"), "-g", str(EVAL / "ava_val_mini_v2.2.csv"),
        "-d", str(EVAL / "predict_mini.csv")]
EXCLUSIONS = ["-e", str(EVAL / "ava_val_mini_excluded_timestamps_v2.2.csv")]

# Worked by hand (AP = area under the precision envelope; scores are tie-free, so any tie rule
# gives these numbers). Ranked detections per class, T = true positive, F = false positive:
#   id 1:  T .90, F .80, T .60, F .50 with 2 GT -> 1/2 * 1 + 1/2 * 2/3 = 5/6
#   id 3:  F .95, T .70 with 1 GT                -> 1/2
#   id 4:  T .40 with 1 GT                       -> 1
#   id 17: the .99 detection and its GT are at the excluded keyframe vidA,0903; F .35, T .30 -> 1/2
#          (without the exclusions: T .99, F .35, T .30 with 2 GT -> 5/6)
#   id 79: F .25, T .20 with 1 GT                -> 1/2
# id 2 (ground truth and detection) is not in the label map: never scored.
EXPECTED_MAP = (5 / 6 + 1 / 2 + 1 + 1 / 2 + 1 / 2) / 5  # 2/3
EXPECTED_WITHOUT_EXCLUSIONS = (5 / 6 + 1 / 2 + 1 + 5 / 6 + 1 / 2) / 5


def _score(tmp_path: Path, extra: list[str]) -> dict:
    out = tmp_path / "result.json"
    assert calc_mAP.main([*ARGS, *extra, "--json", str(out)]) == 0
    return json.loads(out.read_text(encoding="utf-8"))


def test_ava_frame_map_with_exclusions_matches_the_hand_computation(tmp_path: Path) -> None:
    result = _score(tmp_path, EXCLUSIONS)
    assert result["mAP"] == pytest.approx(EXPECTED_MAP, abs=1e-9)


def test_exclusions_file_changes_the_score(tmp_path: Path) -> None:
    result = _score(tmp_path, [])
    assert result["mAP"] == pytest.approx(EXPECTED_WITHOUT_EXCLUSIONS, abs=1e-9)
