"""The demo orchestrator on the tiny synthetic preset: stages, summary.json, skipping completed work."""
from __future__ import annotations

import json
import logging
import re
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from config import load_config
from datasets.synthetic import read_manifest
from detect.train import EpochReports
from engine.plan import make_plan
from formats.annotation_pkl import load_annotation_pkl
from formats.eval_csv import read_ground_truth_csv
from models.build import build_model
from tests.engine_fixtures import write_tiny_config
from tools.demo_detector import log_detector_epoch
from tools.demo_record import format_seconds, headline_figures
from tools.demo_report import format_summary
from tools.demo_stages import DATA_STAGES, DemoContext, run_demo


def _context(out: Path, seed: int = 0) -> DemoContext:
    return DemoContext(out=out, seed=seed, preset="tiny", workers=1)


def test_demo_prepares_the_dataset_end_to_end_and_skips_on_rerun(tmp_path: Path,
                                                                caplog: pytest.LogCaptureFixture) -> None:
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
    check = result["stages"]["check"]
    # Every frame the action config's clips read is decoded, not a sample.
    assert check["ok"] is True and check["frames_decoded"] == check["frames_read"] > 0
    assert check["val"]["decode_mode"] == "all"
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["stages"]) == {"generate", "extract_frames", "annotations", "check"}
    assert summary["stages"]["generate"]["videos"] == 2 and summary["stages"]["generate"]["skipped"] is False
    assert Path(summary["data"]).is_absolute()
    table = format_summary(result, out / "summary.json")
    assert "fighting" in table and "extract_frames" in table

    caplog.clear()
    caplog.set_level(logging.INFO, logger="tools.demo")
    again = run_demo(_context(out), only=DATA_STAGES)
    assert again["stages"]["generate"]["skipped"] is True
    said = [record.getMessage() for record in caplog.records if record.getMessage().startswith("stage ")]
    assert said[:2] == ["stage generate ...",
                        f"stage generate skipped: its outputs are from an earlier run "
                        f"({format_seconds(summary['timings_s']['generate'])} then)"]
    assert not any(line.startswith(("stage generate done", "stage extract_frames done")) for line in said)
    assert again["stages"]["extract_frames"]["skipped"] is True
    # The re-run keeps the time of the run that produced the skipped stages' outputs.
    rerun = json.loads((out / "summary.json").read_text())
    for name in ("generate", "extract_frames"):
        assert rerun["timings_s"][name] == summary["timings_s"][name]
    # ... and its figures: the extraction that made the frames, not the re-run's "0 extracted".
    assert rerun["stages"]["extract_frames"]["extracted"] == 2 and rerun["stages"]["extract_frames"]["skipped"]
    assert rerun["skipped_this_run"] == ["generate", "extract_frames"]
    assert rerun["total_s"] >= summary["timings_s"]["generate"] + summary["timings_s"]["extract_frames"]
    assert set(rerun["this_run_s"]) == set(DATA_STAGES)
    # A partial run leaves the other stages' record in place.
    run_demo(_context(out), only=["check"])
    assert set(json.loads((out / "summary.json").read_text())["stages"]) == set(DATA_STAGES)

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


def _finished_stages() -> dict[str, dict]:
    """Figures of every stage after the action, as the stages return them (full precision)."""
    pair = {"original": {"mAP": 0.377417, "best_capacity": 250, "ties": "original", "tie_band_low": 0.3671,
                         "tie_band_high": 0.3827},
            "merged_stable": {"mAP": 0.5283076460471841, "best_capacity": 179, "ties": "stable",
                              "tie_band_low": 0.5278, "tie_band_high": 0.5309}}
    return {
        "action": {"map_gt_boxes": 0.5283076460471841, "best_capacity_gt": 179, "ties": "stable",
                   "tie_band": [0.5278, 0.5309], "sweep": [1, 299], "epochs": 16, "train_seconds": 1130.04,
                   "skipped": False, "checkpoint": "/r/action/ckpt_16.pth.tar", "predict_csv": "/r/action/p.csv",
                   "plot": "/r/action/m.png", "tensorboard": "/r/action/tb"},
        "detector": {"epochs": 19, "imgsz": 160, "conf": 0.3, "recall": 0.74125, "precision": 0.628, "ap": 0.649,
                     "weights": "/r/detector/best.pt", "proposals": "/r/p.pkl", "quality_plot": "/r/q.png",
                     "skipped": False},
        "action_detector_boxes": {"map_detector_boxes": 0.21874, "best_capacity_detector": 104, "ties": "stable",
                                  "tie_band": [0.2179, 0.2201], "sweep": [1, 299], "skipped": True,
                                  "predict_csv": "/r/action_detector/p.csv", "plot": "/r/action_detector/m.png"},
        "protocols": {"gt": pair, "detector": {**pair, "original": {**pair["original"], "mAP": 0.0685}},
                      "map_gt_boxes_original": 0.377417, "skipped": False},
        "video_demo": {"video": "/r/v.mp4", "frames": 150, "size": "640x360", "boxes": 12, "skipped": False},
    }


def test_summary_prints_the_headline_first_and_labels_every_other_figure(tmp_path: Path) -> None:
    stages = _finished_stages()
    timings = {name: 50.0 for name in stages} | {"action_detector_boxes": 24.2}
    table = format_summary({"stages": stages, "timings_s": timings,
                            "this_run_s": {name: 1.0 for name in stages if name != "video_demo"}},
                           tmp_path / "s.json")
    lines = table.splitlines()
    assert re.search(r"\d+\.\d+%", table).group() == "52.83%"  # the first figure printed is the headline
    first = lines.index("headline: val frame-mAP@0.5 of the action model, merged files, stable ties:")
    assert lines[first + 1] == "  ground-truth boxes 52.83%   |   detector boxes 21.87%"
    assert "the original's protocol: same model, per-row files, original ties, same sweep:" in lines
    assert "  ground-truth boxes 37.74%   |   detector boxes 6.85%" in lines
    assert "  (sweep K = 1..299, no exclusions: best K 179 and 104; tie band 52.78..53.09% and 21.79..22.01%)" in lines
    assert "val recall@0.5 74.1%" in table and "/r/v.mp4 (150 frames 640x360, 12 boxes)" in table
    # The stage table: figures rounded for people, never cut inside one, the skipped stage said so with
    # the time of the run that produced its outputs.
    assert "0.528307" not in table and "map_gt_boxes=52.83%" in table and re.search(r"train_seconds=1130\b(?!\.)", table)
    assert "recall=74.1%" in table and "conf=0.3," in table  # as in the detector's result line
    row = next(line for line in lines if line.lstrip().startswith("action_detector_boxes"))
    assert row.split()[1:4] == ["24", "s", "skipped"]
    assert next(line for line in lines if line.lstrip().startswith("video_demo")).split()[1:4] == ["50", "s", "-"]
    assert "  total                 3 min 44 s  this run took 4.0 s, 1 of 4 stage(s) skipped" in lines
    assert all(len(line) <= 100 for line in lines[:lines.index("outputs:")]), table
    only_gt = format_summary({"stages": {"action": stages["action"]}, "timings_s": {}}, tmp_path / "s.json")
    assert "detector boxes not run" in only_gt


def test_headline_keys_are_the_printed_headline(tmp_path: Path) -> None:
    figures = headline_figures(_finished_stages())
    assert figures["map_gt_boxes"] == 0.5283076460471841 and figures["map_detector_boxes"] == 0.21874
    assert figures["headline_rule"] == "merged files, stable ties"
    assert figures["tie_band_gt"] == [0.5278, 0.5309]
    assert figures["map_gt_boxes_original"] == 0.377417 and figures["map_detector_boxes_original"] == 0.0685
    assert figures["tie_band_detector_original"] == [0.3671, 0.3827]
    assert figures["detector_recall"] == 0.74125 and figures["video_demo"] == "/r/v.mp4"


def _fake_action_stage(out: Path) -> None:
    """What the action stage leaves behind, from a freshly built tiny model (training is tested elsewhere)."""
    action = out / "action"
    action.mkdir(parents=True)
    config = write_tiny_config(action / "demo_config.yaml", action)
    plan = make_plan(load_config(config))
    torch.manual_seed(0)
    model = build_model(plan.model)
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
