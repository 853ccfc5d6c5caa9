"""Given boxes of the video demo (``--boxes``): seconds or frames, pixels or normalised, track ids,
and a one-line error naming the file and line for every bad input."""
from __future__ import annotations

from pathlib import Path

import pytest

from common.errors import FormatError
from tools.video_boxes import boxes_from_pkl, read_boxes_csv

SIZE, FPS = (640, 360), 28.0


def _csv(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "boxes.csv"
    path.write_text(text)
    return path


def test_pixel_boxes_in_seconds_with_track_ids(tmp_path: Path) -> None:
    boxes = read_boxes_csv(_csv(tmp_path, "0.5,64,36,128,180,3\n\n# a comment\n1.5,0,0,640,360,4\n"), SIZE, FPS)
    assert [(box.time, box.track_id, box.line) for box in boxes] == [(0.5, 3, 1), (1.5, 4, 4)]
    assert boxes[0].box == pytest.approx((0.1, 0.1, 0.2, 0.5))
    assert boxes[1].box == (0.0, 0.0, 1.0, 1.0)


def test_frames_count_at_the_videos_own_rate_and_a_header_names_the_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, "frame,x1,y1,x2,y2\n56,0.1,0.1,0.3,0.9\n")
    boxes = read_boxes_csv(path, SIZE, FPS, normalised=True)
    assert boxes[0].time == pytest.approx(2.0) and boxes[0].track_id is None and boxes[0].line == 2
    flagged = read_boxes_csv(_csv(tmp_path, "56,0.1,0.1,0.3,0.9\n"), SIZE, FPS, "frame", True)
    assert flagged[0].time == pytest.approx(2.0)
    assert read_boxes_csv(_csv(tmp_path, "time_s,x1,y1,x2,y2\n2,1,1,5,5\n"), SIZE, FPS)[0].time == 2.0
    # A box a pixel past the border (rounding) is clipped, not refused.
    assert read_boxes_csv(_csv(tmp_path, "0,-1,0,641,360\n"), SIZE, FPS)[0].box == (0.0, 0.0, 1.0, 1.0)


@pytest.mark.parametrize("text,normalised,line,message", [
    ("0,1,2,3\n", False, 1, "expected 5 or 6 columns"),
    ("0,10,10,50,50\n1,a,10,50,50\n", False, 2, "column 'x1' is not numeric: 'a'"),
    ("0,10,10,5,50\n", False, 1, "is empty: x2 must exceed x1"),
    ("-1,10,10,50,50\n", False, 1, "time_s must be >= 0"),
    ("0,10,10,50,50,1\n1,10,10,50,50\n", False, 2, "either every line has a track_id or none has"),
    ("0,10,10,50,50,-2\n", False, 1, "track_id must be >= 0"),
    ("0,10,10,50,50,1.5\n", False, 1, "column 'track_id' must be an integer"),
    ("0,10,10,900,50\n", False, 1, r"lies outside the 640x360 video \(pixels\)"),
    ("0,0.1,0.1,0.5,0.5\n", False, 1, r"under a pixel; are these normalised boxes\? say so with --boxes-normalised"),
    ("0,10,10,50,50\n", True, 1, r"lies outside \[0, 1\] \(normalised\)"),
    ("when,x1,y1,x2,y2\n", False, 1, "the first column must be a number or the header 'time_s' or 'frame'"),
    ("0,nan,10,50,50\n", False, 1, "not a finite number"),
])
def test_bad_lines_are_named(tmp_path: Path, text: str, normalised: bool, line: int, message: str) -> None:
    path = _csv(tmp_path, text)
    with pytest.raises(FormatError, match=message) as error:
        read_boxes_csv(path, SIZE, FPS, normalised=normalised)
    assert error.value.line == line and str(error.value).startswith(f"{path}, line {line}: ")
    assert "\n" not in str(error.value)


def test_a_frame_column_must_hold_whole_frames_and_headers_must_agree_with_the_flag(tmp_path: Path) -> None:
    with pytest.raises(FormatError, match="line 1: column 'frame' must be an integer"):
        read_boxes_csv(_csv(tmp_path, "2.5,10,10,50,50\n"), SIZE, FPS, "frame")
    with pytest.raises(FormatError, match="line 1: the header says 'frame' but the boxes were declared as seconds"):
        read_boxes_csv(_csv(tmp_path, "frame,x1,y1,x2,y2\n3,10,10,50,50\n"), SIZE, FPS, "seconds")
    with pytest.raises(FormatError, match="line 1: boxes at frames need the video's frame rate"):
        read_boxes_csv(_csv(tmp_path, "3,10,10,50,50\n"), SIZE, None, "frame")
    with pytest.raises(FormatError, match="no box in the file"):
        read_boxes_csv(_csv(tmp_path, "time_s,x1,y1,x2,y2\n"), SIZE, FPS)
    with pytest.raises(FileNotFoundError, match="boxes csv not found"):
        read_boxes_csv(tmp_path / "missing.csv", SIZE, FPS)


def test_pkl_boxes_keep_ground_truth_ids_and_drop_proposal_zeros(tmp_path: Path) -> None:
    from formats.annotation_pkl import save_annotation_pkl

    def element(time: int, entries: list) -> dict:
        return {"video": "V", "time": time, "start_frame": 1, "n_frames": 50, "mid_frame": 25 * time + 1,
                "format_str": "V_%06d.png", "frame_rate": 25, "labels": entries}

    classes = [{"name": "a", "id": 1, "label_type": "PERSON_MOVEMENT"}]
    person = {"bounding_box": [0.1, 0.1, 0.3, 0.5], "label": [0], "person_id": [4]}
    other = {"bounding_box": [0.5, 0.1, 0.7, 0.5], "label": [0], "person_id": [9]}
    truth = tmp_path / "gt.pkl"
    # Per-row layout: the same person on two rows of one keyframe is one box.
    save_annotation_pkl(truth, [element(1, [person]), element(1, [person]), element(1, [other])], classes)
    boxes = boxes_from_pkl(truth, "V")
    assert sorted((box.time, box.track_id) for box in boxes) == [(1.0, 4), (1.0, 9)]
    proposals = tmp_path / "proposals.pkl"
    zero = [{**entry, "person_id": [0]} for entry in (person, other)]
    save_annotation_pkl(proposals, [element(1, zero)], classes)
    assert [box.track_id for box in boxes_from_pkl(proposals, "V")] == [None, None]
    with pytest.raises(ValueError, match="has no keyframe of video 'W'"):
        boxes_from_pkl(truth, "W")
