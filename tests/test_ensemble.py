"""Tests of tools.ensemble: identical boxes averaged, IoU-matched boxes merged, weights, evaluator-valid output."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from formats.eval_csv import read_predict_csv
from tools.ensemble import ensemble_files, greedy_pairs, main

SAME = "0.100,0.100,0.300,0.500"  # in both files
# File A's second box and file B's version of it (IoU 0.818); a box only in A; a box only in B.
A_ONLY_SHIFTED, B_SHIFTED = "0.500,0.100,0.700,0.500", "0.520,0.100,0.720,0.500"
A_ALONE, B_ALONE = "0.800,0.600,0.950,0.950", "0.000,0.000,0.050,0.050"


def _write(path: Path, rows: list[str]) -> Path:
    path.write_text("".join(row + "\n" for row in rows))
    return path


@pytest.fixture()
def inputs(tmp_path: Path) -> tuple[Path, Path]:
    a = _write(tmp_path / "a.csv", [
        f"vidA,0902,{SAME},1,0.800", f"vidA,902,{SAME},2,0.200",
        f"vidA,902,{A_ONLY_SHIFTED},1,0.600", f"vidA,902,{A_ONLY_SHIFTED},2,0.400",
        f"vidA,903,{A_ALONE},1,0.500", f"vidA,903,{A_ALONE},2,0.100",
    ])
    b = _write(tmp_path / "b.csv", [
        f"vidA,902,{SAME},1,0.400", f"vidA,902,{SAME},2,0.600",
        f"vidA,902,{B_SHIFTED},1,0.200", f"vidA,902,{B_SHIFTED},2,0.000",
        f"vidB,1,{B_ALONE},1,0.300", f"vidB,1,{B_ALONE},2,0.900",
    ])
    return a, b


def _rows(path: Path) -> dict[tuple, float]:
    preds = read_predict_csv(path)
    return {(v, t, tuple(np.round(b, 3)), c): s for v, t, b, c, s in
            zip(preds.video, preds.time.tolist(), preds.boxes.tolist(), preds.class_id.tolist(), preds.score.tolist())}


def test_identical_and_matched_boxes_are_averaged(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "merged.csv"
    stats = ensemble_files(inputs, out)
    rows = _rows(out)
    assert (stats.keyframes, stats.boxes, stats.matched_boxes, stats.rows) == (3, 4, 2, 8)
    same = (0.1, 0.1, 0.3, 0.5)
    assert rows[("vidA", 902, same, 1)] == pytest.approx(0.6) and rows[("vidA", 902, same, 2)] == pytest.approx(0.4)
    # IoU-matched: the box is the mean of both boxes, the scores the mean of both files.
    merged = (0.51, 0.1, 0.71, 0.5)
    assert rows[("vidA", 902, merged, 1)] == pytest.approx(0.4)
    assert rows[("vidA", 902, merged, 2)] == pytest.approx(0.2)
    # A box only one file has counts as score 0 in the other.
    assert rows[("vidA", 903, (0.8, 0.6, 0.95, 0.95), 1)] == pytest.approx(0.25)
    assert rows[("vidB", 1, (0.0, 0.0, 0.05, 0.05), 2)] == pytest.approx(0.45)
    # Every class of every box (evaluator-valid).
    assert len(rows) == 8 and {key[3] for key in rows} == {1, 2}


def test_weights_and_iou_threshold(inputs: tuple[Path, Path], tmp_path: Path) -> None:
    out = tmp_path / "weighted.csv"
    ensemble_files(inputs, out, weights=[3, 1])
    rows = _rows(out)
    assert rows[("vidA", 902, (0.1, 0.1, 0.3, 0.5), 1)] == pytest.approx(0.7)  # (3 x 0.8 + 0.4) / 4
    assert rows[("vidA", 902, (0.505, 0.1, 0.705, 0.5), 1)] == pytest.approx(0.5)  # box (3 x 0.5 + 0.52) / 4
    strict = tmp_path / "strict.csv"
    stats = ensemble_files(inputs, strict, iou_threshold=0.9)  # the shifted pair (IoU 0.818) stays apart
    assert stats.boxes == 5 and stats.matched_boxes == 1
    with pytest.raises(ValueError, match="3 weight"):
        ensemble_files(inputs, out, weights=[1, 2, 3])
    with pytest.raises(ValueError, match="positive"):
        ensemble_files(inputs, out, weights=[1, -1])


def test_greedy_pairs_take_the_best_overlap_first() -> None:
    overlaps = np.array([[0.6, 0.9], [0.7, 0.0]])
    assert greedy_pairs(overlaps, 0.5) == [(0, 1), (1, 0)]
    assert greedy_pairs(overlaps, 0.95) == []


def test_cli_writes_the_merged_file(inputs: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "cli.csv"
    assert main([str(inputs[0]), str(inputs[1]), "--out", str(out), "--weights", "1", "1"]) == 0
    assert "4 boxes" in capsys.readouterr().out
    assert out.read_text().splitlines()[0] == "vidA,902,0.100,0.100,0.300,0.500,1,0.600"
