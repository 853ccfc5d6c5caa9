"""Benchmark: evaluation keyframes per second with multi-view clips, and the bf16 prediction drift.

Throughput (default):

    python benchmarks/eval_throughput.py [--preset full|tiny] [--vit-depth D] [--frames T] [--size S]
        [--batch B] [--views V] [--boxes K] [--amp auto|off|bf16] [--device auto] [--threads N]
        [--warmup W] [--repeats R] [--seed 0]

Times ``AVAModel.predict(batch)`` plus the score activation on a synthetic batch of
V views per keyframe (odd views flipped, as test-time flips), model in eval mode, for:
- baseline: float32, eager attention (the original);
- ours: SDPA attention, plus with ``--amp bf16`` (``auto``: on a GPU) bf16 autocast and the frozen
  ViT's weights kept in bf16 (``cast_frozen_vit``); float32 on a CPU by default.
Prints keyframes/s for both and the ``RATIO`` line. Defaults: on a GPU the original model (ViT-g 40
blocks, 32x224x224, batch 3, 5 timed batches), on a CPU the original model with a DEPTH-REDUCED
ViT-g (2 blocks), 12x112x112, batch 1, one torch thread, 3 timed batches; 2 views.

Drift (``--amp-drift``):

    python benchmarks/eval_throughput.py --amp-drift [--root DATASET] [--config C.yaml]
        [--checkpoint CKPT] [--frames T --size S] [--device auto] [--threads N]

Runs the config's validation split (its views, temporal and spatial transforms) through
``engine.eval_loop.predict_boxes`` three times with the same weights: float32, bf16 autocast (the
engine's ``amp: bf16``) and bf16 autocast with bf16 ViT weights, and prints the max and mean
|score difference| over every (box, class) against float32 (target <= 0.01; exit status 1 above
it). ``--root`` is a prepared dataset folder (default: a small synthetic one with
``--drift-videos`` validation videos, generated in a temporary folder); ``--config`` defaults to
``configs/tiny_cpu_synthetic.yaml``; without ``--checkpoint`` the model keeps its seeded random
initialisation (the output says so). ``--frames``/``--size`` shrink the ViT clip, the val ``Scale``
and the temporal window together.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from config import LossConfig, ModelConfig, read_yaml, section  # noqa: E402
from benchmarks.common import (PRESET_CONFIGS, add_model_shape_args, add_runtime_args, bench_setup,  # noqa: E402
                               describe_device, setup_runtime, synthetic_batch, time_calls,
                               timing_ratio_line)
from common.cli import run_main  # noqa: E402
from datasets.ava import AVADataset, collate_batch  # noqa: E402
from datasets.transforms import build_spatial_views, build_temporal  # noqa: E402
from engine.attention_kernels import vit_sdpa_backend  # noqa: E402
from engine.context import RunContext  # noqa: E402
from engine.eval_loop import predict_boxes  # noqa: E402
from engine.precision import cast_frozen_vit  # noqa: E402
from models.build import build_model, model_spec  # noqa: E402
from models.model import AVAModel  # noqa: E402
from structures.batch import EvalBatch  # noqa: E402
from tools.prepare_synthetic import prepare_synthetic_dataset  # noqa: E402

DRIFT_TARGET = 0.01


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--amp-drift", action="store_true", help="measure the bf16 score drift on a val split")
    add_model_shape_args(parser, "keyframes per batch", "people per keyframe")
    parser.add_argument("--views", type=int, default=2, help="test-time views per keyframe")
    parser.add_argument("--amp", choices=("auto", "off", "bf16"), default="auto",
                        help="our path's precision (auto: bf16 on GPU, off on CPU)")
    parser.add_argument("--root", type=Path, default=None, help="--amp-drift: prepared dataset folder")
    parser.add_argument("--config", type=Path, default=PRESET_CONFIGS["tiny"], help="--amp-drift: config")
    parser.add_argument("--checkpoint", type=Path, default=None, help="--amp-drift: weights to evaluate")
    parser.add_argument("--drift-videos", type=int, default=3,
                        help="--amp-drift without --root: validation videos to generate (3 keyframes each)")
    add_runtime_args(parser, warmup=None, repeats=None)
    return parser.parse_args(argv)


def _bf16(device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)


def _evaluate_fn(model: AVAModel, batch: EvalBatch, autocast) -> Callable[[], torch.Tensor]:
    def run() -> torch.Tensor:
        with torch.no_grad(), autocast():
            out = model.predict(batch)
        return model.activation(out.logits.float())

    return run


def run_throughput(args: argparse.Namespace, device: torch.device) -> int:
    """Keyframes/s of the evaluation forward, original-style float32 vs ours."""
    on_gpu = device.type == "cuda"
    setup = bench_setup(args, device)
    reduce = setup.reduced
    model_cfg, loss_cfg, frames, size = setup.model_cfg, setup.loss_cfg, setup.frames, setup.size
    batch_size, warmup, repeats = setup.batch_size, setup.warmup, setup.repeats
    amp = args.amp == "bf16" or (args.amp == "auto" and on_gpu)
    model = build_model(model_spec(model_cfg, loss_cfg)).to(device).eval()
    vit = model.backbone.submodule
    depth_note = f", ViT-g DEPTH-REDUCED to {len(vit.blocks)} of 40 blocks" if reduce else ""
    print(f"eval_throughput on {describe_device(device)}")
    print(f"model: preset {args.preset}{depth_note}; {batch_size} keyframe(s) per batch x {args.views} view(s) of "
          f"[3, {frames}, {size}, {size}], {args.boxes} boxes per keyframe")
    batch = synthetic_batch(batch_size, frames, size, args.boxes, model.num_classes, args.seed,
                            views=args.views).to(device)
    vit.set_attn_impl("eager")
    baseline = time_calls(_evaluate_fn(model, batch, contextlib.nullcontext), device, warmup, repeats)
    vit.set_attn_impl("sdpa")
    autocast = contextlib.nullcontext
    ours_name = "float32 SDPA"
    if amp:
        cast_frozen_vit(vit)
        autocast = _bf16(device)
        ours_name = "bf16 autocast + bf16 ViT weights + SDPA"
    with autocast():
        backend = vit_sdpa_backend(vit, batch_size)
    ours = time_calls(_evaluate_fn(model, batch, autocast), device, warmup, repeats)
    for name, timing in (("baseline: float32, eager attention", baseline), (f"ours: {ours_name} [{backend}]", ours)):
        print(f"{name:<58}: {timing.describe()} per batch, {batch_size / timing.median:.3f} keyframes/s, "
              f"{batch_size * args.views / timing.median:.3f} clips/s")
    print(timing_ratio_line("eval keyframes/s", "float32 eager", baseline, ours_name, ours))
    return 0


def _drift_config(path: Path, frames: int | None, size: int | None) -> dict:
    raw = read_yaml(path)
    if frames is not None or size is not None:
        kwargs = raw["model"]["backbone"].setdefault("subbackbone", {}).setdefault("kwargs", {})
        for entry in raw["val"]["augmentation"]["spatial"]:
            if entry["type"] == "Scale" and size is not None:
                entry["kwargs"]["resize"] = [size, size]
        if size is not None:
            kwargs["img_size"] = size
        if frames is not None:
            kwargs["all_frames"] = frames
            raw["val"]["augmentation"]["temporal"]["kwargs"].update(size=2 * frames, step=2)
    raw["model"]["backbone"].pop("pretrain", None)
    (raw["model"]["backbone"].get("subbackbone") or {}).pop("path", None)
    return raw


def _scores(model: AVAModel, loader, device: torch.device, autocast) -> tuple[np.ndarray, list, float]:
    start = time.perf_counter()
    boxes = predict_boxes(RunContext.local(device, autocast), model, loader)
    seconds = time.perf_counter() - start
    keys = [(b.element_index, b.box_index) for b in boxes]
    return np.stack([b.scores for b in boxes]).astype(np.float64), keys, seconds


def run_drift(args: argparse.Namespace, device: torch.device) -> int:
    """Max |score difference| of bf16 evaluation against float32 on the same weights."""
    with contextlib.ExitStack() as stack:
        root = args.root
        if root is None:
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory()))
            root = prepare_synthetic_dataset(folder / "data", val_videos=args.drift_videos, seconds=4)
        raw = _drift_config(args.config, args.frames, args.size)
        model = build_model(model_spec(section(ModelConfig, raw["model"], "model", str(args.config)),
                                       section(LossConfig, raw["loss"], "loss", str(args.config)))).to(device).eval()
        weights = "seeded random initialisation (no --checkpoint)"
        if args.checkpoint is not None:
            from engine.checkpoint import load_checkpoint
            from models.weights import load_state_dict_strict

            load_state_dict_strict(model, load_checkpoint(args.checkpoint)["state_dict"], str(args.checkpoint))
            weights = str(args.checkpoint)
        val = raw["val"]
        views = build_spatial_views(val["augmentation"]["spatial"], "val.augmentation.spatial")
        dataset = AVADataset(root / val["root_path"], root / val["annotation_path"], views,
                             build_temporal(val["augmentation"]["temporal"], "val.augmentation.temporal"),
                             training=False)
        loader = torch.utils.data.DataLoader(dataset, batch_size=val["batch_size"], collate_fn=collate_batch)
        print(f"eval_throughput --amp-drift on {describe_device(device)}")
        print(f"config {args.config.name}, dataset {root if args.root else 'tiny synthetic (generated)'}: "
              f"{len(dataset)} keyframes, {len(views)} view(s); weights: {weights}")
        reference, keys, seconds = _scores(model, loader, device, contextlib.nullcontext)
        print(f"float32: {reference.shape[0]} boxes x {reference.shape[1]} classes, "
              f"{len(dataset) / seconds:.2f} keyframes/s (data + model)")
        cast = copy.deepcopy(model)
        cast_frozen_vit(cast.backbone.submodule)
        worst = 0.0
        for name, variant in (("bf16 autocast (amp: bf16)", model), ("bf16 autocast + bf16 ViT weights", cast)):
            scores, variant_keys, seconds = _scores(variant, loader, device, _bf16(device))
            if variant_keys != keys:
                raise RuntimeError(f"{name} kept different boxes than float32")
            difference = np.abs(scores - reference)
            worst = max(worst, float(difference.max()))
            print(f"{name:<34}: max |score - float32| = {difference.max():.5f}, mean {difference.mean():.6f}, "
                  f"{len(dataset) / seconds:.2f} keyframes/s")
    verdict = "within" if worst <= DRIFT_TARGET else "ABOVE"
    print(f"DRIFT max |bf16 score - float32 score| = {worst:.5f}: {verdict} the target {DRIFT_TARGET}")
    return 0 if worst <= DRIFT_TARGET else 1


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen measurement; returns the exit status."""
    return run_main(parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    device = setup_runtime(args)
    return run_drift(args, device) if args.amp_drift else run_throughput(args, device)


if __name__ == "__main__":
    sys.exit(main())
