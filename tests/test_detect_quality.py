"""Tests of detect.quality on hand-made boxes with known recall, precision and AP."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from detect.quality import (average_precision, format_table, iou_matrix, main, precision_recall_curve,
                            proposal_quality, save_report)
from formats.annotation_pkl import classes_from_label_map, save_annotation_pkl
from formats.eval_csv import GroundTruth, write_ground_truth_csv
from formats.official_csv import OfficialRow, write_official_csv

CLASSES = classes_from_label_map({i: f"class {i}" for i in range(1, 51)})
P1, P2, P3 = [0.1, 0.1, 0.3, 0.5], [0.5, 0.1, 0.7, 0.5], [0.2, 0.2, 0.4, 0.6]
# (video, time, person, box, labels): P1 has two labels at vidA t=1 (two rows in the csv).
GT_PERSONS = [("vidA", 1, 1, P1, [3, 7]), ("vidA", 1, 2, P2, [5]), ("vidA", 2, 1, P1, [3]), ("vidB", 1, 4, P3, [9])]
# Detections: d1 = P1 exactly (0.9); d3 far away (0.8); d2 at IoU 0.6 with P2 (0.6); d4 at IoU 0.4286 with P1 (0.7).
D1, D2, D3, D4 = (P1, 0.9), ([0.55, 0.1, 0.75, 0.5], 0.6), ([0.8, 0.6, 0.95, 0.95], 0.8), ([0.18, 0.1, 0.38, 0.5], 0.7)


def _element(video: str, time: int, labels: list[dict]) -> dict:
    return {"video": video, "time": time, "start_frame": 1, "n_frames": 64, "mid_frame": 25 * time + 1,
            "format_str": f"{video}_%06d.png", "frame_rate": 25, "labels": labels}


def _proposals(path: Path, scored: bool = True) -> Path:
    def entry(box: list[float], score: float) -> dict:
        return {"bounding_box": box, "label": [0], "person_id": [0], **({"score": score} if scored else {})}

    frame_a1 = [entry(*D1), entry(*D3), entry(*D2)]
    elements = [_element("vidA", 1, frame_a1), _element("vidA", 1, [dict(e) for e in frame_a1]),  # per-row copy
                _element("vidA", 2, [entry(*D4)]), _element("vidB", 1, []),
                _element("vidC", 5, [entry(P3, 0.99)])]  # keyframe without ground truth: ignored
    save_annotation_pkl(path, elements, CLASSES)
    return path


def _gt_files(folder: Path) -> dict[str, Path]:
    rows = [OfficialRow(video, 25 * time, tuple(box), label, person, 1, 65, float(time), (0.04, 2.6))
            for video, time, person, box, labels in GT_PERSONS for label in labels]
    write_official_csv(folder / "official.csv", rows)
    # One element per csv row, as the original's pkls: repeated boxes must count once.
    elements = [_element(r.video, int(r.time), [{"bounding_box": list(r.box), "label": [r.label],
                                                  "person_id": [r.person_id]}]) for r in rows]
    save_annotation_pkl(folder / "gt.pkl", elements, CLASSES)
    write_ground_truth_csv(folder / "gt.csv", GroundTruth(
        video=[r.video for r in rows], time=[int(r.time) for r in rows], boxes=[r.box for r in rows],
        class_id=[r.label + 1 for r in rows], person_id=[r.person_id for r in rows]))
    return {"pkl": folder / "gt.pkl", "official": folder / "official.csv", "evaluator": folder / "gt.csv"}


def test_iou_matrix_on_hand_made_boxes() -> None:
    overlaps = iou_matrix(np.array([D2[0], D4[0]]), np.array([P2, P1]))
    np.testing.assert_allclose(overlaps, [[0.6, 0.0], [0.0, 0.048 / 0.112]], atol=1e-12)


@pytest.mark.parametrize("kind", ["pkl", "official", "evaluator"])
def test_known_recall_precision_and_ap(tmp_path: Path, kind: str) -> None:
    report = proposal_quality(_proposals(tmp_path / "p.pkl"), _gt_files(tmp_path)[kind])
    overall = report.overall
    assert (overall.keyframes, overall.gt_persons, overall.detections) == (3, 4, 4)
    assert overall.recall == pytest.approx({"0.3": 0.75, "0.5": 0.5, "0.7": 0.25})
    assert overall.precision == pytest.approx(0.5)
    # Ranked TP, FP, FP, TP: 0.25 x 1 + 0.25 x 0.5.
    assert overall.ap == pytest.approx(0.375)
    assert overall.empty_keyframes == 1 and report.recall_ceiling == pytest.approx(0.5)
    assert (report.missing_keyframes, report.extra_keyframes, report.scored) == (0, 1, True)
    video_a, video_b = report.per_video["vidA"], report.per_video["vidB"]
    assert video_a.recall["0.5"] == pytest.approx(2 / 3) and video_a.ap == pytest.approx(0.5)
    assert (video_b.gt_persons, video_b.detections, video_b.ap, video_b.empty_keyframes) == (1, 0, 0.0, 1)


def test_without_scores_ap_is_the_single_operating_point(tmp_path: Path) -> None:
    report = proposal_quality(_proposals(tmp_path / "p.pkl", scored=False), _gt_files(tmp_path)["pkl"])
    assert not report.scored and report.notes
    assert report.overall.ap == pytest.approx(0.25)  # precision 0.5 x recall 0.5
    assert "no detector scores" in format_table(report)


def test_ties_do_not_depend_on_order() -> None:
    scores = np.array([0.5, 0.5, 0.5, 0.9])
    first = precision_recall_curve(scores, np.array([True, False, False, True]), 4)
    second = precision_recall_curve(scores, np.array([False, False, True, True]), 4)
    np.testing.assert_allclose(first, second)
    assert average_precision(*first) == pytest.approx(0.25 * 1.0 + 0.25 * 0.5)


def test_report_is_printed_and_saved(tmp_path: Path) -> None:
    report = proposal_quality(_proposals(tmp_path / "p.pkl"), _gt_files(tmp_path)["pkl"])
    table = format_table(report)
    assert "overall" in table and "vidA" in table and "recall ceiling" in table and "50.00%" in table
    save_report(report, tmp_path / "q.json", tmp_path / "q.png")
    data = json.loads((tmp_path / "q.json").read_text())
    assert data["overall"]["ap"] == pytest.approx(0.375) and data["recall_ceiling"] == pytest.approx(0.5)
    assert (tmp_path / "q.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not list(tmp_path.glob(".*.tmp"))


def test_missing_ground_truth_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        proposal_quality(_proposals(tmp_path / "p.pkl"), tmp_path / "nope.csv")


def test_cli_prints_the_table_and_saves_beside_the_proposals(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    proposals = _proposals(tmp_path / "p.pkl")
    assert main(["--proposals", str(proposals), "--gt", str(_gt_files(tmp_path)["official"])]) == 0
    assert "recall ceiling" in capsys.readouterr().out
    assert (tmp_path / "p_quality.json").is_file() and (tmp_path / "p_quality.png").is_file()
