"""Readers and writers of the evaluator's csv files (formats.eval_csv): round-trips and bad input."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from common.errors import FormatError
from formats.eval_csv import (
    GroundTruth,
    Predictions,
    format_predict_row,
    read_exclusions,
    read_ground_truth_csv,
    read_predict_csv,
    write_exclusions,
    write_ground_truth_csv,
    write_predict_csv,
)

GOOD_PREDICT = "vidA,902,0.100,0.200,0.300,0.400,3,0.875\nvidB,0903,0.000,0.000,1.000,1.000,50,0.010\n"
GOOD_GT = "vidA,0902,0.1,0.2,0.3,0.4,3,7\nvidA,0902,0.1,0.2,0.3,0.4,5,7\n"


def _random_predictions(rng: np.random.Generator, count: int) -> Predictions:
    boxes = np.round(np.sort(rng.random((count, 4)), axis=1), 3)
    return Predictions(
        video=[f"v{index % 7}" for index in range(count)],
        time=rng.integers(0, 1200, count),
        boxes=boxes,
        class_id=rng.integers(1, 51, count),
        score=np.round(rng.random(count), 3),
    )


def test_predict_round_trip(tmp_path: Path) -> None:
    preds = _random_predictions(np.random.default_rng(0), 500)
    path = tmp_path / "predict.csv"
    write_predict_csv(path, preds)
    back = read_predict_csv(path)
    assert back.video == preds.video
    np.testing.assert_array_equal(back.time, preds.time)
    np.testing.assert_allclose(back.boxes, preds.boxes, atol=5e-4)
    np.testing.assert_array_equal(back.class_id, preds.class_id)
    np.testing.assert_allclose(back.score, preds.score, atol=5e-4)
    assert back.time.dtype == np.int64 and back.boxes.shape == (500, 4) and back.score.dtype == np.float64
    # No temp file left behind by the atomic writer.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["predict.csv"]


def test_predict_row_format() -> None:
    line = format_predict_row("vid", 902.0, (0.1, 0.25, 0.5, 1.0), 7, 0.12345)
    assert line == "vid,902,0.100,0.250,0.500,1.000,7,0.123"


def test_ground_truth_round_trip_is_exact(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    gt = GroundTruth(video=["a", "b", "c"], time=[5, 902, 1100], boxes=np.sort(rng.random((3, 4)), axis=1),
                     class_id=[1, 2, 50], person_id=[0, 3, 9])
    path = tmp_path / "gt.csv"
    write_ground_truth_csv(path, gt)
    assert path.read_text().splitlines()[0].split(",")[1] == "0005"
    back = read_ground_truth_csv(path)
    assert back.video == gt.video
    np.testing.assert_array_equal(back.boxes, gt.boxes)
    np.testing.assert_array_equal(back.time, gt.time)
    np.testing.assert_array_equal(back.class_id, gt.class_id)
    np.testing.assert_array_equal(back.person_id, gt.person_id)


def test_times_are_normalised(tmp_path: Path) -> None:
    path = tmp_path / "predict.csv"
    path.write_text(GOOD_PREDICT)
    preds = read_predict_csv(path)
    assert preds.time.tolist() == [902, 903]
    gt_path = tmp_path / "gt.csv"
    gt_path.write_text(GOOD_GT + "\nvidB,902.0,0,0,1,1,4\n")  # blank line skipped; 7 columns allowed
    gt = read_ground_truth_csv(gt_path)
    assert gt.time.tolist() == [902, 902, 902]
    assert gt.person_id.tolist() == [7, 7, -1]


def test_exclusions_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "exclude.csv"
    path.write_text("vidA,0902\nvidB,17\n")
    assert read_exclusions(path) == {("vidA", 902), ("vidB", 17)}
    write_exclusions(tmp_path / "out.csv", {("vidB", 17), ("vidA", 902)})
    assert (tmp_path / "out.csv").read_text() == "vidA,0902\nvidB,0017\n"
    (tmp_path / "empty.csv").write_text("")
    assert read_exclusions(tmp_path / "empty.csv") == set()


@pytest.mark.parametrize("bad_line,fragment", [
    ("vidC,904,0.1,0.2,0.3,0.4,3", "columns"),
    ("vidC,904,0.1,0.2,0.3,0.4,3,0.5,9", "columns"),
    ("vidC,904,0.1,abc,0.3,0.4,3,0.5", "not numeric"),
    ("vidC,904,0.1,0.2,0.3,0.4,3.5,0.5", "integer"),
    ("vidC,904,0.1,0.2,0.3,0.4,x,0.5", "not numeric"),
    ("vidC,904,0.1,0.2,0.3,0.4,3,nan", "finite"),
    ("vidC,,0.1,0.2,0.3,0.4,3,0.5", "not numeric"),
    (",904,0.1,0.2,0.3,0.4,3,0.5", "video"),
])
def test_bad_predict_row_names_file_and_line(tmp_path: Path, bad_line: str, fragment: str) -> None:
    path = tmp_path / "predict.csv"
    path.write_text(GOOD_PREDICT + bad_line + "\n" + GOOD_PREDICT)
    with pytest.raises(FormatError) as info:
        read_predict_csv(path)
    assert info.value.line == 3
    assert str(path) in str(info.value) and "line 3" in str(info.value)
    assert fragment in str(info.value)


@pytest.mark.parametrize("bad_line,fragment", [
    ("vidC,0904,0.1,0.2,0.3,0.4", "columns"),
    ("vidC,0904,0.1,0.2,0.3,0.4,2.5,1", "integer"),
    ("vidC,0904,0.1,0.2,0.3,0.4,2,x", "not numeric"),
    ("vidC,09a4,0.1,0.2,0.3,0.4,2,1", "not numeric"),
])
def test_bad_ground_truth_row_names_file_and_line(tmp_path: Path, bad_line: str, fragment: str) -> None:
    path = tmp_path / "gt.csv"
    path.write_text(GOOD_GT + bad_line + "\n")
    with pytest.raises(FormatError) as info:
        read_ground_truth_csv(path)
    assert info.value.line == 3 and str(path) in str(info.value) and fragment in str(info.value)


def test_bad_exclusions_row(tmp_path: Path) -> None:
    path = tmp_path / "exclude.csv"
    path.write_text("vidA,0902\nvidB,noon\n")
    with pytest.raises(FormatError, match="line 2"):
        read_exclusions(path)


@pytest.mark.parametrize("reader", [read_predict_csv, read_ground_truth_csv])
def test_empty_and_missing_files(tmp_path: Path, reader) -> None:
    empty = tmp_path / "empty.csv"
    empty.write_text("")
    with pytest.raises(FormatError, match="empty file") as info:
        reader(empty)
    assert str(empty) in str(info.value)
    blank = tmp_path / "blank.csv"
    blank.write_text("\n\n")
    with pytest.raises(FormatError, match="empty file"):
        reader(blank)
    with pytest.raises(FileNotFoundError, match="nope.csv"):
        reader(tmp_path / "nope.csv")
    with pytest.raises(FileNotFoundError):
        read_exclusions(tmp_path / "nope.csv")


def test_columns_are_checked_for_length() -> None:
    with pytest.raises(ValueError, match="rows"):
        Predictions(video=["a", "b"], time=[1], boxes=np.zeros((2, 4)), class_id=[1, 2], score=[0.1, 0.2])


@pytest.mark.parametrize("reader", [read_predict_csv, read_ground_truth_csv, read_exclusions])
def test_binary_file_is_a_format_error(tmp_path: Path, reader) -> None:
    path = tmp_path / "binary.csv"
    path.write_bytes(b"vidA,902\n\xff\xfe\x00\x01,3\n")
    with pytest.raises(FormatError, match="UTF-8") as info:
        reader(path)
    assert str(path) in str(info.value)
