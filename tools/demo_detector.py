"""The demo's detector stage: YOLOv8n trained from scratch on the synthetic train keyframes, its val
proposals and their quality (``tools/demo_stages.py`` runs it, with its skip marker).

ultralytics is kept quiet (``YOLO_VERBOSE=0``, ``verbose=False``); each finished epoch is logged here
from the trainer's own figures (``detect.train.EpochReports``, ultralytics' ``on_fit_epoch_end``).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from detect.convert import convert_to_yolo
from detect.infer import DetectOptions, detect_to_proposals
from detect.quality import format_table, proposal_quality, save_report
from detect.train import TrainOptions, train_detector
from engine.threads import torch_threads_kept

# One logger for the whole demo, whichever of its modules logs.
LOGGER = logging.getLogger("tools.demo")

# YOLOv8n from scratch on the train keyframes (large, clear synthetic people), measured here (2 CPU
# cores shared with other jobs) on 114 train keyframes: at 160 px (people stay >= 20 px tall) an
# epoch took ~6 s against ~15 s at 256 px; 25 / 40 epochs gave val person recall@0.5 65% / 80% at
# confidence 0.3 (AP 54% / 69%). What matters is the number of images seen, so "epochs": None sizes
# the run to DETECTOR_IMAGE_BUDGET of them (kept within DETECTOR_EPOCH_RANGE) whatever the preset.
# AdamW at a fixed 0.004 with a 1-epoch warmup learns much faster than ultralytics' automatic
# choice; mosaic off for the last epochs adapts the model to the plain val frames.
DETECTOR_SETTINGS = {"weights": "yolov8n.yaml", "epochs": None, "imgsz": 160, "batch": 8, "conf": 0.3, "seed": 0,
                     "extra": {"optimizer": "AdamW", "lr0": 0.004, "warmup_epochs": 1, "close_mosaic": 8}}
DETECTOR_IMAGE_BUDGET = 3600
DETECTOR_EPOCH_RANGE = (12, 40)


def log_detector_epoch(figures: dict[str, float]) -> None:
    """One log line for a finished detector epoch (the figures of ``detect.train.EpochReports``)."""
    LOGGER.info("detector epoch %s/%s: loss box %.3f cls %.3f dfl %.3f | val recall %.3f mAP50 %.3f | %.0f s",
                figures["epoch"], figures["epochs"], *(figures.get(key, float("nan")) for key in (
                    "train/box_loss", "train/cls_loss", "train/dfl_loss", "metrics/recall(B)", "metrics/mAP50(B)",
                    "time")))


def detector_epochs(train_images: int) -> int:
    """Epochs that show the detector about DETECTOR_IMAGE_BUDGET images, within DETECTOR_EPOCH_RANGE."""
    low, high = DETECTOR_EPOCH_RANGE
    return max(low, min(high, round(DETECTOR_IMAGE_BUDGET / max(1, train_images))))


def train_and_score_detector(folder: Path, train_csv: Path, val_csv: Path, frames: Path, val_pkl: Path,
                             proposals: Path, settings: dict, workers: int) -> dict:
    """Convert, train (in ``folder``), write the val ``proposals`` and score them against ``val_pkl``.

    Args:
        settings: ``DETECTOR_SETTINGS``-like; ``"epochs": None`` sizes the run with ``detector_epochs``.
        workers: the detector's data-loading processes.

    Returns:
        The stage's figures (epochs, recall, precision, AP, paths of the weights, proposals and report).
    """
    counts = convert_to_yolo(train_csv, val_csv, frames, folder / "yolo")
    epochs = settings["epochs"] or detector_epochs(counts["train"]["images"])
    started = time.perf_counter()
    with torch_threads_kept():
        options = TrainOptions(weights=settings["weights"], epochs=epochs, imgsz=settings["imgsz"],
                               batch=settings["batch"], device="auto", workers=workers, seed=settings["seed"],
                               name="train", extra=settings["extra"])
        weights = train_detector(counts["data_yaml"], folder, options, on_epoch=log_detector_epoch)
        train_seconds = time.perf_counter() - started
        # Inference at the training size: the people then have the scale the detector learnt.
        stats = detect_to_proposals(weights, val_csv, frames, proposals,
                                    DetectOptions(conf=settings["conf"], imgsz=settings["imgsz"], resume=False,
                                                  merge=True, progress=False))
    report = proposal_quality(proposals, val_pkl)
    save_report(report, folder / "quality.json", folder / "quality_pr.png")
    LOGGER.info("detector quality on the val keyframes (confidence >= %g):\n%s", settings["conf"],
                format_table(report))
    overall = report.overall
    figures = {"epochs": epochs, "imgsz": settings["imgsz"], "conf": settings["conf"],
               "train_images": counts["train"]["images"], "train_seconds": round(train_seconds, 1),
               "recall": overall.recall["0.5"], "precision": overall.precision, "ap": overall.ap,
               "recall_iou": overall.recall, "boxes": stats["boxes"], "empty_keyframes": stats["empty_keyframes"],
               "weights": str(weights), "proposals": str(proposals), "quality_json": str(folder / "quality.json"),
               "quality_plot": str(folder / "quality_pr.png")}
    return figures
