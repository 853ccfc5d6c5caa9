"""Benchmark: seconds per training iteration of the full action model, float32 vs bf16 amp (vs amp + ViT cache).

    python benchmarks/train_step.py [--preset full|tiny] [--vit-depth D] [--frames T] [--size S]
        [--batch B] [--boxes K] [--device auto] [--threads N] [--warmup W] [--repeats R] [--seed 0]

One iteration = forward (SlowFast + frozen ViT + neck + ACAR head), loss, backward, AdamW step, on a
synthetic batch in the datasets -> models contract (random clips, K annotated people per clip), the
model in training mode as ``main.py`` trains it. Variants, timed one after the other, each from the
same initial weights with a fresh optimiser:
- ``float32``: float32, eager attention (the original);
- ``amp``: bf16 autocast (the engine's ``amp: bf16``) with SDPA attention;
- ``amp+cache``: as ``amp``, with the frozen ViT's statistics taken from the feature cache
  (``models.vit_cache``) instead of running the ViT. Only when that module exists in this checkout
  and the model accepts ``vit_stats``; the statistics are computed once before timing, so the time
  of reading them from the cache on disk is NOT included. Skipped otherwise (the output says why).
Prints seconds per iteration, ViT tokens per second, peak GPU memory on a GPU, and ``RATIO`` lines
against ``float32``.

Defaults: on a GPU the original model (ViT-g, 40 blocks; 32 frames at 224x224; batch 3); on a CPU
the original model with a DEPTH-REDUCED ViT-g (2 blocks), 12 frames at 112x112, batch 1, one torch
thread, 3 timed iterations per variant (about 30 s), which the output says. 12 frames keep the slow pathway at 3
frames: with 2, torch 2.14's CPU bf16 Conv3d weight gradients are wrong (RESULTS.md).
``--preset tiny`` is ``configs/tiny_cpu_synthetic.yaml``'s small model.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import dataclasses
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (PRESET_CONFIGS, add_model_shape_args, add_runtime_args, bench_setup,  # noqa: E402
                               describe_device, setup_runtime, synthetic_batch, time_calls,
                               timing_ratio_line)
from common.cli import run_main  # noqa: E402
from engine.attention_kernels import vit_sdpa_backend  # noqa: E402
from models.build import build_model, model_spec  # noqa: E402
from models.model import AVAModel  # noqa: E402
from structures.batch import TrainBatch  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_shape_args(parser, "clips per iteration", "annotated people per clip")
    add_runtime_args(parser, warmup=None, repeats=None)
    return parser.parse_args(argv)


def _cache_support() -> tuple[Callable | None, str]:
    """``(compute_vit_stats, '')`` when the feature cache exists in this checkout, else ``(None, why)``."""
    try:
        from models.vit_cache import compute_vit_stats
    except ImportError as exc:
        return None, f"models.vit_cache not available ({exc})"
    return compute_vit_stats, ""


def make_step(model: AVAModel, optimizer: torch.optim.Optimizer, batch: TrainBatch,
              autocast: Callable[[], contextlib.AbstractContextManager]) -> Callable[[], float]:
    """One training iteration as ``engine.train_loop`` runs it (loss in float32, outside autocast)."""

    def step() -> float:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            outputs = model(batch)
        loss = model.loss(outputs.logits.float(), outputs.targets)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    return step


def _cached_batch(model: AVAModel, batch: TrainBatch, autocast, compute_vit_stats: Callable) -> TrainBatch:
    """The batch with the ViT's statistics attached, as a cache hit would deliver them."""
    vit = model.backbone.submodule
    was_training = vit.training
    vit.eval()  # the cache holds eval-mode features (drop-path off)
    with torch.no_grad(), autocast():
        stats = compute_vit_stats(vit(batch.view.clips))
    vit.train(was_training)
    return dataclasses.replace(batch, view=batch.view.with_vit_stats(stats))


def main(argv: Sequence[str] | None = None) -> int:
    """Time the variants and print the figures; returns the exit status."""
    return run_main(parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    device = setup_runtime(args)
    on_gpu = device.type == "cuda"
    setup = bench_setup(args, device)
    model_cfg, loss_cfg, frames, size = setup.model_cfg, setup.loss_cfg, setup.frames, setup.size
    batch_size, warmup, repeats = setup.batch_size, setup.warmup, setup.repeats
    model = build_model(model_spec(model_cfg, loss_cfg)).to(device).train()
    vit = model.backbone.submodule
    tokens = batch_size * vit.patch_embed.num_patches
    depth_note = ""
    if args.preset == "full" and len(vit.blocks) != 40:
        depth_note = f", ViT-g DEPTH-REDUCED to {len(vit.blocks)} of 40 blocks"
    print(f"train_step on {describe_device(device)}")
    print(f"model: preset {args.preset} ({PRESET_CONFIGS[args.preset].name}){depth_note}, "
          f"ViT width {vit.embed_dim}; batch [{batch_size}, 3, {frames}, {size}, {size}], {args.boxes} boxes per clip, "
          f"{tokens} ViT tokens per iteration; ViT in train mode (drop-path on, quirk 6)")
    batch = synthetic_batch(batch_size, frames, size, args.boxes, model.num_classes, args.seed).to(device)
    initial = copy.deepcopy(model.state_dict())
    bf16 = lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)  # noqa: E731

    compute_vit_stats, why_not = _cache_support()
    variants = [("float32", "eager", contextlib.nullcontext, batch), ("amp", "sdpa", bf16, batch)]
    if compute_vit_stats is not None:
        variants.append(("amp+cache", "sdpa", bf16, _cached_batch(model, batch, bf16, compute_vit_stats)))
    timings = {}
    for name, attention, autocast, variant_batch in variants:
        model.load_state_dict(initial)
        optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-5)
        vit.set_attn_impl(attention)
        if on_gpu:
            torch.cuda.reset_peak_memory_stats(device)
        try:
            timing = time_calls(make_step(model, optimizer, variant_batch, autocast), device, warmup, repeats)
        except (TypeError, KeyError, AttributeError, ValueError) as exc:
            if name != "amp+cache":
                raise
            why_not = f"the model does not take cached ViT statistics yet ({type(exc).__name__}: {exc})"
            continue
        timings[name] = timing
        with autocast():
            backend = vit_sdpa_backend(vit, batch_size) if attention == "sdpa" else "eager"
        line = (f"{name:<10} ({backend} attention): {timing.describe()} per iteration, "
                f"{tokens / timing.median:,.0f} ViT tokens/s")
        if on_gpu:
            line += f", peak memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB"
        print(line)
        broken = [n for n, p in model.named_parameters() if p.requires_grad and not torch.isfinite(p).all()]
        if broken:
            print(f"WARNING {name}: {len(broken)} parameter(s) became non-finite, e.g. {broken[0]} (see RESULTS.md: "
                  f"CPU bf16 Conv3d weight gradients are wrong for a 2-frame slow pathway in torch 2.14)")
    if "amp+cache" not in timings:
        print(f"amp+cache  skipped: {why_not}")
    for name in ("amp", "amp+cache"):
        if name in timings:
            print(timing_ratio_line(f"train_step {name} vs float32", "float32", timings["float32"], name,
                                    timings[name]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
