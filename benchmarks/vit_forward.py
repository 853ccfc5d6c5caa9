"""Benchmark: frozen ViT-g forward, original-style float32 eager attention vs ours (bf16 + SDPA on GPU).

    python benchmarks/vit_forward.py [--depth D] [--frames T] [--img S] [--batch B]
        [--dtype auto|float32|bfloat16] [--peak-tflops P] [--device auto] [--threads N]
        [--warmup W] [--repeats R] [--seed 0]

Both paths run the same randomly initialised weights on the same clip, in inference mode (the ViT
is frozen), one after the other in this process:
- baseline: float32 weights, explicit softmax(q k^T) v attention (the original's formula);
- ours: ``scaled_dot_product_attention`` (the backend torch picks is printed), with the weights
  kept in bf16 by ``cast_frozen_vit`` on a GPU (``--dtype auto``), float32 on a CPU.
Prints both times, the achieved TFLOP/s (matmul FLOPs, see ``vit_forward_flops``), on a GPU the
fraction of the device's dense bf16 peak (MFU; ``--peak-tflops`` overrides the known-GPU table),
the output difference between the paths and the speed-up line ``RATIO ...``.

Defaults: on a GPU the full ViT-g (40 blocks, 32 frames at 224x224, batch 3; 2 warm-up and 5 timed
calls per path); on a CPU a DEPTH-REDUCED ViT-g (2 of its 40 blocks, full width 1408 and 16 heads,
16 frames at 224x224, batch 1, one torch thread; 2 timed calls), which the output says.
"""
from __future__ import annotations

import argparse
import copy
import sys
from collections.abc import Sequence
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (add_runtime_args, bf16_peak_tflops, describe_device, setup_runtime,  # noqa: E402
                               time_calls, timing_ratio_line, vit_forward_flops)
from common.cli import run_main  # noqa: E402
from engine.attention_kernels import vit_sdpa_backend  # noqa: E402
from engine.precision import cast_frozen_vit  # noqa: E402
from models.backbones.vit import VisionTransformer, vit_giant_patch14_224  # noqa: E402

FULL_DEPTH = 40


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depth", type=int, default=None, help="ViT blocks (default: 40 on GPU, 2 on CPU)")
    parser.add_argument("--frames", type=int, default=None, help="clip frames (default: 32 on GPU, 16 on CPU)")
    parser.add_argument("--img", type=int, default=224, help="clip height = width in pixels")
    parser.add_argument("--batch", type=int, default=None, help="clips per forward (default: 3 on GPU, 1 on CPU)")
    parser.add_argument("--dtype", choices=("auto", "float32", "bfloat16"), default="auto",
                        help="our path's weights/compute dtype (auto: bfloat16 on GPU, float32 on CPU)")
    parser.add_argument("--peak-tflops", type=float, default=None,
                        help="device's dense bf16 peak for MFU (default: known GPUs, e.g. 989.4 for H100 SXM)")
    add_runtime_args(parser, warmup=None, repeats=None)
    return parser.parse_args(argv)


def build_vit(depth: int, frames: int, img: int) -> VisionTransformer:
    """ViT-g/14 geometry (width 1408, 16 heads, MLP 6144) with ``depth`` blocks, frozen, in eval mode."""
    vit = vit_giant_patch14_224(depth=depth, all_frames=frames, img_size=img, num_classes=0, tubelet_size=2)
    return vit.requires_grad_(False).eval()


def _flop_rate(flops_per_second: float) -> str:
    if flops_per_second >= 1e12:
        return f"{flops_per_second / 1e12:.1f} TFLOP/s"
    return f"{flops_per_second / 1e9:.1f} GFLOP/s"


def _figures(name: str, timing, flops: float, peak: tuple[float, str] | None) -> str:
    rate = flops / timing.median / 1e12
    line = f"{name:<44}: {timing.describe()}, {_flop_rate(flops / timing.median)}"
    if peak is not None:
        line += f", MFU {100 * rate / peak[0]:.1f}% of {peak[0]:.1f} TFLOP/s bf16 dense ({peak[1]})"
    return line


def main(argv: Sequence[str] | None = None) -> int:
    """Run the comparison and print the figures; returns the exit status."""
    return run_main(parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    device = setup_runtime(args)
    on_gpu = device.type == "cuda"
    depth = args.depth or (FULL_DEPTH if on_gpu else 2)
    frames = args.frames or (32 if on_gpu else 16)
    batch = args.batch or (3 if on_gpu else 1)
    # The untimed reference/output call before each timing is a warm-up already; a GPU gets two more
    # (cuDNN/cuBLAS heuristics, allocator growth).
    warmup = args.warmup if args.warmup is not None else (2 if on_gpu else 0)
    repeats = args.repeats if args.repeats is not None else (5 if on_gpu else 2)
    dtype = {"auto": torch.bfloat16 if on_gpu else torch.float32, "float32": torch.float32,
             "bfloat16": torch.bfloat16}[args.dtype]
    peak = bf16_peak_tflops(device)
    if args.peak_tflops is not None:
        peak = (args.peak_tflops, "--peak-tflops")

    vit = build_vit(depth, frames, args.img).to(device)
    heads = vit.blocks[0].attn.num_heads
    flops = vit_forward_flops(vit, batch)
    reduced = "" if depth == FULL_DEPTH else f", DEPTH-REDUCED to {depth} of ViT-g's {FULL_DEPTH} blocks"
    print(f"vit_forward on {describe_device(device)}")
    print(f"model: ViT-g/14 geometry (width {vit.embed_dim}, {heads} heads of dim {vit.embed_dim // heads}, "
          f"MLP {vit.blocks[0].mlp.fc1.out_features}){reduced}; clip [{batch}, 3, {frames}, {args.img}, {args.img}] "
          f"= {vit.patch_embed.num_patches} tokens per clip; {flops / 1e9:.1f} GFLOP per forward")
    clip = torch.randn((batch, 3, frames, args.img, args.img), generator=torch.Generator().manual_seed(args.seed))
    clip = clip.to(device)

    vit.set_attn_impl("eager")
    with torch.inference_mode():
        reference = vit(clip).float()
        baseline = time_calls(lambda: vit(clip), device, warmup, repeats)

    ours_vit = vit
    if dtype != torch.float32:
        ours_vit = cast_frozen_vit(copy.deepcopy(vit), dtype)
        del vit
    ours_vit.set_attn_impl("sdpa")
    backend = vit_sdpa_backend(ours_vit, batch)
    if on_gpu:
        torch.cuda.reset_peak_memory_stats(device)
    with torch.inference_mode():
        output = ours_vit(clip).float()
        ours = time_calls(lambda: ours_vit(clip), device, warmup, repeats)
    dtype_name = str(dtype).replace("torch.", "")
    print(_figures("baseline: float32, eager attention", baseline, flops, peak))
    print(_figures(f"ours: {dtype_name} weights, SDPA [{backend}]", ours, flops, peak))
    if on_gpu:
        print(f"ours: peak GPU memory {torch.cuda.max_memory_allocated(device) / 2**30:.2f} GiB")
    difference = (output - reference).abs().max().item()
    print(f"max |ours - baseline| = {difference:.3e} (max |baseline| = {reference.abs().max().item():.3f})")
    print(timing_ratio_line("vit_forward speed-up", "float32 eager", baseline, f"{dtype_name} SDPA", ours))
    return 0


if __name__ == "__main__":
    sys.exit(main())
