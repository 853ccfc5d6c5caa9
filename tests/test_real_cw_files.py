"""The data path on real rows of the published Chaotic World files (tests/data/cw, source in its README).

The expected outputs are what the original's data scripts compute, restated here from their
behaviour (SlowFast-Meet-ViT ``tools/cw_pkl.py`` with every line of the real file read, and
``tools/make_csv.py``), so that the csv -> pkl -> evaluator csv -> calc_mAP path is checked on files
we did not write.
"""
from __future__ import annotations

import csv
import logging
import subprocess
import sys
from pathlib import Path

import pytest

from common.errors import FormatError
from evaluation import run_evaluation
from evaluation.exclusions import check_exclusion_units
from formats.annotation_pkl import load_annotation_pkl
from formats.eval_csv import read_exclusions, read_ground_truth_csv
from formats.official_csv import read_official_csv
from formats.pbtxt import read_label_map_entries
from tools import csv_to_pkl, gt_csv
from tools.csv_to_pkl import convert_csv_to_pkl

ROOT = Path(__file__).parents[1]
DATA = Path(__file__).parent / "data" / "cw"
VAL_CSV, TRAIN_CSV = DATA / "chaos_test_1fps_excerpt.csv", DATA / "chaos_train_1fps_excerpt.csv"
VAL_EXCLUDE, TRAIN_EXCLUDE = DATA / "chaos_test_exclude.csv", DATA / "chaos_train_exclude.csv"
LABEL_MAP = DATA / "list_action.pbtxt"
CW_CLASSES = ROOT / "datasets" / "cw_classes.txt"


def _lines(path: Path) -> list[list[str]]:
    with path.open(newline="") as handle:
        return list(csv.reader(handle))


def _original_elements(path: Path, drop: str | None = None) -> list[dict]:
    """One element per line of the file, fields as the original's cw_pkl.py fills them."""
    return [{"video": f[0], "time": int(float(f[-3])), "start_frame": int(f[-5]), "n_frames": int(f[-4]) - int(f[-5]),
             "mid_frame": int(f[1]), "format_str": f[0] + "_%06d.png", "frame_rate": 25,
             "labels": [{"bounding_box": [float(v) for v in f[2:6]], "label": [int(f[6])], "person_id": [int(f[7])]}]}
            for f in _lines(path) if f[0] != drop]


def _original_ground_truth(path: Path) -> list[list[str]]:
    """The fields of the original's make_csv.py output: ``vid, %04d time, x1..y2 as floats, label + 1, pid``."""
    return [[f[0], "%04d" % int(float(f[-3])), *(str(float(v)) for v in f[2:6]), str(int(f[6]) + 1), str(int(f[7]))]
            for f in _lines(path)]


def test_the_published_csvs_start_with_data() -> None:
    for path, count in ((VAL_CSV, 299), (TRAIN_CSV, 293)):
        rows = read_official_csv(path)
        assert len(rows) == count == len(_lines(path)), "line 1 is data: nothing may be skipped"
        first = _lines(path)[0]
        assert (rows[0].video, rows[0].keyframe) == (first[0], int(first[1]))
        assert all(row.time * 25 == row.keyframe for row in rows)
        assert all(row.window_seconds == (round(row.start_frame / 25, 2), round(row.end_frame / 25, 2)) for row in rows)


@pytest.mark.parametrize("csv_path, drop", [(VAL_CSV, None), (TRAIN_CSV, "XGXJVBCQ")])
def test_per_row_pkl_is_the_originals(tmp_path: Path, csv_path: Path, drop: str | None) -> None:
    out = tmp_path / "per_row.pkl"
    stats = convert_csv_to_pkl(csv_path, LABEL_MAP, out, drop_videos=[drop] if drop else [])
    loaded = load_annotation_pkl(out)
    assert loaded.elements == _original_elements(csv_path, drop)
    assert stats["elements"] == len(_lines(csv_path)) - (187 if drop else 0)
    # The original's classes list: ids 1..50 in order, every type PERSON_MOVEMENT.
    assert [c["id"] for c in loaded.classes] == list(range(1, 51))
    assert {c["label_type"] for c in loaded.classes} == {"PERSON_MOVEMENT"}


def test_a_header_line_prepended_changes_nothing(tmp_path: Path) -> None:
    """A derived file written by pandas with a header (as the original's _woXGXJVBCQ.csv) reads the same rows."""
    derived = tmp_path / "derived.csv"
    derived.write_text("video_id,frame,x1,y1,x2,y2,action,person,start,end,time,t1,t2\n" + VAL_CSV.read_text())
    assert read_official_csv(derived) == read_official_csv(VAL_CSV)


def test_evaluator_ground_truth_is_the_originals(tmp_path: Path) -> None:
    out = tmp_path / "chaos_test_t_+1.csv"
    assert gt_csv.main(["--csv", str(VAL_CSV), "--out", str(out), "--labelmap", str(LABEL_MAP)]) == 0
    assert _lines(out) == _original_ground_truth(VAL_CSV)


def test_final_version_cut_is_refused_naming_the_full_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = DATA / "chaos_test_1fps_final_version_head.csv"
    with pytest.raises(FormatError, match="use the 13-column chaos_test_1fps_head.csv"):
        read_official_csv(path)
    out = tmp_path / "unused.pkl"
    assert csv_to_pkl.main(["--csv", str(path), "--labelmap", str(LABEL_MAP), "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "line 1: 8 columns" in err[0] and not out.exists()


def test_the_published_label_map() -> None:
    entries = read_label_map_entries(LABEL_MAP)
    names = dict(line.split("\t") for line in CW_CLASSES.read_text().splitlines() if line.strip())
    assert [(e.class_id, e.name) for e in entries] == [(int(k), v) for k, v in names.items()]
    assert {e.label_type for e in entries} == {"PERSON_MOVEMENT"}


def test_merge_counts_keyframes_and_rows_whose_window_differs(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    windows: dict[tuple[str, str], list[tuple[str, str]]] = {}
    for f in _lines(VAL_CSV):
        windows.setdefault((f[0], f[10]), []).append((f[8], f[9]))
    differing = {key: sum(w != rows[0] for w in rows) for key, rows in windows.items() if len(set(rows)) > 1}
    assert differing, "the excerpt holds keyframes whose rows carry different clip windows"
    with caplog.at_level(logging.WARNING, logger="tools.csv_to_pkl"):
        convert_csv_to_pkl(VAL_CSV, LABEL_MAP, tmp_path / "merged.pkl", merge=True)
    assert (f"{len(differing)} keyframe(s) have rows whose clip window differs from their first row's "
            f"({sum(differing.values())} row(s) in all)") in caplog.text


# ----------------------------------------------------------------------------- exclusions


@pytest.mark.parametrize("csv_path, exclude, keyframes, rows, literal", [
    (VAL_CSV, VAL_EXCLUDE, 43, 223, {("DOJPDVAC", 25)}),
    (TRAIN_CSV, TRAIN_EXCLUDE, 51, 51, {("VHNWTWHG", 50)}),
])
def test_published_exclusions_are_frame_numbers(csv_path: Path, exclude: Path, keyframes: int, rows: int,
                                                literal: set) -> None:
    official = read_official_csv(csv_path)
    truth = {(row.video, int(row.time)) for row in official}
    keys = read_exclusions(exclude)
    assert len(keys) == keyframes and len(exclude.read_text().splitlines()) == rows
    assert keys & truth == literal, "read as seconds, only a wrong keyframe matches"
    units = check_exclusion_units(keys, truth)
    assert units.look_like_frames and units.as_frames == keyframes and units.as_seconds == len(literal)
    converted = gt_csv.exclusions_in_seconds(exclude, official)
    assert converted == {(video, frame // 25) for video, frame in keys}
    assert sum((row.video, int(row.time)) in converted for row in official) == rows


def test_converted_exclusions_remove_the_223_rows_meant(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    gt, seconds = tmp_path / "chaos_test_t_+1.csv", tmp_path / "chaos_test_exclude_seconds.csv"
    assert gt_csv.main(["--csv", str(VAL_CSV), "--out", str(gt), "--exclusions", str(VAL_EXCLUDE),
                        "--exclusions-out", str(seconds)]) == 0
    assert "43 excluded keyframes in seconds (223 ground-truth rows in them)" in capsys.readouterr().out
    assert seconds.read_text().splitlines()[:2] == ["DOJPDVAC,0001", "DOJPDVAC,0002"]
    # The ground truth scored as its own predictions: every kept row is a true positive.
    truth = read_ground_truth_csv(gt)
    predict = tmp_path / "predict.csv"
    predict.write_text("".join(f"{v},{t},{b[0]},{b[1]},{b[2]},{b[3]},{c},0.9\n" for v, t, b, c in
                               zip(truth.video, truth.time.tolist(), truth.boxes.tolist(), truth.class_id.tolist())))
    result = run_evaluation(LABEL_MAP, gt, predict, seconds, capacity=0)
    assert result.mAP == 1.0
    assert result.counts["gt_rows_excluded"] == 223 and result.counts["gt_rows_evaluated"] == 299 - 223
    # Converting a file already in seconds is refused rather than done twice.
    with pytest.raises(FormatError, match="already in seconds"):
        gt_csv.exclusions_in_seconds(seconds, read_official_csv(VAL_CSV))


def test_calc_map_says_what_the_downloaded_exclusions_do(tmp_path: Path) -> None:
    """Read literally (the original's reading, kept), one wrong keyframe goes; the warning says so in one line."""
    gt = tmp_path / "gt.csv"
    gt_csv.write_evaluator_ground_truth(VAL_CSV, gt)
    predict = tmp_path / "predict.csv"
    predict.write_text("DOJPDVAC,25,0.1,0.1,0.2,0.2,1,0.5\n")
    done = subprocess.run([sys.executable, str(ROOT / "calc_mAP.py"), "-l", str(LABEL_MAP), "-g", str(gt),
                           "-d", str(predict), "-e", str(VAL_EXCLUDE)], capture_output=True, text=True, check=True)
    warnings = [line for line in done.stderr.splitlines() if "excluded keyframes" in line]
    assert len(warnings) == 1
    assert ("42 of 43 excluded keyframes match no ground-truth keyframe; they look like frame numbers at 25 fps"
            in warnings[0])
    assert "tools.gt_csv" in warnings[0] and "1 keyframe(s) are excluded" in warnings[0]
    assert "(1 excluded," in done.stdout


def test_exclusions_in_seconds_raise_no_warning(caplog: pytest.LogCaptureFixture) -> None:
    """AVA's excluded timestamps (seconds, mostly keyframes without ground truth) are not taken for frames."""
    ava = ROOT / "tests" / "data" / "ava"
    with caplog.at_level(logging.WARNING, logger="evaluation.api"):
        run_evaluation(ava / "ava_action_list_v2.2_head.pbtxt", ava / "eval" / "ava_val_mini_v2.2.csv",
                       ava / "eval" / "predict_mini.csv", ava / "eval" / "ava_val_mini_excluded_timestamps_v2.2.csv")
    assert "frame numbers" not in caplog.text
