"""The demo's choice of video to annotate: most people and actions where the detector finds them."""
from __future__ import annotations

from pathlib import Path

from formats.annotation_pkl import save_annotation_pkl
from formats.official_csv import OfficialRow, write_official_csv
from tools.demo_video import choose_demo_video

BOX_A, BOX_B, BOX_C = (0.1, 0.1, 0.3, 0.9), (0.5, 0.1, 0.7, 0.9), (0.75, 0.2, 0.95, 0.9)


def _row(video: str, person: int, label: int, box: tuple) -> OfficialRow:
    return OfficialRow(video=video, keyframe=25, box=box, label=label, person_id=person, start_frame=1,
                       end_frame=58, time=1.0, window_seconds=(0.04, 2.32))


def test_the_busiest_video_the_detector_reads_wins(tmp_path: Path) -> None:
    rows = ([_row("FIRST", 1, 0, BOX_A)]  # first by index: one person, one action
            + [_row("CROWD", p, label, box) for p, box in enumerate((BOX_A, BOX_B, BOX_C), 1) for label in (0, 1)]
            + [_row("MISSED", p, label, box) for p, box in enumerate((BOX_A, BOX_B, BOX_C), 1) for label in (2, 3, 4)])
    csv = tmp_path / "chaos_test_1fps.csv"
    write_official_csv(csv, rows)
    found = {"FIRST": [BOX_A], "CROWD": [BOX_A, BOX_B], "MISSED": []}  # the detector misses MISSED's people
    elements = [{"video": video, "time": 1, "start_frame": 1, "n_frames": 57, "mid_frame": 25,
                 "format_str": f"{video}_%06d.png", "frame_rate": 25,
                 "labels": [{"bounding_box": list(box), "label": [0], "person_id": [0], "score": 0.9} for box in boxes]}
                for video, boxes in found.items()]
    proposals = tmp_path / "proposals.pkl"
    save_annotation_pkl(proposals, elements, [{"name": "a", "id": 1, "label_type": "PERSON_MOVEMENT"}])
    choice = choose_demo_video(csv, proposals, tmp_path / "videos")
    assert choice["video_id"] == "CROWD" and choice["video"] == str(tmp_path / "videos" / "CROWD.mp4")
    assert (choice["people"], choice["actions"], choice["recall"]) == (3, 2, round(2 / 3, 4))
    assert [entry["video_id"] for entry in choice["ranking"]] == ["CROWD", "FIRST", "MISSED"]
