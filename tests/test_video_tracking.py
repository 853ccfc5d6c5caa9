"""Tracking in the video demo: on a generated clip where two walkers cross (the nearer hides the other),
each person keeps one track id, and the mp4, json, csv and timeline written agree with each other."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
from PIL import Image

from tests.engine_fixtures import write_tiny_config
from tests.video_fixtures import (CROSS_SECONDS, detections_csv, identity_switches, iou, true_boxes,
                                  write_crossing_clip)
from tools.video_annotate import output_paths, run_video_demo
from tools.video_detect import PersonTracker
from tools.video_options import DemoInputs, DemoSettings


@pytest.fixture(scope="module")
def crossing(tmp_path_factory: pytest.TempPathFactory) -> dict:
    folder = tmp_path_factory.mktemp("crossing")
    video, plan = write_crossing_clip(folder)
    config = write_tiny_config(folder / "tiny.yaml", folder / "result")
    return {"folder": folder, "video": video, "plan": plan, "config": config,
            "detections": detections_csv(folder / "detections.csv", plan)}


@pytest.mark.parametrize("name", ["bytetrack", "botsort"])
def test_each_tracker_keeps_crossing_people_apart_frame_by_frame(crossing: dict, name: str) -> None:
    """Every 5th frame's true boxes, the hidden one left out while covered: ids never swap."""
    plan = crossing["plan"]
    boxes = true_boxes(plan)
    tracker = PersonTracker(name)
    frame = np.zeros((plan.height, plan.width, 3), dtype=np.uint8)
    seen: dict[int, set[int]] = {}
    hidden_steps = 0
    for index in range(0, plan.n_frames, 5):
        near, far = boxes[index][0], boxes[index][1]
        overlap = iou(near, far)
        people = [0, 2] if overlap > 0.4 else [0, 1, 2]
        hidden_steps += overlap > 0.4
        ids = tracker.update(boxes[index][people], np.full(len(people), 0.9), frame)
        for person, track in zip(people, ids.tolist()):
            if track >= 0:
                seen.setdefault(person, set()).add(track)
    assert hidden_steps >= 3  # the far walker really disappears behind the near one for a while
    assert all(len(tracks) == 1 for tracks in seen.values()), seen
    assert len({next(iter(tracks)) for tracks in seen.values()}) == 3


@pytest.mark.parametrize("tracker", ["bytetrack", "botsort"])
def test_video_demo_tracks_crossing_people_and_its_outputs_agree(crossing: dict, tracker: str) -> None:
    out = crossing["folder"] / tracker / "crossing.mp4"
    inputs = DemoInputs(video=crossing["video"], config=crossing["config"], boxes=crossing["detections"])
    report = run_video_demo(inputs, out, DemoSettings(random_weights=True, boxes_normalised=True, tracker=tracker,
                                                      device="cpu", progress=False))
    plan = crossing["plan"]
    switches, matched, history = identity_switches(report, plan)
    # 3 people over 8 keyframes, the watcher hidden by a walker at the first one.
    assert matched >= 20 and switches == 0, history
    assert report["tracks_count"] == 3 and report["tracker"] == tracker
    assert report["untrained"] and report["stamp"] == "UNTRAINED WEIGHTS"
    assert report["untrained_models"] == ["action model"]
    _check_outputs_agree(out, report, plan.n_frames)


def _check_outputs_agree(out: Path, report: dict, n_frames: int) -> None:
    paths = output_paths(out)
    assert json.loads(paths["json"].read_text()) == report
    # mp4: every frame at 25 fps, at the reported size (picture + side panel).
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert frames == report["frames"] == n_frames
    reader = imageio_ffmpeg.read_frames(str(out))
    assert tuple(next(reader)["size"]) == tuple(report["size"])
    reader.close()
    # csv: one row per (track, keyframe), the json's people in the same order, same values.
    with paths["csv"].open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    people = [(record["time"], person) for record in report["keyframes"] for person in record["people"]]
    assert len(rows) == len(people) == report["boxes"] > 0
    for row, (time, person) in zip(rows, people):
        assert (int(row["time_s"]), int(row["track_id"])) == (time, person["track_id"])
        assert [float(row[key]) for key in ("x1", "y1", "x2", "y2")] == person["box"]
        assert [(row[f"action_{k}"], float(row[f"score_{k}"])) for k in (1, 2, 3)] == \
               [tuple(pair) for pair in person["actions"]]
    assert {int(row["track_id"]) for row in rows} == {track["track_id"] for track in report["tracks"]}
    # timeline: a picture with one row per (track, action shown), all tracks in it.
    with Image.open(paths["timeline"]) as image:
        assert image.format == "PNG" and image.size[1] > 200
    assert 3 <= report["timeline_rows"] <= 3 * 4
    assert report["keyframes_count"] == CROSS_SECONDS


def test_any_size_and_frame_rate_with_given_ids_in_pixels_and_frames(tmp_path: Path, crossing: dict) -> None:
    """A 340x256 clip at 28 fps (a real clip's shape): given boxes in pixels at the clip's own frames."""
    video, plan = write_crossing_clip(tmp_path, width=340, height=256, fps=28)
    boxes = true_boxes(plan) * np.array([340, 256, 340, 256])
    lines = ["frame,x1,y1,x2,y2,track_id"]
    for index in range(0, plan.n_frames, 7):
        lines += [f"{index}," + ",".join(f"{v:.1f}" for v in boxes[index][person]) + f",{person + 11}"
                  for person in range(3)]
    given = tmp_path / "given.csv"
    given.write_text("\n".join(lines) + "\n")
    out = tmp_path / "real_shape.mp4"
    report = run_video_demo(DemoInputs(video=video, config=crossing["config"], boxes=given), out,
                            DemoSettings(random_weights=True, device="cpu", progress=False))
    assert report["video_size"] == [340, 256] and report["video_fps"] == pytest.approx(28.0)
    assert report["frames"] == report["model_frames"] == CROSS_SECONDS * 25 and report["tracker"] is None
    assert report["size"][1] == 360  # enlarged so that labels read
    assert {track["track_id"] for track in report["tracks"]} == {11, 12, 13}
    for keyframe in report["keyframes"][1:]:
        truth = true_boxes(plan)[int(round(keyframe["time"] * 28))]
        for person in keyframe["people"]:
            # Observed every 0.25 s, interpolated in between: within a few percent of the truth.
            assert iou(np.array(person["box"]), truth[person["track_id"] - 11]) > 0.8
    _check_outputs_agree(out, report, CROSS_SECONDS * 25)
