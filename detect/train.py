"""Train or fine-tune the YOLOv8 person detector on a converted dataset, never touching the network."""
from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from common.cli import run_main
from detect.offline import prepare_ultralytics, resolve_device

LOGGER = logging.getLogger(__name__)

# 320 = the long side of the 320x180 Chaotic World frames: images are never upscaled. ultralytics
# trains on square letterboxed mosaics of this size and validates with rectangular (320x192) batches.
DEFAULT_IMGSZ = 320


def check_weights(weights: str | Path) -> str:
    """Validate the starting point: a model yaml (from scratch) or an existing local ``.pt`` file.

    Raises:
        FileNotFoundError: a ``.pt`` path that does not exist (ultralytics would try to download it).
        ValueError: neither a ``.yaml`` nor a ``.pt``.
    """
    text = str(weights)
    if text.endswith((".yaml", ".yml")):
        # Built-in names such as 'yolov8n.yaml' resolve inside the ultralytics package; a path must exist.
        if (os.sep in text or "/" in text) and not Path(text).is_file():
            raise FileNotFoundError(f"model yaml not found: {text}")
        return text
    if text.endswith(".pt"):
        if not Path(text).is_file():
            raise FileNotFoundError(
                f"detector weights not found: {text}. Download them yourself (e.g. YOLOv8n into pretrained/) "
                "and pass the local path; this project never downloads weights.")
        return str(Path(text).resolve())
    raise ValueError(f"weights must be a model yaml (e.g. 'yolov8n.yaml') or a local .pt file, got {text!r}")


class EpochReports:
    """ultralytics callbacks that hand ``report`` the figures of each finished training epoch, once.

    The figures are the row ultralytics appends to ``results.csv`` for that epoch, taken from the
    trainer: ``epoch`` (1-based), ``epochs``, the training losses (``train/box_loss`` ...), the
    validation metrics (``metrics/mAP50(B)`` ...), the learning rates (``lr/pg0`` ...) and ``time``,
    the seconds since training started (read at the end of the epoch, after the checkpoint is saved).

    ``on_fit_epoch_end`` is not only the end of an epoch: ultralytics runs it once more after the final
    validation of ``best.pt`` (with the epoch counter bumped by one), and an epoch redone after a NaN
    loss runs ``on_train_epoch_end`` twice. So a report needs an ``on_train_epoch_end`` since the last one.
    With several GPUs ultralytics trains in DDP subprocesses, where no callback of this process runs.
    """

    def __init__(self, report: Callable[[dict[str, float]], None]) -> None:
        self.report = report
        self._epoch_trained = False

    def register(self, model: Any) -> None:
        """Add the callbacks to an ``ultralytics.YOLO`` before ``train``."""
        model.add_callback("on_train_epoch_end", self.on_train_epoch_end)
        model.add_callback("on_fit_epoch_end", self.on_fit_epoch_end)

    def on_train_epoch_end(self, trainer: Any) -> None:
        self._epoch_trained = True

    def on_fit_epoch_end(self, trainer: Any) -> None:
        if not self._epoch_trained:  # the final validation of best.pt, not an epoch
            return
        self._epoch_trained = False
        figures = {**trainer.label_loss_items(trainer.tloss), **trainer.metrics, **trainer.lr}
        self.report({"epoch": trainer.epoch + 1, "epochs": trainer.epochs,
                     "time": time.time() - trainer.train_time_start,
                     **{key: float(value) for key, value in figures.items()}})


@dataclass(frozen=True)
class TrainOptions:
    """How ``train_detector`` trains (the command line's options; these defaults are the documented ones).

    Attributes:
        weights: ``'yolov8n.yaml'`` (or another model yaml) to start from scratch, or a local ``.pt``
            (e.g. a COCO-pretrained YOLOv8n) to fine-tune.
        epochs: training epochs.
        imgsz: square training size in pixels (the frames' long side, 320, by default).
        batch: images per batch (-1: ultralytics' automatic batch size, GPU only).
        device: ``'auto'`` (first GPU if any, else CPU), ``'cpu'``, ``'0'``, ``'0,1'``...
        workers: dataloader worker processes.
        rect: rectangular training batches (no mosaic, no shuffling; ultralytics' ``rect``).
        seed: random seed (ultralytics runs deterministic by default).
        name: run folder name under ``out_dir`` (reused: an existing run of that name is overwritten).
        extra: further ``YOLO.train`` arguments (e.g. ``{'lr0': 0.005}``); they override the above.
    """

    weights: str | Path = "yolov8n.yaml"
    epochs: int = 100
    imgsz: int = DEFAULT_IMGSZ
    batch: int = 16
    device: str = "auto"
    workers: int = 4
    rect: bool = False
    seed: int = 0
    name: str = "train"
    extra: dict | None = None


def train_detector(data_yaml: str | Path, out_dir: str | Path, options: TrainOptions = TrainOptions(),
                   on_epoch: Callable[[dict[str, float]], None] | None = None) -> Path:
    """Train a YOLO detector with ultralytics, offline, its run folder inside ``out_dir``.

    Mixed precision is off (``amp=False``): ultralytics' AMP check downloads a model on CUDA; plots are
    off (they need nothing from the network but cost time on CPU).

    Args:
        data_yaml: dataset description written by ``detect.convert`` (``path``, ``train``, ``val``, ``names``).
        out_dir: folder of the run; weights land in ``out_dir/<options.name>/weights/{best,last}.pt``.
        options: starting weights, epochs, size, batch, device, seed... (``TrainOptions``).
        on_epoch: called with the figures of each finished epoch (``EpochReports``), e.g. to log them
            while ultralytics itself is kept quiet.

    Returns:
        Path of ``best.pt`` (``last.pt`` when no validation produced a best checkpoint).

    Raises:
        FileNotFoundError: ``data_yaml`` or a local ``.pt`` is missing.
        ValueError: ``weights`` is neither a yaml nor a ``.pt``.
    """
    data_yaml, out_dir = Path(data_yaml).resolve(), Path(out_dir).resolve()
    if not data_yaml.is_file():
        raise FileNotFoundError(f"dataset yaml not found: {data_yaml} (build it with python -m detect.convert)")
    start = check_weights(options.weights)
    ultralytics = prepare_ultralytics()
    device = resolve_device(options.device)
    arguments = {"data": str(data_yaml), "epochs": options.epochs, "imgsz": options.imgsz, "batch": options.batch,
                 "device": device, "workers": options.workers, "rect": options.rect, "seed": options.seed,
                 "project": str(out_dir), "name": options.name, "exist_ok": True, "amp": False, "plots": False,
                 "verbose": False, **(options.extra or {})}
    LOGGER.info("training %s on %s for %d epoch(s), imgsz %d, device %s", start, data_yaml, options.epochs,
                options.imgsz, device)
    model = ultralytics.YOLO(start)
    if on_epoch is not None:
        EpochReports(on_epoch).register(model)
    model.train(**arguments)
    weights_dir = Path(model.trainer.save_dir) / "weights"
    best, last = weights_dir / "best.pt", weights_dir / "last.pt"
    if best.is_file():
        return best
    if last.is_file():
        LOGGER.warning("no best.pt in %s (no validation ran); returning last.pt", weights_dir)
        return last
    raise RuntimeError(f"training finished but wrote no checkpoint in {weights_dir}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m detect.train",
                                     description="Train the YOLOv8 person detector offline (ultralytics).")
    parser.add_argument("--data", required=True, help="data.yaml written by python -m detect.convert")
    parser.add_argument("--out", required=True, help="run folder (weights in <out>/<name>/weights/)")
    parser.add_argument("--weights", default=TrainOptions.weights,
                        help="'yolov8n.yaml' (from scratch) or a local .pt, e.g. pretrained/yolov8n.pt")
    parser.add_argument("--epochs", type=int, default=TrainOptions.epochs)
    parser.add_argument("--imgsz", type=int, default=TrainOptions.imgsz)
    parser.add_argument("--batch", type=int, default=TrainOptions.batch, help="-1: automatic (GPU only)")
    parser.add_argument("--device", default=TrainOptions.device, help="auto, cpu, 0, 0,1 ...")
    parser.add_argument("--workers", type=int, default=TrainOptions.workers)
    parser.add_argument("--rect", action="store_true", help="rectangular batches (no mosaic)")
    parser.add_argument("--seed", type=int, default=TrainOptions.seed)
    parser.add_argument("--name", default=TrainOptions.name)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the path of the best checkpoint."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    options = TrainOptions(weights=args.weights, epochs=args.epochs, imgsz=args.imgsz, batch=args.batch,
                           device=args.device, workers=args.workers, rect=args.rect, seed=args.seed, name=args.name)
    best = train_detector(args.data, args.out, options)
    print(f"best weights: {best}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
