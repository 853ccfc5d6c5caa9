"""Detector stage end to end on CPU: offline 1-epoch training (audited for network use), proposals, resume."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import detect.infer as infer
from detect.convert import convert_to_yolo
from detect.offline import prepare_ultralytics
from detect.infer import (DetectOptions, detect_to_proposals, labels_from_result, load_keyframe_source,
                          main as infer_main, person_class_index, stream_predictions)
from detect.train import TrainOptions, check_weights, train_detector
from formats.annotation_pkl import load_annotation_pkl
from formats.official_csv import read_official_csv
from tests.test_detect_convert import TRAIN_CSV, VAL_CSV, render_frames

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter so that the audit hook sees ultralytics' import, and with a fresh
# settings folder so that the first-run setup (font, settings file) is audited too.
_TRAIN_SCRIPT = textwrap.dedent("""
    import json, socket, sys
    events = []
    def hook(event, args):
        if event.startswith("socket.") or event == "urllib.Request":
            events.append([event, repr(args)[:200]])
    sys.addaudithook(hook)
    from detect.train import TrainOptions, train_detector
    reports = []
    best = train_detector(sys.argv[1], sys.argv[2], TrainOptions(weights="yolov8n.yaml", epochs=1, imgsz=320, batch=4,
                                                                 device="cpu", workers=0), on_epoch=reports.append)
    from detect.infer import DetectOptions, detect_to_proposals
    detect_to_proposals(best, sys.argv[4], sys.argv[5], sys.argv[6], DetectOptions(conf=0.3, device="cpu",
                                                                                   progress=False))
    network = list(events)
    # Positive control: the hook does see a name lookup.
    try:
        socket.getaddrinfo("localhost", 80)
    except OSError:
        pass
    control = any(event == "socket.getaddrinfo" for event, _ in events[len(network):])
    json.dump({"events": network, "control": control, "best": str(best), "epoch_reports": reports},
              open(sys.argv[3], "w"))
""")


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Tiny dataset, frames and a 1-epoch yolov8n trained (then run once) offline in an audited subprocess."""
    root = tmp_path_factory.mktemp("detector")
    frames = root / "frames"
    render_frames(TRAIN_CSV, frames)
    render_frames(VAL_CSV, frames)
    data_yaml = convert_to_yolo(TRAIN_CSV, VAL_CSV, frames, root / "yolo")["data_yaml"]
    env = {key: value for key, value in os.environ.items() if not key.startswith("YOLO_")}
    env.update(YOLO_CONFIG_DIR=str(root / "ultralytics_config"), PYTHONPATH=str(ROOT))
    result = root / "result.json"
    command = [sys.executable, "-c", _TRAIN_SCRIPT, data_yaml, str(root / "runs"), str(result), str(VAL_CSV),
               str(frames), str(root / "audited_proposals.pkl")]
    process = subprocess.run(command,
                             cwd=root, env=env, capture_output=True, text=True, timeout=300)
    assert process.returncode == 0, process.stderr[-3000:]
    return {"root": root, "frames": frames, "config": root / "ultralytics_config", **json.loads(result.read_text())}


def test_each_finished_epoch_is_reported_once_with_the_results_csv_figures(trained: dict) -> None:
    # ultralytics runs on_fit_epoch_end twice for a 1-epoch run (the epoch, then the final validation
    # of best.pt): one report only, with the figures of the row it wrote to results.csv.
    (report,) = trained["epoch_reports"]
    assert report["epoch"] == 1 and report["epochs"] == 1
    results = Path(trained["best"]).parents[1] / "results.csv"
    (row,) = list(csv.DictReader(results.read_text().splitlines()))
    row = {key.strip(): float(value) for key, value in row.items()}
    assert set(row) == set(report) - {"epochs"}
    for key in set(row) - {"epoch", "time"}:  # the csv holds 6 significant digits
        assert report[key] == pytest.approx(row[key], rel=1e-5, abs=1e-9), key
    assert row["time"] - 0.01 <= report["time"] < row["time"] + 30  # read after the checkpoint is saved


def test_training_and_inference_are_offline(trained: dict) -> None:
    assert trained["control"], "the audit hook did not record a name lookup: the check below would be void"
    assert trained["events"] == []
    assert load_annotation_pkl(trained["root"] / "audited_proposals.pkl").elements
    best = Path(trained["best"])
    assert best.name == "best.pt" and best.is_file() and (best.parent / "last.pt").is_file()
    assert best.is_relative_to(trained["root"] / "runs")
    # Settings and the stand-in font live in the given config folder, not in the user's home.
    assert (trained["config"] / "Ultralytics" / "settings.json").is_file()
    assert (trained["config"] / "Ultralytics" / "Arial.ttf").is_file()
    assert json.loads((trained["config"] / "Ultralytics" / "settings.json").read_text())["sync"] is False


def test_missing_local_weights_are_named_not_downloaded(tmp_path: Path) -> None:
    missing = tmp_path / "yolov8n.pt"
    with pytest.raises(FileNotFoundError, match="yolov8n.pt"):
        check_weights(missing)
    with pytest.raises(FileNotFoundError, match="yolov8n.pt"):
        train_detector(TRAIN_CSV, tmp_path / "runs", TrainOptions(weights=missing))  # any existing file as data
    with pytest.raises(ValueError, match="yolov8n"):
        check_weights("yolov8n")
    assert check_weights("yolov8n.yaml") == "yolov8n.yaml"


def test_labels_from_result_keeps_confident_persons_normalised_by_the_image() -> None:
    import torch

    prepare_ultralytics()
    from ultralytics.engine.results import Results

    image = np.zeros((90, 160, 3), dtype=np.uint8)  # not 320x180: the size comes from the image
    boxes = torch.tensor([[16.0, 9.0, 80.0, 45.0, 0.9, 0.0],   # person, kept
                          [0.0, 0.0, 10.0, 10.0, 0.8, 1.0],    # other class
                          [0.0, 0.0, 5.0, 5.0, 0.1, 0.0]])     # below conf
    result = Results(orig_img=image, path="frame.png", names={0: "person", 1: "car"}, boxes=boxes)
    entries = labels_from_result(result, person=0, conf=0.3, keep_scores=True)
    assert len(entries) == 1
    assert entries[0]["label"] == [0] and entries[0]["person_id"] == [0]
    np.testing.assert_allclose(entries[0]["bounding_box"], [0.1, 0.1, 0.5, 0.5], atol=1e-6)
    assert entries[0]["score"] == pytest.approx(0.9)
    assert "score" not in labels_from_result(result, 0, 0.3, keep_scores=False)[0]
    assert person_class_index({0: "car", 1: "Person"}) == 1
    with pytest.raises(ValueError, match="no 'person' class"):
        person_class_index({0: "car", 1: "bus"})


def test_proposals_hold_every_keyframe_in_the_released_schema(trained: dict, tmp_path: Path) -> None:
    out = tmp_path / "proposals.pkl"
    # A 1-epoch model is not confident: conf 0.3 leaves every keyframe empty, which must still be listed.
    stats = detect_to_proposals(trained["best"], VAL_CSV, trained["frames"], out,
                                DetectOptions(conf=0.3, batch=2, merge=True, progress=False))
    loaded = load_annotation_pkl(out)
    rows = read_official_csv(VAL_CSV)
    expected = [(r.video, int(r.time), r.start_frame, r.n_frames, r.keyframe) for r in rows[::2]]
    got = [(e["video"], e["time"], e["start_frame"], e["n_frames"], e["mid_frame"]) for e in loaded.elements]
    assert got == expected
    assert all(e["format_str"] == "vidV1_%06d.png" and e["frame_rate"] == 25 for e in loaded.elements)
    assert stats["keyframes"] == 3 and stats["empty_keyframes"] == 3 and len(loaded.classes) == 50
    # A low threshold gives boxes: normalised, person, scored, at least the threshold. By default one
    # element per csv row, as the original's detect2pkl.py: k copies of a keyframe with k rows, each
    # holding all of its boxes.
    low = tmp_path / "low.pkl"
    stats = detect_to_proposals(trained["best"], VAL_CSV, trained["frames"], low,
                                DetectOptions(conf=0.005, batch=2, progress=False))
    elements = load_annotation_pkl(low).elements
    assert len(elements) == len(rows) == 6 and stats["keyframes"] == 3 and stats["boxes"] > 0
    assert [(e["video"], e["time"], e["mid_frame"]) for e in elements] == [(r.video, int(r.time), r.keyframe)
                                                                           for r in rows]
    merged = tmp_path / "low_merged.pkl"
    detect_to_proposals(trained["best"], VAL_CSV, trained["frames"], merged,
                        DetectOptions(conf=0.005, batch=2, merge=True, progress=False))
    boxes_of = {(e["video"], e["time"]): e["labels"] for e in load_annotation_pkl(merged).elements}
    assert len(boxes_of) == 3
    for element in elements:  # two separate runs: the same boxes up to float noise
        mine, theirs = element["labels"], boxes_of[(element["video"], element["time"])]
        assert len(mine) == len(theirs)
        np.testing.assert_allclose([b["bounding_box"] for b in mine], [b["bounding_box"] for b in theirs],
                                   atol=1e-5)
    entries = [entry for element in elements for entry in element["labels"]]
    assert all(entry["label"] == [0] and entry["person_id"] == [0] and entry["score"] >= 0.005 for entry in entries)
    boxes = np.array([entry["bounding_box"] for entry in entries])
    assert boxes.min() >= 0.0 and boxes.max() <= 1.0
    assert elements[0]["labels"] == elements[1]["labels"] and elements[0]["labels"] is not elements[1]["labels"]
    # The proposals pkl itself lists keyframes: an annotation pkl works as the source.
    again = tmp_path / "again.pkl"
    detect_to_proposals(trained["best"], out, trained["frames"], again, DetectOptions(conf=0.3, progress=False))
    assert load_annotation_pkl(again).elements == loaded.elements


def test_interrupted_inference_resumes_from_its_state(trained: dict, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "proposals.pkl"
    real = infer.labels_from_result
    calls = []

    def failing(*args, **kwargs):
        if len(calls) == 2:
            raise KeyboardInterrupt  # as a user's Ctrl-C mid-run
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(infer, "labels_from_result", failing)
    with pytest.raises(KeyboardInterrupt):  # no periodic save yet: the interrupt itself saves the state
        detect_to_proposals(trained["best"], VAL_CSV, trained["frames"], out,
                            DetectOptions(conf=0.005, batch=1, checkpoint_every=1000, progress=False))
    state = out.with_name(out.name + ".partial")
    assert state.is_file() and not out.exists()

    def counting(*args, **kwargs):
        calls.append(1)
        return real(*args, **kwargs)

    calls.clear()
    monkeypatch.setattr(infer, "labels_from_result", counting)
    stats = detect_to_proposals(trained["best"], VAL_CSV, trained["frames"], out,
                                DetectOptions(conf=0.005, batch=1, checkpoint_every=1, progress=False))
    assert stats["resumed"] == 2 and len(calls) == 1  # only the third keyframe was detected again
    assert not state.exists()
    # A fresh run gives the same boxes, and saves its state every checkpoint_every keyframes.
    saves = []
    real_save = infer._save_state
    monkeypatch.setattr(infer, "_save_state", lambda *args: (saves.append(len(args[2])), real_save(*args)))
    fresh = tmp_path / "fresh.pkl"
    detect_to_proposals(trained["best"], VAL_CSV, trained["frames"], fresh,
                        DetectOptions(conf=0.005, batch=1, checkpoint_every=1, progress=False))
    assert saves == [1, 2, 3]
    np.testing.assert_allclose(_boxes(out), _boxes(fresh), atol=1e-5)


def test_predictions_stream_in_batches_of_the_requested_size(trained: dict, tmp_path: Path,
                                                            capsys: pytest.CaptureFixture) -> None:
    model = prepare_ultralytics().YOLO(trained["best"])
    sizes: list[int] = []
    model.add_callback("on_predict_batch_start", lambda predictor: sizes.append(len(predictor.batch[1])))
    paths = sorted(str(p) for p in (trained["frames"] / "vidV1").glob("*.png"))
    results = list(stream_predictions(model, paths, batch=2, conf=0.3, imgsz=(180, 320), device="cpu"))
    # A plain list source would be decoded at once and run as one batch of 3.
    assert sizes == [2, 1] and [str(r.path) for r in results] == paths
    out = tmp_path / "cli.pkl"
    argv = ["--weights", trained["best"], "--source", str(VAL_CSV), "--frames-root", str(trained["frames"]),
            "--out", str(out), "--device", "cpu"]
    assert infer_main(argv) == 0
    assert "6 elements, 3 keyframes" in capsys.readouterr().out and out.is_file()
    # --merge opts in to one element per keyframe; --per-row (the default) is still accepted.
    assert infer_main([*argv, "--merge", "--no-resume"]) == 0
    assert "3 elements, 3 keyframes" in capsys.readouterr().out
    assert infer_main([*argv, "--per-row", "--no-resume"]) == 0
    assert "6 elements, 3 keyframes" in capsys.readouterr().out


def _boxes(path: Path) -> np.ndarray:
    return np.array([entry["bounding_box"] for e in load_annotation_pkl(path).elements for entry in e["labels"]])


def test_missing_keyframe_frame_fails_before_inference(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    render_frames(VAL_CSV, frames)
    (frames / "vidV1" / "vidV1_000050.png").unlink()
    weights = tmp_path / "w.pt"
    weights.write_bytes(b"not loaded: the frame check comes first")
    with pytest.raises(FileNotFoundError, match="vidV1_000050.png"):
        detect_to_proposals(weights, VAL_CSV, frames, tmp_path / "p.pkl", DetectOptions(progress=False))
    assert len(load_keyframe_source(VAL_CSV).distinct()) == 3
