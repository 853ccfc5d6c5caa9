"""Benchmark: YOLO inference one image per predict call (as the original) vs batched streaming, same images.

    python benchmarks/detect_infer.py [--images 64] [--batch 32] [--weights W.pt] [--frames-root F]
        [--device auto] [--conf 0.0001] [--seed 0]

Without ``--weights`` a yolov8n is built from ``yolov8n.yaml`` with seeded random weights (speed does
not depend on training; its scores stay below 1e-3, hence the low default ``--conf``, which keeps
boxes to compare). Without ``--frames-root`` it writes
N seeded 320x180 PNG frames to a temporary folder; with it, the first N ``*.png`` under that folder
are used. Both methods read the same files at the frame size ``(180, 320)`` and run after one warm-up
call each; the boxes (xyxy pixels and confidence) must agree within ``--tolerance``, else the exit
status is 1. Prints images/s for both and the ratio.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import run_main  # noqa: E402
from detect.convert import image_size  # noqa: E402
from detect.infer import stream_predictions  # noqa: E402
from detect.offline import prepare_ultralytics, resolve_device  # noqa: E402


def write_frames(folder: Path, count: int, seed: int, size: tuple[int, int] = (320, 180)) -> list[Path]:
    """``count`` noisy frames with a few filled rectangles, as PNG files (seeded)."""
    import cv2

    rng = np.random.default_rng(seed)
    width, height = size
    paths = []
    for index in range(count):
        image = rng.integers(60, 180, size=(height, width, 3), dtype=np.uint8)
        for _ in range(int(rng.integers(1, 5))):
            x1, y1 = int(rng.integers(0, width - 40)), int(rng.integers(0, height - 60))
            colour = tuple(int(c) for c in rng.integers(0, 255, 3))
            cv2.rectangle(image, (x1, y1), (x1 + int(rng.integers(15, 40)), y1 + int(rng.integers(30, 60))),
                          colour, thickness=-1)
        path = folder / f"bench_{index + 1:06d}.png"
        cv2.imwrite(str(path), image)
        paths.append(path)
    return paths


def _boxes(result) -> np.ndarray:
    """``[N, 5]`` (x1, y1, x2, y2 pixels, confidence), sorted for comparison."""
    data = np.concatenate([result.boxes.xyxy.cpu().numpy(), result.boxes.conf.cpu().numpy()[:, None]], axis=1)
    return data[np.lexsort(data.T[::-1])] if len(data) else data.reshape(0, 5)


def one_per_call(model, paths: list[str], settings: dict) -> tuple[float, dict[str, np.ndarray]]:
    """The original's loop: one ``predict`` call per image. Returns (seconds, boxes per path)."""
    start = time.perf_counter()
    boxes = {path: _boxes(model.predict(path, verbose=False, save=False, **settings)[0]) for path in paths}
    return time.perf_counter() - start, boxes


def batched(model, paths: list[str], settings: dict, batch: int) -> tuple[float, dict[str, np.ndarray]]:
    """One streaming ``predict`` call over all images, ``batch`` per forward pass (detect.infer's path)."""
    start = time.perf_counter()
    boxes = {str(r.path): _boxes(r) for r in stream_predictions(model, paths, batch, **settings)}
    return time.perf_counter() - start, boxes


def compare(first: dict[str, np.ndarray], second: dict[str, np.ndarray], tolerance: float) -> tuple[int, float]:
    """(images whose boxes differ in count or by more than ``tolerance``, largest difference seen)."""
    differing, largest = 0, 0.0
    for path, boxes in first.items():
        other = second[path]
        if boxes.shape != other.shape:
            differing += 1
            continue
        difference = float(np.abs(boxes - other).max()) if boxes.size else 0.0
        largest = max(largest, difference)
        differing += difference > tolerance
    return differing, largest


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--weights", default=None, help="local .pt (default: random yolov8n from yolov8n.yaml)")
    parser.add_argument("--frames-root", default=None, help="folder of PNG frames (default: generated)")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--conf", type=float, default=1e-4)
    parser.add_argument("--tolerance", type=float, default=1e-2, help="pixels / confidence")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    ultralytics = prepare_ultralytics()
    import torch

    torch.manual_seed(args.seed)
    model = ultralytics.YOLO(args.weights or "yolov8n.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        if args.frames_root:
            paths = sorted(Path(args.frames_root).rglob("*.png"))[: args.images]
        else:
            paths = write_frames(Path(tmp), args.images, args.seed)
        paths = [str(p.absolute()) for p in paths]
        width, height = image_size(Path(paths[0]))
        device = resolve_device(args.device)
        settings = {"imgsz": (height, width), "conf": args.conf, "device": device}
        model.predict(paths[0], verbose=False, **settings)  # warm-up: model fusion, first-call allocations
        list(stream_predictions(model, paths[: args.batch], args.batch, **settings))
        single_s, single = one_per_call(model, paths, settings)
        batched_s, batch = batched(model, paths, settings, args.batch)
    differing, largest = compare(single, batch, args.tolerance)
    single_rate, batched_rate = len(paths) / single_s, len(paths) / batched_s
    boxes = sum(len(b) for b in single.values())
    print(f"device {device} ({torch.get_num_threads()} CPU threads), {len(paths)} images {width}x{height}, "
          f"imgsz {(height, width)}, batch {args.batch}, {boxes} boxes at conf {args.conf}")
    print(f"one image per call : {single_rate:8.1f} images/s ({single_s:.2f} s)")
    print(f"batched streaming  : {batched_rate:8.1f} images/s ({batched_s:.2f} s)")
    print(f"ratio (batched / one per call): {batched_rate / single_rate:.2f}x")
    print(f"boxes equal within {args.tolerance:g}: {len(paths) - differing}/{len(paths)} images "
          f"(largest difference {largest:.2e})")
    return 1 if differing else 0


if __name__ == "__main__":
    raise SystemExit(main())
