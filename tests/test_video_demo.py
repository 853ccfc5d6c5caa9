"""The video demo: keyframe windows, the track rule, longest actions, model frames, the command line, and
an annotated mp4 end to end on the tiny synthetic dataset."""
from __future__ import annotations

import json
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest
import torch
from PIL import Image

from config import load_config
from datasets.ffmpeg_io import decode_frames
from datasets.synthetic import load_cw_classes
from formats.annotation_pkl import load_annotation_pkl
from formats.official_csv import read_official_csv
from engine.plan import make_plan
from models.build import build_model
from tests.engine_fixtures import prepare_tiny_dataset, write_tiny_config
from tools.video_actions import class_names, keyframe_clip, top_actions
from tools.video_demo import demo_defaults, main
from tools.video_draw import display_size
from tools.video_options import DemoSettings
from tools.video_tracks import HELD, INTERPOLATED, OBSERVED, TrackStore, longest_actions

NAMES = ["stand", "sit", "walk", "run", "fight"]


def test_top_actions_are_the_most_probable_names_in_order() -> None:
    scores = np.array([0.1, 0.9, 0.3, 0.95, 0.3])
    assert top_actions(scores, NAMES, 3) == [("run", 0.95), ("sit", 0.9), ("walk", 0.3)]
    assert top_actions(scores, NAMES, 1) == [("run", 0.95)]
    assert top_actions(np.full(5, np.nan), NAMES, 3) == []


def test_keyframe_windows_are_centred_and_stay_inside_the_video() -> None:
    middle = keyframe_clip(2, 51, None)
    assert (middle.start_frame, middle.n_frames) == (19, 64)
    assert keyframe_clip(0, 1, None).n_frames == 1  # first frame: a one-frame clip, looped by the sampler
    end = keyframe_clip(2, 51, 75)
    assert (end.start_frame, end.n_frames) == (27, 48)
    for clip, last in ((middle, 200), (end, 75), (keyframe_clip(1, 26, 75), 75), (keyframe_clip(2, 51, 52), 52)):
        # The dataset centres a clip on start_frame + n_frames // 2 (docs/numerics.md quirk 1).
        assert clip.start_frame + clip.n_frames // 2 == clip.frame
        assert clip.start_frame >= 1 and clip.start_frame + clip.n_frames - 1 <= last


def test_the_track_rule_observes_interpolates_holds_and_lets_go() -> None:
    store = TrackStore(hold=12, max_gap=25)
    store.add(7, 1, [0.0, 0.0, 0.2, 0.4], 0.9)
    store.add(7, 21, [0.2, 0.0, 0.4, 0.4], 0.8)
    store.add(7, 101, [0.5, 0.5, 0.6, 0.7], 0.7)
    found = store.box_at(7, 21)
    assert found.source == OBSERVED and found.score == pytest.approx(0.8)
    middle = store.box_at(7, 11)
    assert middle.source == INTERPOLATED and np.allclose(middle.box, [0.1, 0.0, 0.3, 0.4])
    assert np.isnan(middle.score)
    # 21 -> 101 is beyond max_gap: held for 12 frames either side, then nothing.
    assert store.box_at(7, 33).source == HELD and np.allclose(store.box_at(7, 33).box, [0.2, 0.0, 0.4, 0.4])
    assert store.box_at(7, 34) is None and store.box_at(7, 88) is None
    assert store.box_at(7, 89).source == HELD and store.box_at(7, 113).source == HELD
    assert store.box_at(7, 114) is None
    assert all(7 in store.near(frame) for frame in (1, 11, 33, 89, 113))
    with pytest.raises(ValueError, match="track 7: frame 50 arrives after frame 101"):
        store.add(7, 50, [0, 0, 1, 1])


def test_longest_actions_are_runs_of_consecutive_keyframes() -> None:
    timeline = [(1, [("walk", 0.9), ("wave", 0.4)]), (2, [("walk", 0.8), ("wave", 0.5)]), (3, [("walk", 0.7)]),
                (5, [("wave", 0.9), ("walk", 0.6)]), (6, [("wave", 0.7)]), (7, [("wave", 0.8)])]
    runs = longest_actions(timeline)
    assert [(run.action, run.start, run.end, run.seconds) for run in runs] == [("walk", 1, 3, 3), ("wave", 5, 7, 3)]
    assert runs[0].mean_score == pytest.approx(0.8)
    assert longest_actions([]) == []


def test_display_size_keeps_the_aspect_and_reads_well() -> None:
    assert display_size((340, 256)) == (478, 360)  # small videos are enlarged so that labels read
    assert display_size((1920, 1080)) == (1920, 1080)
    assert display_size((3840, 2160)) == (1920, 1080)
    assert display_size((640, 360), 720) == (1280, 720)


def test_class_names_must_fit_the_model(tmp_path: Path) -> None:
    names = class_names(50, None)
    assert len(names) == 50 and names[0] == load_cw_classes()[1] and names[-1] == load_cw_classes()[50]
    label_map = tmp_path / "two.pbtxt"
    label_map.write_text('item { name: "b" id: 2 }\nitem { name: "a" id: 1 }\n')
    assert class_names(2, label_map) == ["a", "b"]
    with pytest.raises(ValueError, match="the model predicts 60 classes but .*names 50.*--labelmap"):
        class_names(60, None)


def test_model_frames_are_the_pixels_of_the_extracted_frames(tiny: dict) -> None:
    """The action model reads the frames tools.extract_frames would write: same filters, same pixels."""
    video = tiny["video"]
    _, frames = decode_frames(video, fps=25, pixel_format="rgb24", size=(320, 180))
    stored = sorted((tiny["root"] / "frames" / video.stem).glob("*.png"))
    decoded = list(frames)
    assert len(decoded) == len(stored) > 0
    for index in (0, len(stored) // 2, len(stored) - 1):
        assert np.array_equal(decoded[index], np.asarray(Image.open(stored[index]).convert("RGB")))


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="detect_every must divide 25"):
        DemoSettings(detect_every=4).check()
    with pytest.raises(ValueError, match="tracker must be one of"):
        DemoSettings(tracker="sort").check()


def test_defaults_say_to_run_make_demo_first(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(FileNotFoundError, match="make demo"):
        demo_defaults(tmp_path / "nothing")
    assert main(["--out", str(tmp_path / "x.mp4"), "--demo-out", str(tmp_path / "nothing")]) == 1
    assert "make demo" in capsys.readouterr().err


def test_bad_combinations_are_one_line_errors(tiny: dict, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    base = ["--video", str(tiny["video"]), "--out", str(tmp_path / "x.mp4"), "--config", str(tiny["config"])]
    assert main(base + ["--random-weights", "--checkpoint", str(tiny["checkpoint"])]) == 1
    assert "leave --checkpoint out" in capsys.readouterr().err
    assert main(base + ["--checkpoint", str(tiny["checkpoint"]), "--boxes", str(tmp_path / "none.csv")]) == 1
    assert "boxes not found" in capsys.readouterr().err
    assert main(base + ["--checkpoint", str(tiny["checkpoint"]), "--detector", str(tmp_path / "yolov8n.pt")]) == 1
    err = capsys.readouterr().err
    assert "detector not found" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "x.mp4").exists()


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny synthetic dataset, a tiny untrained action model and its checkpoint."""
    root = prepare_tiny_dataset(tmp_path_factory.mktemp("video_demo") / "data")
    config = write_tiny_config(root.parent / "tiny.yaml", root.parent / "result")
    plan = make_plan(load_config(config))
    torch.manual_seed(0)
    model = build_model(plan.model)
    checkpoint = root.parent / "ckpt_0.pth.tar"
    torch.save({"epoch": 0, "state_dict": model.state_dict(), "optimizer": {}, "scheduler": {}}, checkpoint)
    video_id = read_official_csv(root / "AR_ava_format" / "chaos_test_1fps.csv")[0].video
    return {"root": root, "config": config, "checkpoint": checkpoint, "video": root / "videos" / f"{video_id}.mp4"}


def test_video_demo_with_ground_truth_boxes_writes_every_output(tiny: dict, tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "demo" / "annotated.mp4"
    gt_pkl = tiny["root"] / "AR_ava_format" / "cw_data_test1fps_merged.pkl"
    code = main(["--video", str(tiny["video"]), "--out", str(out), "--boxes-pkl", str(gt_pkl), "--config",
                 str(tiny["config"]), "--checkpoint", str(tiny["checkpoint"]), "--device", "cpu", "--no-progress"])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads(out.with_suffix(".json").read_text())
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    source_frames, _ = imageio_ffmpeg.count_frames_and_secs(str(tiny["video"]))
    assert frames == source_frames == report["frames"] == report["model_frames"] > 0
    reader = imageio_ffmpeg.read_frames(str(out))
    assert tuple(next(reader)["size"]) == tuple(report["size"])
    reader.close()
    assert report["untrained"] is False and report["stamp"] is None and report["tracker"] is None
    # Every ground-truth person of the video, with its person id as track id, got three named actions.
    expected = {(int(e["time"]), entry["person_id"][0]) for e in load_annotation_pkl(gt_pkl).elements
                if e["video"] == tiny["video"].stem for entry in e["labels"]}
    shown = {(k["time"], p["track_id"]) for k in report["keyframes"] for p in k["people"]
             if p["box_source"] == "observed"}
    assert shown == expected and expected
    people = [p for k in report["keyframes"] for p in k["people"]]
    assert all(len(p["actions"]) == 3 and p["detector_score"] is None for p in people)
    assert {track["track_id"] for track in report["tracks"]} == {track for _, track in expected}
    for phase in ("decode", "detect", "track", "classify", "encode"):
        assert f"{phase} " in printed
    assert "keyframes/s" in printed and f"#{report['tracks'][0]['track_id']}" in printed
    assert not [p.name for p in out.parent.iterdir() if p.name.startswith(".")]  # no partial file left


def test_weights_come_from_the_checkpoint_the_resume_path_or_the_pretrain_file(tiny: dict, tmp_path: Path) -> None:
    from tools.video_actions import ActionModel

    saved = torch.load(tiny["checkpoint"], weights_only=True)["state_dict"]
    zoo = tmp_path / "zoo.pth"  # ACAR-Net's model-zoo layout: a plain state dict with DDP's prefix
    torch.save({f"module.{key}": value for key, value in saved.items()}, zoo)
    configs = {"resume_path": write_tiny_config(tmp_path / "resume.yaml", tmp_path / "r",
                                                resume_path=str(tiny["checkpoint"])),
               "pretrain": write_tiny_config(tmp_path / "pretrain.yaml", tmp_path / "p", pretrain={"path": str(zoo)})}
    for name, config in configs.items():
        model = ActionModel(config, None, torch.device("cpu"))
        loaded = model.model.state_dict()
        assert all(torch.equal(loaded[key], value) for key, value in saved.items()), name
    with pytest.raises(ValueError, match="no weights for the action model.*--random-weights"):
        ActionModel(tiny["config"], None, torch.device("cpu"))


def test_random_weights_run_everything_untrained_and_say_so_on_every_frame(tiny: dict, tmp_path: Path) -> None:
    out = tmp_path / "untrained.mp4"
    assert main(["--video", str(tiny["video"]), "--out", str(out), "--random-weights", "--config",
                 str(tiny["config"]), "--device", "cpu", "--no-progress"]) == 0
    report = json.loads(out.with_suffix(".json").read_text())
    assert report["untrained"] and report["stamp"] == "UNTRAINED WEIGHTS"
    assert report["untrained_models"] == ["action model", "detector"] and report["checkpoint"] is None
    assert report["boxes_from"] == "detector yolov8n.yaml" and report["tracker"] == "bytetrack"
    width, height = report["size"]
    reader = imageio_ffmpeg.read_frames(str(out))
    next(reader)
    frames = [np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3) for raw in reader]
    assert len(frames) == report["frames"]
    picture = display_size(tuple(report["video_size"]))[0]
    for frame in frames:
        stamp = frame[4:30, picture + 6:width - 6].astype(int)  # the panel's top block, RGB
        assert stamp[..., 0].mean() > 150 and stamp[..., 1].mean() < 90 and stamp[..., 2].mean() < 90


@pytest.mark.slow
def test_video_demo_with_a_one_epoch_detector(tiny: dict, tmp_path: Path) -> None:
    from detect.convert import convert_to_yolo
    from detect.train import TrainOptions, train_detector
    from tools.video_annotate import run_video_demo
    from tools.video_options import DemoInputs

    annotations = tiny["root"] / "AR_ava_format"
    data_yaml = convert_to_yolo(annotations / "chaos_train_1fps.csv", annotations / "chaos_test_1fps.csv",
                                tiny["root"] / "frames", tmp_path / "yolo")["data_yaml"]
    best = train_detector(data_yaml, tmp_path / "runs", TrainOptions(epochs=1, imgsz=160, batch=4, device="cpu",
                                                                     workers=0))
    out = tmp_path / "detected.mp4"
    report = run_video_demo(DemoInputs(video=tiny["video"], config=tiny["config"], checkpoint=tiny["checkpoint"],
                                       detector=best), out, DemoSettings(conf=0.001, device="cpu", progress=False))
    frames, _ = imageio_ffmpeg.count_frames_and_secs(str(out))
    assert frames == report["frames"] > 0
    # One keyframe per second of the 3 s clip, every one present even without a detection.
    assert [k["time"] for k in report["keyframes"]] == [0, 1, 2]
    assert report["observations"] > 0 and report["tracker"] == "bytetrack"
    scored = [p["detector_score"] for k in report["keyframes"] for p in k["people"] if p["box_source"] == "observed"]
    assert all(score >= 0.001 for score in scored)


def test_a_detector_without_a_person_class_is_told_to_name_it(tmp_path: Path) -> None:
    from detect.offline import prepare_ultralytics
    from tools.video_detect import PersonDetector

    weights = tmp_path / "unnamed.pt"  # 80 classes named '0'..'79', as a detector trained without names
    prepare_ultralytics().YOLO("yolov8n.yaml").save(str(weights))
    with pytest.raises(ValueError, match=r"unnamed\.pt has no class named 'person' .*say which class is the person "
                                         r"with --person-class N"):
        PersonDetector(weights, None, 0.3, None, "cpu")
    assert PersonDetector(weights, 5, 0.3, None, "cpu").person == 5
    with pytest.raises(ValueError, match=r"--person-class 99 is not a class of .*unnamed\.pt"):
        PersonDetector(weights, 99, 0.3, None, "cpu")
