"""AVA v2.2 inputs: csv, exclusions, label map and proposals readers; csv + proposals -> ACAR-Net pkl."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from common.errors import FormatError
from formats.annotation_pkl import load_annotation_pkl
from formats.ava import (
    AvaRow,
    Proposal,
    ava_label_type,
    read_ava_csv,
    read_ava_exclusions,
    read_ava_label_map,
    read_ava_proposals,
    write_ava_csv,
    write_ava_proposals,
)
from tools.ava_to_pkl import classes_from_entries, convert_ava, keyframe_to_frame, main, new_element

DATA = Path(__file__).resolve().parent / "data" / "ava"
CSV = DATA / "ava_mini_v2.2.csv"
LABELMAP = DATA / "ava_action_list_v2.2_head.pbtxt"


def _write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def _proposals(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "proposals.pkl"
    with open(path, "wb") as handle:
        pickle.dump(data, handle)
    return path


def test_csv_rows_are_read_and_round_trip(tmp_path: Path) -> None:
    rows = read_ava_csv(CSV)
    assert len(rows) == 6
    assert rows[0] == AvaRow(video="-5KQ66BBWC4", time=902, box=(0.077, 0.151, 0.283, 0.811), action_id=1,
                             person_id=0)
    copy = tmp_path / "copy.csv"
    write_ava_csv(copy, rows)
    assert copy.read_text(encoding="utf-8") == CSV.read_text(encoding="utf-8")


@pytest.mark.parametrize(("line", "message"), [
    ("vid,0902,0.1,0.1,0.2,0.2,1", r"line 2: expected 8 columns .*found 7"),
    ("vid,0902,0.1,0.1,0.2,0.2,81,0", r"line 2: action_id 81 outside 1\.\.80 \(video vid, time 0902\)"),
    ("vid,0901,0.1,0.1,0.2,0.2,1,0", r"line 2: video vid: timestamp 901 outside 0902\.\.1798"),
    ("vid,1799,0.1,0.1,0.2,0.2,1,0", r"line 2: video vid: timestamp 1799 outside"),
    ("vid,0902,0.1,0.1,1.2,0.2,1,0", r"line 2: video vid, time 0902: box .* outside \[0, 1\]"),
    ("vid,09a2,0.1,0.1,0.2,0.2,1,0", r"line 2: column 'timestamp' is not numeric"),
])
def test_bad_csv_rows_name_file_line_and_problem(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path, "bad.csv", "vid,0902,0.1,0.1,0.2,0.2,1,0\n" + line + "\n")
    with pytest.raises(FormatError, match=r"bad\.csv, " + message):
        read_ava_csv(path)


def test_exclusions_and_label_map(tmp_path: Path) -> None:
    assert read_ava_exclusions(_write(tmp_path, "ex.csv", "vid,0902\nvid,1798\n")) == {("vid", 902), ("vid", 1798)}
    with pytest.raises(FormatError, match=r"ex2\.csv: excluded keyframe vid,0900: timestamp 900 outside"):
        read_ava_exclusions(_write(tmp_path, "ex2.csv", "vid,0900\n"))
    entries = read_ava_label_map(LABELMAP)
    assert [e.class_id for e in entries] == [1, 3, 4, 17, 79]
    assert entries[3].label_type == "OBJECT_MANIPULATION"
    bad = _write(tmp_path, "bad.pbtxt", 'label {\n  name: "x"\n  label_id: 81\n  label_type: PERSON_MOVEMENT\n}\n')
    with pytest.raises(FormatError, match=r"bad\.pbtxt: class 'x': id 81 outside 1\.\.80"):
        read_ava_label_map(bad)


def test_proposals_read_only_through_the_safe_loader(tmp_path: Path) -> None:
    array = np.array([[0.1, 0.1, 0.3, 0.9, 0.95], [0.5, 0.2, 0.6, 0.8, 0.5]], dtype=np.float32)
    path = _proposals(tmp_path, {"-5KQ66BBWC4,0902": array})
    read = read_ava_proposals(path, keyframes={("-5KQ66BBWC4", 902)})
    assert list(read) == [("-5KQ66BBWC4", 902)]
    assert read[("-5KQ66BBWC4", 902)][0].score == pytest.approx(0.95)
    # A pickle that names any other global is refused before it can run code.
    evil = tmp_path / "evil.pkl"
    evil.write_bytes(pickle.dumps({"v,0902": Path("/")}))
    with pytest.raises(FormatError, match=r"evil\.pkl"):
        read_ava_proposals(evil)
    writer_path = tmp_path / "written.pkl"
    write_ava_proposals(writer_path, {("v", 903): [Proposal(box=(0.1, 0.2, 0.3, 0.4), score=0.5)]})
    assert read_ava_proposals(writer_path)[("v", 903)][0].box == pytest.approx((0.1, 0.2, 0.3, 0.4))


@pytest.mark.parametrize(("data", "message"), [
    ({"-5KQ66BBWC4,0904": np.zeros((0, 5))}, r"key '-5KQ66BBWC4,0904': keyframe not in the annotation csv"),
    ({"otherVideo,0902": np.zeros((0, 5))}, r"key 'otherVideo,0902': video 'otherVideo' is not in the annotation csv"),
    ({"-5KQ66BBWC4,0900": np.zeros((0, 5))}, r"key '-5KQ66BBWC4,0900': timestamp 900 outside"),
    ({"-5KQ66BBWC4_0902": np.zeros((0, 5))}, r"key '-5KQ66BBWC4_0902': expected 'video_id,timestamp'"),
    ({"-5KQ66BBWC4,0902": np.zeros((1, 4))}, r"key '-5KQ66BBWC4,0902', box 0: expected 5 finite numbers"),
    ({"-5KQ66BBWC4,0902": np.array([[0.1, 0.1, 0.2, 0.2, 1.5]])}, r"box 0: score 1\.5 outside \[0, 1\]"),
    ([1, 2], r"expected a pickled dict"),
])
def test_bad_proposals_name_the_key(tmp_path: Path, data: object, message: str) -> None:
    keyframes = {(row.video, row.time) for row in read_ava_csv(CSV)}
    with pytest.raises(FormatError, match=r"proposals\.pkl: .*" + message):
        read_ava_proposals(_proposals(tmp_path, data), keyframes=keyframes)


def test_keyframe_to_frame_mapping_follows_acar_net() -> None:
    assert keyframe_to_frame(902) == 61 and keyframe_to_frame(1798) == 26941
    element = new_element("v", 902)
    # The clip window is centred on the keyframe and lies inside the 27000 extracted frames.
    assert element["start_frame"] + element["n_frames"] // 2 == element["mid_frame"] == 61
    last = new_element("v", 1798)
    assert last["start_frame"] >= 1 and last["start_frame"] + last["n_frames"] - 1 <= 27000
    assert (element["format_str"], element["frame_rate"], element["n_frames"]) == ("image_%06d.jpg", 30, 91)


def test_ground_truth_pkl_merges_persons_and_maps_ids_to_the_evaluated_classes(tmp_path: Path) -> None:
    out = tmp_path / "gt.pkl"
    stats = convert_ava(CSV, LABELMAP, out, boxes="gt")
    loaded = load_annotation_pkl(out)
    assert [c["id"] for c in loaded.classes] == [1, 3, 4, 17, 79]
    assert [(e["video"], e["time"]) for e in loaded.elements] == [("-5KQ66BBWC4", 902), ("-5KQ66BBWC4", 903),
                                                                  ("1j20qq1JyX4", 1798)]
    first = loaded.elements[0]
    # id 1 -> position 0, id 79 -> 4; id 2 is not evaluated and is dropped; id 4 -> 2.
    assert [(entry["label"], entry["person_id"]) for entry in first["labels"]] == [([0, 4], [0]), ([2], [1])]
    assert stats.dropped_actions == 1 and stats.gt_boxes == 4


def test_train_pkl_adds_proposals_above_threshold_labelled_by_iou(tmp_path: Path) -> None:
    proposals = _proposals(tmp_path, {
        "-5KQ66BBWC4,0902": np.array([[0.077, 0.151, 0.283, 0.812, 0.97],   # IoU ~1 with person 0
                                      [0.30, 0.19, 0.48, 0.89, 0.95],       # IoU < 0.9 with person 1
                                      [0.6, 0.6, 0.7, 0.7, 0.5]]),          # below the threshold
        "-5KQ66BBWC4,0903": np.zeros((0, 5)),
    })
    out = tmp_path / "train.pkl"
    stats = convert_ava(CSV, LABELMAP, out, boxes="gt+proposals", proposals_path=proposals, threshold=0.9)
    first = load_annotation_pkl(out).elements[0]
    extra = [entry for entry in first["labels"] if entry["person_id"] == [-1]]
    assert [entry["label"] for entry in extra] == [[0, 4], []]
    assert (stats.proposal_boxes, stats.labelled_proposals, stats.gt_boxes) == (2, 1, 4)


def test_val_pkl_holds_only_proposals_without_labels(tmp_path: Path, capsys) -> None:
    proposals = _proposals(tmp_path, {"-5KQ66BBWC4,0902": np.array([[0.1, 0.1, 0.3, 0.9, 0.9],
                                                                    [0.5, 0.1, 0.7, 0.9, 0.8]]),
                                      "1j20qq1JyX4,1798": np.array([[0.1, 0.1, 0.3, 0.9, 0.86]])})
    out = tmp_path / "val.pkl"
    assert main(["--csv", str(CSV), "--labelmap", str(LABELMAP), "--out", str(out), "--boxes", "proposals",
                 "--proposals", str(proposals), "--threshold", "0.85"]) == 0
    elements = load_annotation_pkl(out).elements
    assert [(e["video"], e["time"], len(e["labels"])) for e in elements] == [("-5KQ66BBWC4", 902, 1),
                                                                               ("1j20qq1JyX4", 1798, 1)]
    assert all(entry["label"] == [] and entry["person_id"] == [-1] for e in elements for entry in e["labels"])
    assert "2 elements of 3 keyframes" in capsys.readouterr().out


def test_proposals_mode_needs_a_file() -> None:
    with pytest.raises(ValueError, match="needs a proposals file"):
        convert_ava(CSV, LABELMAP, "unused.pkl", boxes="proposals")


def test_unannotated_keyframes_are_accepted_on_request(tmp_path: Path) -> None:
    proposals = _proposals(tmp_path, {"-5KQ66BBWC4,0902": np.array([[0.1, 0.1, 0.3, 0.9, 0.95]]),
                                      "-5KQ66BBWC4,0910": np.array([[0.1, 0.1, 0.3, 0.9, 0.95]])})
    val, train = tmp_path / "val.pkl", tmp_path / "train.pkl"
    convert_ava(CSV, LABELMAP, val, boxes="proposals", proposals_path=proposals, threshold=0.85,
                allow_unannotated=True)
    assert [e["time"] for e in load_annotation_pkl(val).elements] == [902, 910]
    convert_ava(CSV, LABELMAP, train, boxes="gt+proposals", proposals_path=proposals, allow_unannotated=True)
    assert [e["time"] for e in load_annotation_pkl(train).elements] == [902, 903, 1798]


def test_item_layout_map_gets_avas_label_types_by_id(tmp_path: Path) -> None:
    """A copy of the AVA list in the ``item { name id }`` layout has no types: each id gets AVA's own."""
    entries = read_ava_label_map(LABELMAP)
    item_map = tmp_path / "items.pbtxt"
    item_map.write_text("".join(f'item {{\n  name: "{e.name}"\n  id: {e.class_id}\n}}\n' for e in entries))
    from_items = classes_from_entries(read_ava_label_map(item_map))
    assert [c["label_type"] for c in from_items] == [e.label_type for e in entries]
    assert [ava_label_type(i) for i in (1, 14, 15, 63, 64, 80)] == [
        "PERSON_MOVEMENT", "PERSON_MOVEMENT", "OBJECT_MANIPULATION", "OBJECT_MANIPULATION",
        "PERSON_INTERACTION", "PERSON_INTERACTION"]
    with pytest.raises(ValueError, match="1..80"):
        ava_label_type(81)
