"""The demo orchestrator on the tiny synthetic preset: stages, summary.json, skipping completed work."""
from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from config import load_config
from datasets.synthetic import read_manifest
from formats.annotation_pkl import load_annotation_pkl
from formats.eval_csv import read_ground_truth_csv
from models.build import build_model
from tests.engine_fixtures import write_tiny_config
from detect.train import EpochReports
from tools.demo import DATA_STAGES, DemoContext, format_summary, headline_figures, run_demo
from tools.demo_detector import log_detector_epoch


def _context(out: Path, seed: int = 0) -> DemoContext:
    return DemoContext(out=out, seed=seed, preset="tiny", workers=1)


def test_demo_prepares_the_dataset_end_to_end_and_skips_on_rerun(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_demo(_context(out), only=DATA_STAGES)
    assert list(result["timings_s"]) == list(DATA_STAGES)
    data = out / "data" / "AR_ava_format"
    train = load_annotation_pkl(data / "cw_data_train1fps_merged.pkl")
    assert train.elements and len(train.classes) == 50
    # The demo trains on merged pkls (one element per keyframe), never under the original's names.
    assert len(train.elements) == len({(e["video"], e["time"]) for e in train.elements})
    assert not (data / "cw_data_test1fps.pkl").exists() and not (data / "cw_data_train1fps_woXGXJVBCQ.pkl").exists()
    ground_truth = read_ground_truth_csv(data / "chaos_test_t_+1.csv")
    assert len(ground_truth.video) == result["stages"]["annotations"]["ground_truth_rows"] > 0
    assert result["stages"]["check"]["ok"] is True
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["stages"]) == {"generate", "extract_frames", "annotations", "check"}
    assert summary["stages"]["generate"]["videos"] == 2 and summary["stages"]["generate"]["skipped"] is False
    table = format_summary(result, out / "summary.json")
    assert "fighting" in table and "extract_frames" in table

    again = run_demo(_context(out), only=DATA_STAGES)
    assert again["stages"]["generate"]["skipped"] is True
    assert again["stages"]["extract_frames"]["extracted"] == 0

    # Another seed regenerates, and the old frames go with the old videos.
    other = run_demo(_context(out, seed=1), only=DATA_STAGES)
    assert other["stages"]["generate"]["skipped"] is False
    videos = set(read_manifest(out / "data")["video_ids"])
    assert {path.name for path in (out / "data" / "frames").iterdir()} == videos


def test_demo_refuses_to_wipe_a_foreign_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "demo" / "data"
    data.mkdir(parents=True)
    (data / "my_thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="my_thesis.tex"):
        run_demo(_context(tmp_path / "demo"), only=["generate"])
    assert (data / "my_thesis.tex").exists()
    assert "error" in json.loads((tmp_path / "demo" / "summary.json").read_text())


def test_unknown_stage_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="trainn"):
        run_demo(_context(tmp_path), only=["trainn"])


def test_summary_shows_both_maps_side_by_side_and_the_headline_keys(tmp_path: Path) -> None:
    stages = {
        "detector": {"epochs": 12, "imgsz": 256, "conf": 0.3, "recall": 0.8125, "precision": 0.9, "ap": 0.75,
                     "weights": "w.pt", "proposals": "p.pkl"},
        "action": {"map_gt_boxes": 0.4228, "best_capacity_gt": 7, "checkpoint": "c", "predict_csv": "a.csv",
                   "plot": "a.png", "tensorboard": "tb"},
        "action_detector_boxes": {"map_detector_boxes": 0.2662, "best_capacity_detector": 9, "predict_csv": "d.csv"},
        "video_demo": {"video": "v.mp4", "frames": 150, "size": "640x360", "boxes": 12},
    }
    table = format_summary({"stages": stages, "timings_s": {name: 1.0 for name in stages}}, tmp_path / "s.json")
    assert "ground-truth boxes 42.28% (capacity 7)   |   detector boxes 26.62% (capacity 9)" in table
    assert "val recall@0.5 81.2%" in table and "annotated video: v.mp4" in table
    assert headline_figures(stages) == {"map_gt_boxes": 0.4228, "map_detector_boxes": 0.2662,
                                        "detector_recall": 0.8125, "detector_ap": 0.75, "video_demo": "v.mp4"}
    only_gt = format_summary({"stages": {"action": stages["action"]}, "timings_s": {}}, tmp_path / "s.json")
    assert "detector boxes not run" in only_gt


def _fake_action_stage(out: Path) -> None:
    """What the action stage leaves behind, from a freshly built tiny model (training is tested elsewhere)."""
    action = out / "action"
    action.mkdir(parents=True)
    config = write_tiny_config(action / "demo_config.yaml", action)
    cfg = load_config(config)
    torch.manual_seed(0)
    model = build_model(cfg.model, cfg.loss)
    checkpoint = action / "ckpt_1.pth.tar"
    torch.save({"epoch": 1, "state_dict": model.state_dict(), "optimizer": {}, "scheduler": {}}, checkpoint)
    (action / "run_summary.json").write_text(json.dumps({"checkpoints": [str(checkpoint)]}))


@pytest.mark.slow
def test_detector_stages_train_propose_evaluate_annotate_and_skip_on_rerun(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    ctx = _context(out)
    # One epoch cannot reach 0.3: a low threshold keeps boxes to evaluate the action model on.
    ctx.detector.update(epochs=1, imgsz=160, batch=4, conf=0.01)
    run_demo(ctx, only=DATA_STAGES)
    _fake_action_stage(out)
    later = ("detector", "action_detector_boxes", "video_demo")
    result = run_demo(ctx, only=later)
    detector, boxes, video = (result["stages"][name] for name in later)
    proposals = load_annotation_pkl(out / "data" / "AR_ava_format" / "cw_test_yolov8_demo_merged.pkl")
    val = load_annotation_pkl(out / "data" / "AR_ava_format" / "cw_data_test1fps_merged.pkl")
    assert {(e["video"], e["time"]) for e in proposals.elements} == {(e["video"], e["time"]) for e in val.elements}
    assert len(proposals.elements) == len(val.elements)  # merged: one element per keyframe
    assert 0.0 <= detector["recall"] <= 1.0 and Path(detector["quality_plot"]).is_file()
    assert (out / "detector" / "train" / "results.csv").is_file() and Path(detector["weights"]).is_file()
    assert 0.0 <= boxes["map_detector_boxes"] <= 1.0 and boxes["detector_recall"] == detector["recall"]
    assert Path(boxes["predict_csv"]).parent == out / "action_detector"
    assert Path(video["video"]).is_file() and video["frames"] > 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["detector_recall"] == detector["recall"]
    assert summary["map_detector_boxes"] == boxes["map_detector_boxes"]

    again = run_demo(ctx, only=later)
    assert all(again["stages"][name]["skipped"] for name in later)
    assert again["stages"]["action_detector_boxes"]["map_detector_boxes"] == boxes["map_detector_boxes"]


class _Model:
    """Stands in for ``ultralytics.YOLO``: keeps the callbacks, runs them as its trainer would."""

    def __init__(self) -> None:
        self.callbacks: dict[str, list] = {}

    def add_callback(self, event: str, callback) -> None:
        self.callbacks.setdefault(event, []).append(callback)

    def run(self, event: str, trainer: SimpleNamespace) -> None:
        for callback in self.callbacks.get(event, []):
            callback(trainer)


def _trainer(epoch: int, seconds: float, losses: tuple[float, ...], recall: float, map50: float) -> SimpleNamespace:
    names = ("train/box_loss", "train/cls_loss", "train/dfl_loss")
    return SimpleNamespace(epoch=epoch, epochs=3, tloss=losses, label_loss_items=lambda tloss: dict(zip(names, tloss)),
                           metrics={"metrics/recall(B)": recall, "metrics/mAP50(B)": map50}, lr={"lr/pg0": 0.004},
                           train_time_start=time.time() - seconds)


def test_epoch_log_reports_each_finished_detector_epoch_once(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="tools.demo")
    model = _Model()
    EpochReports(log_detector_epoch).register(model)
    # The order of ultralytics' BaseTrainer: epoch 1 is redone after a NaN loss (its first pass ends
    # with on_train_epoch_end only), epoch 2 ends early (stopper), then the final validation of
    # best.pt runs on_fit_epoch_end once more with the epoch counter bumped: not an epoch.
    first = _trainer(0, 5.2, (4.1, 3.2, 3.3), 0.1, 0.05)
    model.run("on_train_epoch_end", first)
    model.run("on_train_epoch_end", first)
    model.run("on_fit_epoch_end", first)
    second = _trainer(1, 10.2, (3.1, 2.2, 2.3), 0.5, 0.4)
    model.run("on_train_epoch_end", second)
    model.run("on_fit_epoch_end", second)
    model.run("on_fit_epoch_end", _trainer(2, 11.0, (3.1, 2.2, 2.3), 0.6, 0.45))
    lines = [record.getMessage() for record in caplog.records if "detector epoch" in record.getMessage()]
    assert lines == ["detector epoch 1/3: loss box 4.100 cls 3.200 dfl 3.300 | val recall 0.100 mAP50 0.050 | 5 s",
                     "detector epoch 2/3: loss box 3.100 cls 2.200 dfl 2.300 | val recall 0.500 mAP50 0.400 | 10 s"]
