"""formats/: round trips read(write(x)) == x, and every bad input names its file and line."""
from __future__ import annotations

import pickle
import re
from pathlib import Path

import numpy as np
import pytest

from common.atomic import atomic_open, write_text_atomic
from common.errors import FormatError
from formats.annotation_pkl import classes_from_label_map, load_annotation_pkl, save_annotation_pkl
from formats.eval_csv import (
    GroundTruth,
    Predictions,
    read_exclusions,
    read_ground_truth_csv,
    read_predict_csv,
    write_exclusions,
    write_ground_truth_csv,
    write_predict_csv,
)
from formats.official_csv import COLUMNS, OfficialRow, read_official_csv, write_official_csv, write_official_exclusions
from formats.pbtxt import read_label_map, write_label_map

DATA = Path(__file__).parent / "data" / "formats"
MINI_CSV = DATA / "chaos_mini_1fps.csv"
LABEL_MAP = DATA / "list_action.pbtxt"
GOOD_ROW = "vidA,000025,0.1,0.2,0.3,0.6,45,1,1,58,1.0,0.04,2.32"


# ----------------------------------------------------------------------------- pbtxt


def test_label_map_fixture_holds_the_50_cw_classes() -> None:
    labels = read_label_map(LABEL_MAP)
    assert sorted(labels) == list(range(1, 51))
    assert labels[1] == "aiming weapon" and labels[46] == "walking" and labels[50] == "waving hands"


def test_label_map_round_trip(tmp_path: Path) -> None:
    labels = {3: "b/c", 1: "a b", 50: "z"}
    write_label_map(tmp_path / "map.pbtxt", labels)
    assert read_label_map(tmp_path / "map.pbtxt") == labels


@pytest.mark.parametrize("text, line, fragment", [
    ('item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n}\n', 5, "without"),
    ('item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n  id: 1\n}\n', 5, "duplicate class id 1"),
    ('item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n  id: 2\n', 4, "after the last item"),
    ('garbage\nitem {\n  name: "a"\n  id: 1\n}\n', 2, "outside an item"),
])
def test_label_map_errors_name_file_and_line(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / "bad.pbtxt"
    path.write_text(text)
    with pytest.raises(FormatError, match=fragment) as info:
        read_label_map(path)
    assert info.value.line == line and str(path) in str(info.value)


def test_label_map_comments_are_allowed(tmp_path: Path) -> None:
    path = tmp_path / "map.pbtxt"
    path.write_text('# the classes\nitem {\n  name: "a"\n  id: 1\n}\n# trailing note\n')
    assert read_label_map(path) == {1: "a"}


def test_empty_label_map_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "empty.pbtxt"
    path.write_text("")
    with pytest.raises(FormatError, match="empty") as info:
        read_label_map(path)
    assert str(path) in str(info.value)


# ----------------------------------------------------------------------------- official csv


def test_official_csv_reads_the_fixture() -> None:
    rows = read_official_csv(MINI_CSV)
    assert len(rows) == 9
    assert rows[0] == OfficialRow("vidB", 50, (0.1, 0.2, 0.3, 0.6), 45, 1, 19, 83, 2.0, (0.76, 3.32))
    assert rows[0].n_frames == 64


def test_official_csv_round_trip_is_the_published_layout(tmp_path: Path) -> None:
    rows = read_official_csv(MINI_CSV)
    rows.append(OfficialRow("vidC", 7, (1 / 3, 0.0, 2 / 3, 1.0), 0, 12, 3, 9, 0.5, (0.12, 0.36)))
    write_official_csv(tmp_path / "out.csv", rows)
    assert read_official_csv(tmp_path / "out.csv") == rows
    # No header line, the keyframe written %06d as in the published files.
    assert (tmp_path / "out.csv").read_text().splitlines()[0] == "vidB,000050,0.1,0.2,0.3,0.6,45,1,19,83,2.0,0.76,3.32"


def test_official_csv_with_a_header_line_reads_the_same_rows(tmp_path: Path) -> None:
    """A file derived by pandas may carry a header: told from data by content, and skipped."""
    path = tmp_path / "derived.csv"
    path.write_text(",".join(COLUMNS) + "\n" + MINI_CSV.read_text())
    assert read_official_csv(path) == read_official_csv(MINI_CSV)


def test_official_csv_first_data_line_is_never_dropped(tmp_path: Path) -> None:
    path = tmp_path / "one.csv"
    path.write_text(GOOD_ROW + "\n")
    rows = read_official_csv(path)
    assert len(rows) == 1 and rows[0].keyframe == 25 and rows[0].time == 1.0


def test_final_version_cut_names_the_13_column_file(tmp_path: Path) -> None:
    path = tmp_path / "chaos_test_1fps_final_version.csv"
    path.write_text("AGRUUMUL,000700,0.484,0.37,0.648,0.685,20,224\n")
    with pytest.raises(FormatError, match="use the 13-column chaos_test_1fps.csv") as info:
        read_official_csv(path)
    assert str(info.value).startswith(f"{path}, line 1: 8 columns")


def test_window_seconds_of_another_layout_are_named(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Columns 11-12 holding something else than the window in seconds (e.g. a frame size) are said."""
    path = tmp_path / "sizes.csv"
    path.write_text("vidA,000025,0.1,0.2,0.3,0.6,45,1,1,58,1.0,640,360\n" + GOOD_ROW + "\n")
    with caplog.at_level("WARNING"):
        read_official_csv(path)
    assert "1 of 2 rows have columns 11-12 [640.0, 360.0]" in caplog.text
    caplog.clear()
    read_official_csv(MINI_CSV)
    assert not caplog.text


def test_official_exclusions_are_frame_numbers_one_line_per_row(tmp_path: Path) -> None:
    rows = read_official_csv(MINI_CSV)[:3]
    write_official_exclusions(tmp_path / "exclude.csv", rows)
    assert (tmp_path / "exclude.csv").read_text() == "vidB,000050\nvidB,000050\nvidB,000050\n"


def _csv_with(tmp_path: Path, row: str) -> Path:
    path = tmp_path / "bad.csv"
    path.write_text(GOOD_ROW + "\n" + GOOD_ROW + "\n" + row + "\n")
    return path


@pytest.mark.parametrize("row, fragment", [
    ("vidA,26,0.1,0.2,0.3,0.6,45,1,1,58,1,0.04", "expected 13 columns, found 12"),
    ("vidA,26,abc,0.2,0.3,0.6,45,1,1,58,1,0.04,2.32", "'x1' is not numeric: 'abc'"),
    ("vidA,26,0.1,0.2,0.3,0.6,walk,1,1,58,1,0.04,2.32", "'action_id' is not numeric"),
    ("vidA,26,0.1,0.2,1.3,0.6,45,1,1,58,1,0.04,2.32", r"outside \[0, 1\]"),
    ("vidA,26,-0.1,0.2,0.3,0.6,45,1,1,58,1,0.04,2.32", r"outside \[0, 1\]"),
    ("vidA,26,0.5,0.2,0.3,0.6,45,1,1,58,1,0.04,2.32", "x2 < x1"),
    ("vidA,26,0.1,0.7,0.3,0.6,45,1,1,58,1,0.04,2.32", "y2 < y1"),
    ("vidA,26,0.1,0.2,0.3,0.6,50,1,1,58,1,0.04,2.32", r"action label 50 outside 0\.\.49"),
    ("vidA,26,0.1,0.2,0.3,0.6,-1,1,1,58,1,0.04,2.32", r"action label -1 outside 0\.\.49"),
    ("vidA,26,nan,0.2,0.3,0.6,45,1,1,58,1,0.04,2.32", "not a finite number"),
    ("vidA,26,0.1,0.2,0.3,0.6,45,1,0,58,1,0.04,2.32", "numbered from 1"),
    ("vidA,26,0.1,0.2,0.3,0.6,45,1,58,58,1,0.04,2.32", "end frame 58 <= start frame 58"),
    ("vidA,26,0.1,0.2,0.3,0.6,45,1,1,58,1,,2.32", "'start_seconds' is not numeric"),
    ("vidA,26,0.1,0.2,0.3,0.6,45,1", "the '_final_version' cut"),
])
def test_official_csv_bad_rows_name_file_and_line(tmp_path: Path, row: str, fragment: str) -> None:
    path = _csv_with(tmp_path, row)
    with pytest.raises(FormatError, match=fragment) as info:
        read_official_csv(path)
    assert info.value.line == 3
    assert str(info.value).startswith(f"{path}, line 3: ")


def test_official_csv_unknown_video(tmp_path: Path) -> None:
    path = _csv_with(tmp_path, "vidZ,000025,0.1,0.2,0.3,0.6,45,1,1,58,1.0,0.04,2.32")
    assert len(read_official_csv(path)) == 3
    with pytest.raises(FormatError, match="unknown video 'vidZ'") as info:
        read_official_csv(path, known_videos={"vidA"})
    assert info.value.line == 3 and str(path) in str(info.value)


@pytest.mark.parametrize("text, fragment", [
    ("", "no data rows"),
    ("\n", "no data rows"),
    (",".join(COLUMNS) + "\n", "no data rows"),
    ("video_id,keyframe,x1\n", "header line: expected 13 columns, found 3"),
])
def test_official_csv_empty_or_header_alone(tmp_path: Path, text: str, fragment: str) -> None:
    path = tmp_path / "empty.csv"
    path.write_text(text)
    with pytest.raises(FormatError, match=fragment) as info:
        read_official_csv(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("reader", [read_official_csv, read_label_map, load_annotation_pkl, read_ground_truth_csv,
                                    read_predict_csv, read_exclusions])
def test_missing_file_names_the_path(tmp_path: Path, reader) -> None:
    path = tmp_path / "nowhere" / "file.txt"
    with pytest.raises(FileNotFoundError, match=str(path)):
        reader(path)


# ----------------------------------------------------------------------------- annotation pkl


def _classes() -> list[dict]:
    return classes_from_label_map(read_label_map(LABEL_MAP))


def _element(video: str = "vidA", time: int = 1, **changes: object) -> dict:
    element = {
        "video": video, "time": time, "start_frame": 1, "n_frames": 57, "mid_frame": 26,
        "format_str": f"{video}_%06d.png", "frame_rate": 25,
        "labels": [{"bounding_box": [0.1, 0.2, 0.3, 0.6], "label": [36, 45], "person_id": [1]}],
    }
    element.update(changes)
    return element


def test_annotation_pkl_round_trip(tmp_path: Path) -> None:
    proposal = {"bounding_box": [0.0, 0.0, 1.0, 1.0], "label": [0], "person_id": [0], "score": 0.93}
    elements = [_element(), _element("vidB", 3, labels=[proposal]), _element("vidB", 4, labels=[])]
    classes = _classes()
    save_annotation_pkl(tmp_path / "a.pkl", elements, classes)
    loaded = load_annotation_pkl(tmp_path / "a.pkl")
    assert loaded.elements == elements and loaded.classes == classes
    assert [c["id"] for c in classes] == list(range(1, 51))


def _pickle(path: Path, data: object) -> Path:
    path.write_bytes(pickle.dumps(data))
    return path


@pytest.mark.parametrize("bad, fragment", [
    (_element(time="1"), "'time' must be an int"),
    (_element(start_frame=0), "numbered from 1"),
    ({k: v for k, v in _element().items() if k != "n_frames"}, r"missing key\(s\) \['n_frames'\]"),
    (_element(labels=[{"bounding_box": [0.1, 0.2, 1.5, 0.6], "label": [1], "person_id": [1]}]),
     r"box 0: box .* outside \[0, 1\]"),
    (_element(labels=[{"bounding_box": [0.4, 0.2, 0.3, 0.6], "label": [1], "person_id": [1]}]), "x2 < x1"),
    (_element(labels=[{"bounding_box": [0.1, 0.2, 0.3, 0.6], "label": [50], "person_id": [1]}]),
     r"label\(s\) \[50\] outside 0\.\.49"),
    (_element(labels=[{"bounding_box": [float("nan"), 0.2, 0.3, 0.6], "label": [1], "person_id": [1]}]),
     "NaN or infinite"),
])
def test_annotation_pkl_bad_element_names_file_and_element(tmp_path: Path, bad: dict, fragment: str) -> None:
    path = _pickle(tmp_path / "bad.pkl", [[_element(), bad], _classes()])
    with pytest.raises(FormatError, match=fragment) as info:
        load_annotation_pkl(path)
    assert str(path) in str(info.value) and "element 1 " in str(info.value)


@pytest.mark.parametrize("content, fragment", [
    (b"", "empty file"),
    (b"not a pickle at all", "not a readable pickle"),
    (pickle.dumps({"elements": []}), r"expected a pickled list \[elements, classes\]"),
    (pickle.dumps([[], []]), "non-empty list of classes"),
])
def test_annotation_pkl_bad_files(tmp_path: Path, content: bytes, fragment: str) -> None:
    path = tmp_path / "bad.pkl"
    path.write_bytes(content)
    with pytest.raises(FormatError, match=fragment) as info:
        load_annotation_pkl(path)
    assert str(path) in str(info.value)


def test_save_annotation_pkl_refuses_a_bad_element_and_keeps_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "a.pkl"
    save_annotation_pkl(path, [_element()], _classes())
    before = path.read_bytes()
    with pytest.raises(FormatError, match="element 1"):
        save_annotation_pkl(path, [_element(), _element(n_frames=0)], _classes())
    assert path.read_bytes() == before


# ----------------------------------------------------------------------------- eval csv (minimal)


def test_eval_csv_round_trips(tmp_path: Path) -> None:
    gt = GroundTruth(video=["vidA", "vidB"], time=[2, 902], boxes=[[0.1, 0.2, 0.3, 0.6], [1 / 3, 0, 1, 1]],
                     class_id=[1, 50], person_id=[7, -1])
    write_ground_truth_csv(tmp_path / "gt.csv", gt)
    back = read_ground_truth_csv(tmp_path / "gt.csv")
    assert back.video == gt.video
    for name in ("time", "boxes", "class_id", "person_id"):
        np.testing.assert_array_equal(getattr(back, name), getattr(gt, name))
    assert (tmp_path / "gt.csv").read_text().splitlines()[1].startswith("vidB,0902,")

    preds = Predictions(video=["vidA"], time=[2], boxes=[[0.125, 0.25, 0.5, 0.75]], class_id=[3], score=[0.5])
    write_predict_csv(tmp_path / "predict.csv", preds)
    back_preds = read_predict_csv(tmp_path / "predict.csv")
    assert (tmp_path / "predict.csv").read_text() == "vidA,2,0.125,0.250,0.500,0.750,3,0.500\n"
    np.testing.assert_array_equal(back_preds.boxes, preds.boxes)

    keys = {("vidA", 2), ("vidB", 902)}
    write_exclusions(tmp_path / "exclude.csv", keys)
    assert read_exclusions(tmp_path / "exclude.csv") == keys
    assert read_exclusions(DATA / "chaos_mini_exclude.csv") == {("vidA", 50), ("vidB", 75)}


# ----------------------------------------------------------------------------- atomic writes


def test_atomic_open_keeps_the_old_file_when_the_writer_raises(tmp_path: Path) -> None:
    path = tmp_path / "out.txt"
    write_text_atomic(path, "old\n")
    with pytest.raises(RuntimeError, match="killed"):
        with atomic_open(path, "w") as handle:
            handle.write("half of the new")
            raise RuntimeError("killed mid-way")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]


def test_official_csv_writer_failing_mid_way_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "rows.csv"
    rows = read_official_csv(MINI_CSV)
    write_official_csv(path, rows)
    before = path.read_bytes()
    with pytest.raises(AttributeError):
        write_official_csv(path, rows[:3] + [None])  # the 4th row breaks the writer after 3 rows
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["rows.csv"]


def test_ground_truth_writer_failing_mid_way_leaves_the_old_file(tmp_path: Path) -> None:
    path = tmp_path / "gt.csv"
    write_text_atomic(path, "old\n")

    class Exploding(list):
        """A video column that breaks after the first row, as a killed writer would."""

        def __iter__(self):
            yield "vidA"
            raise KeyboardInterrupt

    gt = GroundTruth(video=["vidA", "vidB"], time=[1, 2], boxes=np.zeros((2, 4)), class_id=[1, 2], person_id=[0, 0])
    object.__setattr__(gt, "video", Exploding(gt.video))
    with pytest.raises(KeyboardInterrupt):
        write_ground_truth_csv(path, gt)
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["gt.csv"]


def test_numeric_field_parsers_name_file_line_and_column() -> None:
    from common.errors import parse_finite_float, parse_integer

    assert parse_finite_float("0.25", "x1", "a.csv", 3) == 0.25
    assert parse_integer("12.0", "keyframe", "a.csv", 3) == 12
    with pytest.raises(FormatError, match=r"^a.csv, line 3: column 'x1' is not numeric: 'abc'$"):
        parse_finite_float("abc", "x1", "a.csv", 3)
    with pytest.raises(FormatError, match=r"^a.csv, line 4: column 'x1' is not a finite number: 'inf'$"):
        parse_finite_float("inf", "x1", "a.csv", 4)
    with pytest.raises(FormatError, match=r"^a.csv, line 5: column 'keyframe' must be an integer, found '1.5'$"):
        parse_integer("1.5", "keyframe", "a.csv", 5)


# The first entries of the official AVA v2.2 list (``ava_action_list_v2.2_for_activitynet_2019.pbtxt``), in
# its own layout and spacing, plus its last id: ids are sparse (2 is not evaluated) and ``label_type`` is kept.
AVA_LAYOUT = DATA / "ava_v2.2_layout_head.pbtxt"


def test_label_map_reads_the_ava_v22_layout() -> None:
    from formats.pbtxt import read_label_map_entries
    assert read_label_map(AVA_LAYOUT) == {1: "bend/bow (at the waist)", 3: "crouch/kneel", 4: "dance",
                                          17: "answer phone", 80: "watch (a person)"}
    types = [entry.label_type for entry in read_label_map_entries(AVA_LAYOUT)]
    assert types == ["PERSON_MOVEMENT"] * 3 + ["OBJECT_MANIPULATION", "PERSON_INTERACTION"]


@pytest.mark.parametrize("text, expected", [
    ('label{name:"a" label_id:7 label_type:PERSON_MOVEMENT}', {7: "a"}),
    ('label {\n\tlabel_type: OBJECT_MANIPULATION\n\tlabel_id:   12\n\tname:  "b c"\n}\n', {12: "b c"}),
    ('item{name:"a" id:2}\n  item {  id: 3\n name: "x/y" }', {2: "a", 3: "x/y"}),
])
def test_label_map_layouts_with_any_whitespace_and_field_order(tmp_path: Path, text: str,
                                                                 expected: dict[int, str]) -> None:
    path = tmp_path / "map.pbtxt"
    path.write_text(text)
    assert read_label_map(path) == expected


def test_label_map_ava_layout_round_trip(tmp_path: Path) -> None:
    labels, types = {1: "bend/bow (at the waist)", 80: "watch (a person)"}, {1: "PERSON_MOVEMENT", 80: "PERSON_INTERACTION"}
    write_label_map(tmp_path / "ava.pbtxt", labels, label_types=types)
    assert read_label_map(tmp_path / "ava.pbtxt") == labels
    assert "label_id: 80" in (tmp_path / "ava.pbtxt").read_text()


@pytest.mark.parametrize("text, line, fragment", [
    ('label {\n  name: "a"\n  id: 1\n}\n', 1, "without a quoted 'name' or an integer 'label_id'"),
    ('item {\n  name: "a"\n  label_id: 1\n}\n', 1, "without a quoted 'name' or an integer 'id'"),
    ('item {\n  name: "a"\n  id: 1\n}\nlabel {\n  name: "b"\n  label_id: 2\n}\n', 5, "in a file of 'item"),
])
def test_label_map_layout_errors(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    path = tmp_path / "bad.pbtxt"
    path.write_text(text)
    with pytest.raises(FormatError, match=re.escape(fragment)) as info:
        read_label_map(path)
    assert info.value.line == line and str(path) in str(info.value)
