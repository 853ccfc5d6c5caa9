"""The video demo: keyframes, label drawing, and an annotated mp4 end to end on the tiny synthetic dataset."""
from __future__ import annotations

import json
from pathlib import Path

import cv2
import imageio_ffmpeg
import numpy as np
import pytest
import torch

from config import load_config
from formats.annotation_pkl import load_annotation_pkl
from formats.official_csv import read_official_csv
from models.build import build_model
from tests.engine_fixtures import prepare_tiny_dataset, write_tiny_config
from tools.video_demo import (DemoInputs, KeyframeActions, demo_defaults, draw_keyframe, frame_schedule,
                              keyframe_elements, label_lines, main, run_video_demo, top_actions)

NAMES = ["stand", "sit", "walk", "run", "fight"]


def test_top_actions_are_the_three_most_probable_names_in_order() -> None:
    scores = np.array([0.1, 0.9, 0.3, 0.95, 0.3])
    assert top_actions(scores, NAMES) == [("run", 0.95), ("sit", 0.9), ("walk", 0.3)]
    assert top_actions(scores, NAMES, k=1) == [("run", 0.95)]
    assert top_actions(np.full(5, np.nan), NAMES) == []
    assert label_lines(top_actions(scores, NAMES), 0.876) == ["person 0.88", "run 0.95", "sit 0.90", "walk 0.30"]
    assert label_lines([("fight", 0.5)], float("nan")) == ["fight 0.50"]


def test_drawing_marks_the_box_and_writes_its_labels_above_it() -> None:
    frame = np.zeros((180, 320, 3), dtype=np.uint8)
    keyframe = KeyframeActions(time=1, mid_frame=26, boxes=np.array([[0.5, 0.5, 0.75, 0.9]]),
                               detector_scores=np.array([0.9]), actions=np.array([[0.1, 0.9, 0.3, 0.95, 0.3]]))
    draw_keyframe(frame, keyframe, NAMES)
    assert frame[int(0.7 * 180), 160].any()  # left edge of the box
    assert not frame[int(0.7 * 180), 200].any()  # inside the box: untouched
    assert frame[80:90, 160:200].any()  # label rows stacked above the box (4 lines of ~9 px)
    assert not frame[:, :150].any()  # nothing left of the box
    untouched = np.zeros((180, 320, 3), dtype=np.uint8)
    draw_keyframe(untouched, KeyframeActions(1, 26, np.zeros((0, 4)), np.zeros(0)), NAMES)
    assert not untouched.any()


def test_keyframes_are_one_per_second_with_clips_centred_on_them() -> None:
    elements = keyframe_elements("vid", 75)
    assert [e["mid_frame"] for e in elements] == [1, 26, 51]
    assert [e["time"] for e in elements] == [0, 1, 2]
    for element in elements:
        # The dataset centres a clip on start_frame + n_frames // 2 and reads only existing frames.
        if element["n_frames"] > 1:
            assert element["start_frame"] + element["n_frames"] // 2 == element["mid_frame"]
        assert element["start_frame"] >= 1 and element["start_frame"] + element["n_frames"] - 1 <= 75
    assert elements[1]["n_frames"] == 50 and elements[2]["n_frames"] == 48


def test_each_frame_shows_the_keyframe_of_its_second() -> None:
    schedule = frame_schedule([1, 26, 51], 75)
    assert schedule[:13] == [0] * 13 and schedule[13:38] == [1] * 25 and schedule[38:63] == [2] * 25
    assert schedule[63:] == [None] * 12


def test_defaults_say_to_run_make_demo_first(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="make demo"):
        demo_defaults(tmp_path / "nothing")
    assert main(["--out", str(tmp_path / "x.mp4"), "--demo-out", str(tmp_path / "nothing")]) == 1


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny synthetic dataset, a tiny untrained action model and its checkpoint."""
    root = prepare_tiny_dataset(tmp_path_factory.mktemp("video_demo") / "data")
    config = write_tiny_config(root.parent / "tiny.yaml", root.parent / "result")
    cfg = load_config(config)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.loss)
    checkpoint = root.parent / "ckpt_0.pth.tar"
    torch.save({"epoch": 0, "state_dict": model.state_dict(), "optimizer": {}, "scheduler": {}}, checkpoint)
    video_id = read_official_csv(root / "AR_ava_format" / "chaos_test_1fps.csv")[0].video
    return {"root": root, "config": config, "checkpoint": checkpoint, "video": root / "videos" / f"{video_id}.mp4"}


def test_video_demo_with_ground_truth_boxes_writes_a_decodable_annotated_mp4(tiny: dict, tmp_path: Path) -> None:
    out = tmp_path / "demo" / "annotated.mp4"
    gt_pkl = tiny["root"] / "AR_ava_format" / "cw_data_test1fps_merged.pkl"
    inputs = DemoInputs(video=tiny["video"], config=tiny["config"], checkpoint=tiny["checkpoint"], boxes_pkl=gt_pkl)
    report = run_video_demo(inputs, out, work=tmp_path / "work", device="cpu")
    extracted = len(list((tmp_path / "work" / "frames" / tiny["video"].stem).glob("*.png")))
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    source_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tiny["video"]))
    assert frames == extracted == source_frames == report["frames"] > 0
    reader = imageio_ffmpeg.read_frames(str(out))
    size = next(reader)["size"]
    reader.close()
    source = imageio_ffmpeg.read_frames(str(tiny["video"]))
    assert tuple(size) == tuple(next(source)["size"]) == tuple(report["size"])
    source.close()
    # Every ground-truth box of the video got three named actions.
    expected = [e for e in load_annotation_pkl(gt_pkl).elements if e["video"] == tiny["video"].stem]
    assert [k["time"] for k in report["keyframes"]] == [e["time"] for e in expected]
    boxes = [box for keyframe in report["keyframes"] for box in keyframe["boxes"]]
    assert len(boxes) == sum(len(e["labels"]) for e in expected) > 0
    assert all(len(box["actions"]) == 3 and box["detector_score"] is None for box in boxes)
    assert json.loads(out.with_suffix(".json").read_text())["frames"] == frames
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no partial file left


def test_video_demo_draws_on_the_model_frames_when_asked(tiny: dict, tmp_path: Path) -> None:
    out = tmp_path / "small.mp4"
    gt_pkl = tiny["root"] / "AR_ava_format" / "cw_data_test1fps_merged.pkl"
    code = main(["--video", str(tiny["video"]), "--out", str(out), "--boxes-pkl", str(gt_pkl), "--config",
                 str(tiny["config"]), "--checkpoint", str(tiny["checkpoint"]), "--device", "cpu",
                 "--display", "frames"])
    assert code == 0
    reader = imageio_ffmpeg.read_frames(str(out))
    assert tuple(next(reader)["size"]) == (320, 180)
    first = np.frombuffer(next(reader), dtype=np.uint8).reshape(180, 320, 3)
    reader.close()
    # Frame 1 shows no keyframe of the ground truth (it starts at t = 1 s): it equals the plain frame.
    plain = cv2.cvtColor(cv2.imread(str(tiny["root"] / "frames" / tiny["video"].stem / f"{tiny['video'].stem}_000001.png")),
                         cv2.COLOR_BGR2RGB)
    assert np.abs(first.astype(int) - plain.astype(int)).mean() < 8  # only H.264 loss


@pytest.mark.slow
def test_video_demo_with_a_one_epoch_detector(tiny: dict, tmp_path: Path) -> None:
    from detect.convert import convert_to_yolo
    from detect.train import train_detector

    annotations = tiny["root"] / "AR_ava_format"
    data_yaml = convert_to_yolo(annotations / "chaos_train_1fps.csv", annotations / "chaos_test_1fps.csv",
                                tiny["root"] / "frames", tmp_path / "yolo")["data_yaml"]
    best = train_detector(data_yaml, tmp_path / "runs", epochs=1, imgsz=160, batch=4, device="cpu", workers=0)
    out = tmp_path / "detected.mp4"
    report = run_video_demo(DemoInputs(video=tiny["video"], config=tiny["config"], checkpoint=tiny["checkpoint"],
                                       detector=best), out, conf=0.001, device="cpu")
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert frames == report["frames"] > 0
    # One keyframe per second of the 3 s clip, every one present even without a detection.
    assert [k["time"] for k in report["keyframes"]] == [0, 1, 2]
    scored = [box["detector_score"] for k in report["keyframes"] for box in k["boxes"]]
    assert scored and all(score is not None and score >= 0.001 for score in scored)
