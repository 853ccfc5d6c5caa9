"""tools/ data preparation: csv -> pkl (merged and per row), ground-truth csv, pkl -> csv, data check."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from PIL import Image

from common.errors import FormatError
from formats.annotation_pkl import classes_from_label_map, load_annotation_pkl, save_annotation_pkl
from formats.eval_csv import read_ground_truth_csv
from formats.pbtxt import read_label_map
from tools import check_data, csv_to_pkl, gt_csv, pkl_to_csv
from tools.check_data import check_dataset
from tools.csv_to_pkl import convert_csv_to_pkl

DATA = Path(__file__).parent / "data" / "formats"
MINI_CSV = DATA / "chaos_mini_1fps.csv"
LABEL_MAP = DATA / "list_action.pbtxt"


def _element(video: str, time: int, start: int, n_frames: int, mid: int, labels: list[dict]) -> dict:
    return {"video": video, "time": time, "start_frame": start, "n_frames": n_frames, "mid_frame": mid,
            "format_str": f"{video}_%06d.png", "frame_rate": 25, "labels": labels}


def _entry(box: list[float], labels: list[int], person: int) -> dict:
    return {"bounding_box": box, "label": labels, "person_id": [person]}


# The fixture's rows, in file order, as (video, time, start, n_frames, keyframe, box, label, person).
ROWS = [
    ("vidB", 2, 19, 64, 50, [0.1, 0.2, 0.3, 0.6], 45, 1),
    ("vidB", 2, 19, 64, 50, [0.1, 0.2, 0.3, 0.6], 36, 1),
    ("vidB", 2, 19, 64, 50, [0.5, 0.1, 0.7, 0.9], 46, 2),
    ("vidA", 1, 1, 57, 25, [0.0, 0.0, 0.5, 0.5], 22, 7),
    ("vidB", 1, 1, 57, 25, [0.1, 0.25, 0.3, 0.65], 45, 1),
    ("vidB", 2, 19, 64, 50, [0.1, 0.2, 0.3, 0.6], 45, 1),
    ("vidB", 2, 19, 64, 50, [0.12, 0.2, 0.3, 0.6], 29, 1),
    ("XGXJVBCQ", 1, 1, 57, 25, [0.2, 0.2, 0.4, 0.9], 46, 3),
    ("vidA", 1, 1, 57, 25, [0.6, 0.1, 0.9, 0.8], 13, 8),
]

MERGED = [
    _element("vidB", 1, 1, 57, 25, [_entry([0.1, 0.25, 0.3, 0.65], [45], 1)]),
    _element("vidB", 2, 19, 64, 50, [
        _entry([0.1, 0.2, 0.3, 0.6], [36, 45], 1),
        _entry([0.5, 0.1, 0.7, 0.9], [46], 2),
        _entry([0.12, 0.2, 0.3, 0.6], [29], 1),  # same person id, other box: kept apart
    ]),
    _element("vidA", 1, 1, 57, 25, [_entry([0.0, 0.0, 0.5, 0.5], [22], 7), _entry([0.6, 0.1, 0.9, 0.8], [13], 8)]),
    _element("XGXJVBCQ", 1, 1, 57, 25, [_entry([0.2, 0.2, 0.4, 0.9], [46], 3)]),
]

GT_LINES = [
    "vidB,0002,0.1,0.2,0.3,0.6,46,1",
    "vidB,0002,0.1,0.2,0.3,0.6,37,1",
    "vidB,0002,0.5,0.1,0.7,0.9,47,2",
    "vidA,0001,0.0,0.0,0.5,0.5,23,7",
    "vidB,0001,0.1,0.25,0.3,0.65,46,1",
    "vidB,0002,0.1,0.2,0.3,0.6,46,1",
    "vidB,0002,0.12,0.2,0.3,0.6,30,1",
    "XGXJVBCQ,0001,0.2,0.2,0.4,0.9,47,3",
    "vidA,0001,0.6,0.1,0.9,0.8,14,8",
]


# ----------------------------------------------------------------------------- csv -> pkl


def test_merged_conversion_gives_one_element_per_keyframe(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    out = tmp_path / "merged.pkl"
    with caplog.at_level(logging.WARNING, logger="tools.csv_to_pkl"):
        stats = convert_csv_to_pkl(MINI_CSV, LABEL_MAP, out, merge=True)
    loaded = load_annotation_pkl(out)
    assert loaded.elements == MERGED
    assert loaded.classes == classes_from_label_map(read_label_map(LABEL_MAP))
    assert "vidB t=2 person 1" in caplog.text
    assert stats == {"rows": 9, "dropped_rows": 0, "videos": 3, "keyframes": 4, "elements": 4, "boxes": 7,
                     "persons": 7, "label_histogram": {13: 1, 22: 1, 29: 1, 36: 1, 45: 2, 46: 2}}


def test_default_conversion_reproduces_the_original_per_row_layout(tmp_path: Path) -> None:
    out = tmp_path / "per_row.pkl"
    stats = convert_csv_to_pkl(MINI_CSV, LABEL_MAP, out)
    expected = [_element(v, t, s, n, k, [_entry(box, [label], person)]) for v, t, s, n, k, box, label, person in ROWS]
    elements = load_annotation_pkl(out).elements
    assert elements == expected
    # The original's tools/cw_pkl.py: one element per csv row, each with one box and one label.
    assert len(elements) == len(ROWS) == stats["rows"]
    assert all(len(e["labels"]) == 1 and len(e["labels"][0]["label"]) == 1 for e in elements)
    assert stats["elements"] == 9 and stats["keyframes"] == 4 and stats["persons"] == 7
    assert stats["label_histogram"][45] == 3  # the duplicated row counts twice, as in the original's files
    explicit = tmp_path / "explicit.pkl"
    convert_csv_to_pkl(MINI_CSV, LABEL_MAP, explicit, merge=False)
    assert load_annotation_pkl(explicit).elements == expected


def test_drop_video_and_known_videos(tmp_path: Path) -> None:
    out = tmp_path / "wo.pkl"
    with pytest.raises(FormatError, match="unknown video 'XGXJVBCQ'") as info:
        convert_csv_to_pkl(MINI_CSV, LABEL_MAP, out, known_videos={"vidA", "vidB"})
    assert info.value.line == 8 and not out.exists()
    stats = convert_csv_to_pkl(MINI_CSV, LABEL_MAP, out, merge=True, drop_videos=["XGXJVBCQ"],
                               known_videos={"vidA", "vidB"})
    assert load_annotation_pkl(out).elements == MERGED[:3]
    assert stats["rows"] == 9 and stats["dropped_rows"] == 1 and stats["elements"] == 3


def test_csv_to_pkl_cli(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    frames = tmp_path / "frames"
    for video in ("vidA", "vidB"):
        (frames / video).mkdir(parents=True)
    out = tmp_path / "cw_data_train1fps_woXGXJVBCQ.pkl"
    argv = ["--csv", str(MINI_CSV), "--labelmap", str(LABEL_MAP), "--out", str(out),
            "--drop-video", "XGXJVBCQ", "--frames-root", str(frames)]
    assert csv_to_pkl.main(argv) == 0
    assert "8 elements, 3 keyframes" in capsys.readouterr().out
    elements = load_annotation_pkl(out).elements
    assert len(elements) == 8 and {e["video"] for e in elements} == {"vidA", "vidB"}
    # --per-row is the default now, still accepted; --merge opts in to one element per keyframe.
    alias = tmp_path / "alias.pkl"
    assert csv_to_pkl.main([*argv[:5], str(alias), *argv[6:], "--per-row"]) == 0
    assert load_annotation_pkl(alias).elements == elements
    merged = tmp_path / "merged.pkl"
    assert csv_to_pkl.main([*argv[:5], str(merged), *argv[6:], "--merge"]) == 0
    assert "3 elements, 3 keyframes" in capsys.readouterr().out
    assert load_annotation_pkl(merged).elements == MERGED[:3]
    with pytest.raises(SystemExit):
        csv_to_pkl.main([*argv, "--merge", "--per-row"])
    assert "not allowed with argument" in capsys.readouterr().err


# ----------------------------------------------------------------------------- ground-truth csv


def test_ground_truth_csv_lines(tmp_path: Path) -> None:
    out = tmp_path / "chaos_test_t_+1.csv"
    assert gt_csv.write_evaluator_ground_truth(MINI_CSV, out) == {"rows": 9}
    assert out.read_text().splitlines() == GT_LINES
    gt = read_ground_truth_csv(out)
    assert gt.class_id.min() >= 1 and gt.class_id.tolist()[:2] == [46, 37]


def test_ground_truth_cli_drops_videos(tmp_path: Path) -> None:
    out = tmp_path / "gt.csv"
    assert gt_csv.main(["--csv", str(MINI_CSV), "--out", str(out), "--drop-video", "XGXJVBCQ",
                        "--labelmap", str(LABEL_MAP)]) == 0
    assert out.read_text().splitlines() == [line for line in GT_LINES if not line.startswith("XGXJVBCQ")]


def test_pkl_to_csv_per_row_gives_back_the_csv_lines(tmp_path: Path) -> None:
    convert_csv_to_pkl(MINI_CSV, LABEL_MAP, tmp_path / "per_row.pkl")
    assert pkl_to_csv.main(["--pkl", str(tmp_path / "per_row.pkl"), "--out", str(tmp_path / "a.csv")]) == 0
    assert (tmp_path / "a.csv").read_text().splitlines() == GT_LINES


def test_pkl_to_csv_merged_gives_each_person_label_once(tmp_path: Path) -> None:
    convert_csv_to_pkl(MINI_CSV, LABEL_MAP, tmp_path / "merged.pkl", merge=True)
    assert pkl_to_csv.convert_pkl_to_csv(tmp_path / "merged.pkl", tmp_path / "m.csv") == 8
    assert (tmp_path / "m.csv").read_text().splitlines() == [
        "vidB,0001,0.1,0.25,0.3,0.65,46,1",
        "vidB,0002,0.1,0.2,0.3,0.6,37,1",
        "vidB,0002,0.1,0.2,0.3,0.6,46,1",
        "vidB,0002,0.5,0.1,0.7,0.9,47,2",
        "vidB,0002,0.12,0.2,0.3,0.6,30,1",
        "vidA,0001,0.0,0.0,0.5,0.5,23,7",
        "vidA,0001,0.6,0.1,0.9,0.8,14,8",
        "XGXJVBCQ,0001,0.2,0.2,0.4,0.9,47,3",
    ]


# ----------------------------------------------------------------------------- data check

# Two elements of 12-frame windows; a crop of size 8, step 2 reads frames start+2 .. start+8, every 2nd.
WINDOW = 12


def _dataset(tmp_path: Path) -> tuple[Path, Path]:
    """A pkl with two keyframes of one video and all 30 frames (8x6 PNGs) on disk."""
    frames = tmp_path / "frames"
    (frames / "vidA").mkdir(parents=True)
    for index in range(1, 31):
        Image.new("RGB", (8, 6), (index * 8, 0, 0)).save(frames / "vidA" / f"vidA_{index:06d}.png")
    box = _entry([0.1, 0.1, 0.5, 0.9], [3], 1)
    elements = [_element("vidA", 1, 1, WINDOW, 7, [box]), _element("vidA", 2, 15, WINDOW, 21, [box, box])]
    pkl = tmp_path / "a.pkl"
    save_annotation_pkl(pkl, elements, classes_from_label_map(read_label_map(LABEL_MAP)))
    return pkl, frames


def test_clip_frame_indices_follow_the_temporal_center_crop() -> None:
    element = _element("vidA", 2, 15, WINDOW, 21, [])
    assert check_data.clip_frame_indices(element, 8, 2) == [17, 19, 21, 23]
    assert check_data.clip_frame_indices(element, None, 2) == list(range(15, 27))
    assert check_data.clip_frame_indices(_element("v", 1, 1, 57, 26, []), 64, 2)[-3:] == [2, 4, 6]


def test_check_data_passes_on_a_complete_dataset(tmp_path: Path) -> None:
    pkl, frames = _dataset(tmp_path)
    report = check_dataset(pkl, frames, decode="all", temporal_size=8, temporal_step=2, progress=False)
    assert report.ok
    assert (report.elements, report.keyframes, report.boxes, report.videos) == (2, 2, 3, 1)
    assert report.frames_read == 8 and report.decoded == 8 and report.frame_sizes == {"8x6": 8}
    sampled = check_dataset(pkl, frames, temporal_size=8, temporal_step=2, progress=False)
    assert sampled.decoded == 3


def test_check_data_names_the_first_missing_frame_and_its_element(tmp_path: Path) -> None:
    pkl, frames = _dataset(tmp_path)
    (frames / "vidA" / "vidA_000016.png").unlink()  # in the window of element 1, not read by its crop
    assert check_dataset(pkl, frames, temporal_size=8, temporal_step=2, progress=False).ok
    (frames / "vidA" / "vidA_000019.png").unlink()  # read by element 1's crop
    with pytest.raises(FileNotFoundError, match=r"vidA_000019\.png, read by element 1 \(video 'vidA', time 2\)"):
        check_dataset(pkl, frames, temporal_size=8, temporal_step=2, progress=False)
    report = check_dataset(pkl, frames, temporal_size=None, strict=False, progress=False)
    assert report.missing_frames == 2 and not report.ok
    assert report.missing_examples[0].startswith(str(frames / "vidA" / "vidA_000016.png"))


def test_check_data_missing_video_folder(tmp_path: Path) -> None:
    pkl, frames = _dataset(tmp_path)
    (frames / "vidA").rename(frames / "other")
    with pytest.raises(FileNotFoundError, match=r"videos without a folder: \['vidA'\]"):
        check_dataset(pkl, frames, temporal_size=8, temporal_step=2, progress=False)


def test_check_data_reports_a_corrupt_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    pkl, frames = _dataset(tmp_path)
    corrupt = frames / "vidA" / "vidA_000005.png"
    corrupt.write_bytes(corrupt.read_bytes()[:40])  # truncated mid-file, as after a killed extraction
    assert check_dataset(pkl, frames, decode="none", temporal_size=8, temporal_step=2, progress=False).ok
    with pytest.raises(FormatError, match=r"vidA_000005\.png: cannot decode .* element 0 \(video 'vidA', time 1\)"):
        check_dataset(pkl, frames, decode="all", temporal_size=8, temporal_step=2, progress=False)
    json_path = tmp_path / "report.json"
    argv = ["--pkl", str(pkl), "--frames", str(frames), "--decode", "all", "--temporal-size", "8",
            "--no-strict", "--json", str(json_path)]
    assert check_data.main(argv) == 1
    saved = json.loads(json_path.read_text())
    assert saved["undecodable"] == 1 and saved["ok"] is False and saved["decoded"] == 8
    assert "PROBLEMS FOUND" in capsys.readouterr().out


def test_check_data_rejects_a_malformed_pkl(tmp_path: Path) -> None:
    pkl = tmp_path / "bad.pkl"
    pkl.write_bytes(b"junk")
    with pytest.raises(FormatError, match="not a readable pickle"):
        check_dataset(pkl, tmp_path, progress=False)
    with pytest.raises(ValueError, match="decode must be one of"):
        check_dataset(pkl, tmp_path, decode="some")


def test_prepare_synthetic_cli_makes_a_dataset_that_passes_the_data_check(tmp_path: Path, capsys) -> None:
    from tools import prepare_synthetic

    root = tmp_path / "cw"
    assert prepare_synthetic.main([str(root), "--train-videos", "1", "--val-videos", "1", "--seconds", "3"]) == 0
    assert "prepared" in capsys.readouterr().out
    annotations = root / "AR_ava_format"
    for name in (*prepare_synthetic.MERGED_PKL_NAMES.values(), "chaos_test_t_+1.csv", "list_action.pbtxt"):
        assert (annotations / name).is_file(), name
    assert len(list((root / "frames").rglob("*.png"))) == 2 * 3 * 25
    val = load_annotation_pkl(annotations / "cw_data_test1fps_merged.pkl")
    assert len(val.elements) >= 1 and all(element["labels"] for element in val.elements)
    for split in ("train", "test"):
        report = check_dataset(annotations / f"cw_data_{split}1fps_merged.pkl", root / "frames", decode="all",
                               progress=False)
        assert report.ok, split
