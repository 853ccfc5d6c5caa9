"""Benchmark: peak memory and time of a training step, 1 process playing W ranks vs 1 process at W = 1.

    python benchmarks/virtual_ranks.py [--ranks 4] [--preset full|tiny] [--vit-depth D] [--frames T]
        [--size S] [--batch B] [--boxes K] [--device auto] [--threads N] [--warmup W] [--repeats R] [--seed 0]

One optimiser step as ``engine/train_loop.py`` runs it in a 1-process job, the model in DDP (a
1-process gloo group, nccl on a GPU) with the original's SGD (momentum 0.9, Nesterov):
- ``W=1``: ``train_step`` on one batch, the original's iteration;
- ``W=N`` (``--ranks``): ``engine.accumulation.MicroBatchStep`` playing N ranks, one batch each
  (same shapes, other random clips and boxes), as ``train.virtual_world_size: N`` on one process.
Each variant runs in a process of its own, so that neither sees memory the other left behind. Peak
memory is, on a GPU, torch's peak of allocated memory over the timed steps (weights, gradients,
optimiser state, activations); on a CPU the process's peak resident set over the timed steps (VmHWM,
reset before them; Linux). Prints both variants' figures, then the ratios W=N / W=1 of peak memory,
of seconds per optimiser step (N micro-batches against one) and of seconds per micro-batch.

Defaults as ``benchmarks/train_step.py``: on a GPU the original model (ViT-g, 32x224x224, batch 3);
on a CPU the original model with a depth-reduced ViT-g (2 of 40 blocks), 12 frames at 112x112,
batch 1, one thread, 1 warm-up and 3 timed steps.
"""
from __future__ import annotations

import argparse
import multiprocessing
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (PRESET_CONFIGS, Timing, add_model_shape_args, add_runtime_args,  # noqa: E402
                               bench_setup, describe_device, setup_runtime, synthetic_batch,
                               time_calls)
from common.cli import run_main  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ranks", type=int, default=4, help="ranks the one process plays (W), >= 2")
    add_model_shape_args(parser, "clips per rank", "annotated people per clip")
    add_runtime_args(parser, warmup=None, repeats=None)
    args = parser.parse_args(argv)
    if args.ranks < 2:
        parser.error(f"--ranks must be >= 2, got {args.ranks}")
    return args


@dataclass(frozen=True)
class Measurement:
    """One variant's figures: its timing per optimiser step and its peak memory in bytes."""

    timing: Timing
    peak_bytes: int
    before_bytes: int


def _resident_bytes(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise OSError(f"/proc/self/status has no {field}")


def _reset_peak(device: torch.device) -> int:
    """Start a new peak-memory window; returns the memory in use now (bytes)."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        return torch.cuda.memory_allocated(device)
    Path("/proc/self/clear_refs").write_text("5")  # Linux: VmHWM := VmRSS
    return _resident_bytes("VmRSS")


def _peak(device: torch.device) -> int:
    return torch.cuda.max_memory_allocated(device) if device.type == "cuda" else _resident_bytes("VmHWM")


def measure(args: argparse.Namespace, ranks: int) -> Measurement:
    """Build the model and time ``ranks`` micro-batches per step (1: ``train_step``) in this process."""
    import torch.distributed as dist

    from engine.accumulation import MicroBatchStep
    from engine.context import Learner, RunContext
    from engine.distributed import DistInfo
    from engine.scheduler import StepLRScheduler
    from engine.train_loop import train_step
    from engine.trainer import wrap_ddp
    from engine.virtual_ranks import RankLayout, RankStreams
    from models.build import build_model, model_spec

    device = setup_runtime(args)
    setup = bench_setup(args, device)
    with tempfile.TemporaryDirectory() as folder:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", init_method=f"file://{folder}/pg",
                                rank=0, world_size=1)
        try:
            model = build_model(model_spec(setup.model_cfg, setup.loss_cfg)).to(device).train()
            ctx = RunContext(DistInfo(device=device, backend=dist.get_backend()))
            ddp = wrap_ddp(model, ctx)
            optimizer = torch.optim.SGD(model.parameters(), lr=1e-5, momentum=0.9, nesterov=True, weight_decay=1e-7)
            scheduler = StepLRScheduler(optimizer, base_lr=1e-5, warmup_lr=1e-5, warmup_steps=0, milestones=[],
                                        lr_mults=[])
            learner = Learner(model.loss, optimizer, scheduler)
            # Host batches, moved to the device by each step as the loaders' batches are.
            batches = [synthetic_batch(setup.batch_size, setup.frames, setup.size, args.boxes, model.num_classes,
                                       args.seed + rank) for rank in range(ranks)]
            if ranks == 1:
                def step() -> None:
                    train_step(ctx, ddp, learner, batches[0], 0)
            else:
                layout = RankLayout(ranks, 1, 0)
                micro = MicroBatchStep(ctx, ddp, learner, layout, RankStreams(layout.ranks))
                iterators = {rank: repeat(batch) for rank, batch in zip(layout.ranks, batches)}

                def step() -> None:
                    micro(iterators, 0)
            for _ in range(setup.warmup):
                step()
            before = _reset_peak(device)
            timing = time_calls(step, device, 0, setup.repeats)
            return Measurement(timing, _peak(device), before)
        finally:
            dist.destroy_process_group()


def _measure_in_child(args: argparse.Namespace, ranks: int) -> Measurement:
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(measure, (args, ranks))


def main(argv: Sequence[str] | None = None) -> int:
    """Measure both variants and print the figures; returns the exit status."""
    return run_main(parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    device = setup_runtime(args)
    setup = bench_setup(args, device)
    print(f"virtual_ranks on {describe_device(device)}")
    reduced = " (ViT-g DEPTH-REDUCED)" if setup.reduced else ""
    print(f"model: preset {args.preset}{reduced}; per rank a batch [{setup.batch_size}, 3, {setup.frames}, "
          f"{setup.size}, {setup.size}], {args.boxes} boxes per clip; SGD; {setup.warmup} warm-up and "
          f"{setup.repeats} timed step(s) per variant, each variant in its own process")
    memory = "allocated GPU memory" if device.type == "cuda" else "resident set"
    results = {}
    for ranks in (1, args.ranks):
        results[ranks] = found = _measure_in_child(args, ranks)
        print(f"W={ranks:<3} {ranks} micro-batch(es) per step: {found.timing.describe()} per step; peak {memory} "
              f"{found.peak_bytes / 2**20:,.1f} MiB ({(found.peak_bytes - found.before_bytes) / 2**20:+,.1f} MiB "
              f"over the {found.before_bytes / 2**20:,.1f} MiB before the timed steps)")
    one, many = results[1], results[args.ranks]
    print(f"RATIO peak memory, W={args.ranks} / W=1: {many.peak_bytes / one.peak_bytes:.3f} "
          f"({many.peak_bytes / 2**20:,.1f} vs {one.peak_bytes / 2**20:,.1f} MiB, measured in this run)")
    print(f"RATIO seconds per optimiser step, W={args.ranks} / W=1: {many.timing.median / one.timing.median:.2f} "
          f"({args.ranks} micro-batches vs 1; {one.timing.median:.4f} -> {many.timing.median:.4f} s)")
    per_micro = many.timing.median / args.ranks
    print(f"RATIO seconds per micro-batch, W={args.ranks} / W=1: {per_micro / one.timing.median:.2f} "
          f"({one.timing.median:.4f} -> {per_micro:.4f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
