"""Shared pieces of the model benchmarks: runtime flags, timing, device description, FLOPs, model and batch builders."""
from __future__ import annotations

import argparse
import copy
import os
import platform
import random
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from config import LossConfig, ModelConfig, SubbackboneConfig, read_yaml, section
from models.backbones.vit import SFMVIT_VIT_KWARGS
from structures.batch import ClipView, EvalBatch, Keyframes, TrainBatch

REPO_ROOT = Path(__file__).resolve().parents[1]
PRESET_CONFIGS = {
    "tiny": REPO_ROOT / "configs" / "tiny_cpu_synthetic.yaml",
    "full": REPO_ROOT / "configs" / "VITSF_ACAR_HR2O_CW_train.yaml",
}
# Dense (no sparsity) bf16 tensor-core peaks in TFLOP/s from the vendors' data sheets, matched
# against torch.cuda.get_device_name(); more specific names first. --peak-tflops overrides.
BF16_PEAK_TFLOPS: list[tuple[str, float, str]] = [
    ("H100 PCIe", 756.0, "H100 PCIe"),
    ("H100 NVL", 835.0, "H100 NVL"),
    ("H100", 989.4, "H100 SXM"),
    ("H200 NVL", 835.0, "H200 NVL"),
    ("H200", 989.4, "H200 SXM"),
    ("A100", 312.0, "A100"),
]


def add_model_shape_args(parser: argparse.ArgumentParser, batch_help: str, boxes_help: str) -> None:
    """Flags of the model and clip a benchmark builds: ``--preset``, ``--vit-depth``, ``--frames``,
    ``--size``, ``--batch``, ``--boxes``. None lets the script choose per device (``bench_setup``)."""
    parser.add_argument("--preset", choices=sorted(PRESET_CONFIGS), default="full",
                        help="model config: 'full' = the original ViT-g training config, 'tiny' = the CPU demo's")
    parser.add_argument("--vit-depth", type=int, default=None, help="ViT blocks (default: config's on GPU, 2 on CPU)")
    parser.add_argument("--frames", type=int, default=None, help="clip frames (default: config's on GPU, 12 on CPU)")
    parser.add_argument("--size", type=int, default=None, help="clip size (default: config's on GPU, 112 on CPU)")
    parser.add_argument("--batch", type=int, default=None, help=f"{batch_help} (default: 3 on GPU, 1 on CPU)")
    parser.add_argument("--boxes", type=int, default=4, help=boxes_help)


def add_runtime_args(parser: argparse.ArgumentParser, warmup: int | None = 1, repeats: int | None = 3) -> None:
    """Flags every model benchmark shares: ``--device``, ``--threads``, ``--warmup``, ``--repeats``, ``--seed``.

    A default of None lets the script choose per device.
    """
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda, cuda:1, ...")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 on a CPU device, see setup_runtime; torch's choice on GPU)")
    parser.add_argument("--warmup", type=int, default=warmup, help="untimed calls before timing")
    parser.add_argument("--repeats", type=int, default=repeats, help="timed calls (the median is reported)")
    parser.add_argument("--seed", type=int, default=0)


def setup_runtime(args: argparse.Namespace) -> torch.device:
    """Seed everything, resolve ``--device`` and set the torch thread count.

    A CPU device runs with one thread unless ``--threads`` says otherwise: on the shared 2-core
    machine these figures were taken on, two OpenMP threads competing with other jobs made the
    same training step 3-7x slower and its time vary by 2x between runs, while one thread gave
    stable times, so both variants of a comparison get a fair, repeatable measurement.
    """
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    threads = args.threads if args.threads is not None else (1 if device.type == "cpu" else None)
    if threads is not None:
        torch.set_num_threads(threads)
    return device


def describe_device(device: torch.device) -> str:
    """One line naming the machine: GPU name and memory, or CPU model, cores and torch threads."""
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        return f"{props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}"
    model = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"CPU {model}, {os.cpu_count()} cores, torch {torch.__version__} with {torch.get_num_threads()} "
            f"thread(s), capability {torch.backends.cpu.get_cpu_capability()}")


def bf16_peak_tflops(device: torch.device) -> tuple[float, str] | None:
    """``(dense bf16 peak TFLOP/s, product name)`` of a known GPU, None for a CPU or an unknown GPU."""
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for needle, peak, product in BF16_PEAK_TFLOPS:
        if needle in name:
            return peak, product
    return None


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that wall-clock times cover it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@dataclass(frozen=True)
class Timing:
    """Wall-clock and process CPU seconds of the timed calls.

    On a shared CPU machine other jobs stretch wall-clock times; the CPU seconds this process
    spent (all its threads) are disturbed much less, so CPU runs report both.
    """

    seconds: list[float]
    cpu_seconds: list[float]
    on_cpu: bool

    @property
    def median(self) -> float:
        """Median wall-clock seconds per call."""
        return statistics.median(self.seconds)

    @property
    def cpu_median(self) -> float:
        """Median process CPU seconds per call."""
        return statistics.median(self.cpu_seconds)

    def describe(self) -> str:
        """e.g. ``0.1234 s (median of 3, min 0.1200)``, plus ``, 0.2400 CPU-s`` on a CPU device."""
        text = f"{self.median:.4f} s (median of {len(self.seconds)}, min {min(self.seconds):.4f})"
        return text + (f", {self.cpu_median:.4f} CPU-s" if self.on_cpu else "")


def time_calls(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed (device synchronised)."""
    for _ in range(warmup):
        fn()
    synchronize(device)
    seconds, cpu_seconds = [], []
    for _ in range(max(1, repeats)):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        synchronize(device)
        seconds.append(time.perf_counter() - start)
        cpu_seconds.append(time.process_time() - start_cpu)
    return Timing(seconds, cpu_seconds, device.type == "cpu")


def ratio_line(label: str, baseline: str, baseline_seconds: float, ours: str, ours_seconds: float,
               cpu_seconds: tuple[float, float] | None = None) -> str:
    """The line each benchmark prints: ``RATIO <label>: <x>x (<ours> vs <baseline>; a -> b s per call, ...)``.

    Args:
        label: what is compared.
        baseline, ours: names of the two variants.
        baseline_seconds, ours_seconds: wall-clock seconds per call; the ratio is baseline / ours.
        cpu_seconds: (baseline, ours) process CPU seconds per call, reported as a second ratio.
    """
    cpu = ""
    if cpu_seconds is not None:
        cpu = f"; CPU-time ratio {cpu_seconds[0] / cpu_seconds[1]:.2f}x"
    return (f"RATIO {label}: {baseline_seconds / ours_seconds:.2f}x ({ours} vs {baseline}; "
            f"{baseline_seconds:.4f} -> {ours_seconds:.4f} s per call, measured in this run{cpu})")


def timing_ratio_line(label: str, baseline: str, baseline_timing: Timing, ours: str, ours_timing: Timing) -> str:
    """``ratio_line`` for two ``Timing``s (with the CPU-time ratio on a CPU device)."""
    cpu = (baseline_timing.cpu_median, ours_timing.cpu_median) if baseline_timing.on_cpu else None
    return ratio_line(label, baseline, baseline_timing.median, ours, ours_timing.median, cpu)


def vit_forward_flops(vit: torch.nn.Module, batch: int) -> float:
    """Matmul FLOPs of one ViT forward (2 per multiply-add; norms, softmax and GELU not counted).

    Per block with N tokens, width C and MLP width M: ``2N(3C^2 + C^2 + 2CM)`` for the linear
    layers plus ``4N^2 C`` for q k^T and attention x v; the tubelet embedding adds
    ``2 N C (3 t p^2)``. ViT-g on 32x224x224 (N = 4096): 12.06 TFLOP per clip.

    Args:
        vit: a ``models.backbones.vit.VisionTransformer``.
        batch: clips per forward.

    Returns:
        FLOPs of the forward of ``batch`` clips.
    """
    tokens = vit.patch_embed.num_patches
    width = vit.embed_dim
    hidden = vit.blocks[0].mlp.fc1.out_features
    kernel = vit.patch_embed.proj.weight[0].numel()
    per_block = 2 * tokens * (4 * width * width + 2 * width * hidden) + 4 * tokens * tokens * width
    return float(batch * (2 * tokens * width * kernel + len(vit.blocks) * per_block))


def model_configs(preset: str, vit_depth: int | None = None, frames: int | None = None, size: int | None = None,
                  ) -> tuple[dict, dict]:
    """The ``model:`` and ``loss:`` sections of a shipped config, weights paths removed, sizes overridden.

    Args:
        preset: 'tiny' (configs/tiny_cpu_synthetic.yaml) or 'full' (the original ViT-g training config).
        vit_depth: ViT blocks (default: the config's; 40 for ViT-g).
        frames: clip frames T, given to the ViT as ``all_frames`` (default: the config's, 32 for 'full').
        size: clip height = width in pixels, the ViT's ``img_size`` (default: the config's).

    Returns:
        ``(model_cfg, loss_cfg)``, the typed sections for ``models.build.model_spec`` (random init).
    """
    path = PRESET_CONFIGS[preset]
    raw = read_yaml(path)
    model_cfg, loss_cfg = copy.deepcopy(raw["model"]), copy.deepcopy(raw["loss"])
    backbone = model_cfg["backbone"]
    backbone.pop("pretrain", None)
    sub = backbone.setdefault("subbackbone", {}) or {}
    backbone["subbackbone"] = sub
    sub.pop("path", None)
    kwargs = sub.setdefault("kwargs", {}) or {}
    sub["kwargs"] = kwargs
    for key, value in (("depth", vit_depth), ("all_frames", frames), ("img_size", size)):
        if value is not None:
            kwargs[key] = value
    return section(ModelConfig, model_cfg, "model", str(path)), section(LossConfig, loss_cfg, "loss", str(path))


@dataclass(frozen=True)
class BenchSetup:
    """Model configs and timing settings shared by the model benchmarks.

    ``reduced`` is True when the full ViT-g preset was shrunk because no GPU is present (say so in
    the output).
    """

    model_cfg: ModelConfig
    loss_cfg: LossConfig
    frames: int
    size: int
    batch_size: int
    warmup: int
    repeats: int
    reduced: bool


def bench_setup(args: argparse.Namespace, device: torch.device) -> BenchSetup:
    """Resolve ``--preset/--vit-depth/--frames/--size/--batch/--warmup/--repeats`` for ``device``.

    On CPU the full preset is depth- and size-reduced (2 ViT blocks, 12 frames, 112 px) unless the
    flags say otherwise; GPUs get the full model, batch 3, 2 warm-up and 5 timed calls.
    """
    on_gpu = device.type == "cuda"
    reduced = not on_gpu and args.preset == "full"
    model_cfg, loss_cfg = model_configs(args.preset, args.vit_depth or (2 if reduced else None),
                                        args.frames or (12 if reduced else None),
                                        args.size or (112 if reduced else None))
    frames, size = clip_geometry(model_cfg)
    return BenchSetup(model_cfg=model_cfg, loss_cfg=loss_cfg, frames=frames, size=size,
                      batch_size=args.batch or (3 if on_gpu else 1),
                      warmup=args.warmup if args.warmup is not None else (2 if on_gpu else 1),
                      repeats=args.repeats if args.repeats is not None else (5 if on_gpu else 3),
                      reduced=reduced)


def clip_geometry(model_cfg: ModelConfig) -> tuple[int, int]:
    """``(frames, size)`` of the clips a model config expects (the ViT's ``all_frames`` and ``img_size``)."""
    kwargs = {**SFMVIT_VIT_KWARGS, **(model_cfg.backbone.subbackbone or SubbackboneConfig()).kwargs}
    return int(kwargs["all_frames"]), int(kwargs["img_size"])


def synthetic_batch(batch: int, frames: int, size: int, boxes: int, num_classes: int, seed: int,
                    views: int | None = None) -> TrainBatch | EvalBatch:
    """A collated batch as ``datasets.ava.collate_batch`` makes it, with random clips, boxes and labels.

    Args:
        batch: clips B.
        frames, size: clip ``T`` and ``H = W``.
        boxes: annotated people per clip.
        num_classes: label range.
        seed: for the clips and annotations.
        views: None for a training batch; V for an evaluation batch of V views (view v > 0 flipped
            when odd, so the views differ as test-time flips do).

    Returns:
        A ``TrainBatch`` of clips ``[B, 3, T, size, size]`` float32, or an ``EvalBatch`` of V such views.
    """
    generator = torch.Generator().manual_seed(seed)
    rng = np.random.default_rng(seed)
    labels = []
    for _ in range(batch):
        people = []
        for person in range(boxes):
            x1, y1 = rng.uniform(0.0, 0.6, 2)
            width, height = rng.uniform(0.1, 0.4, 2)
            classes = sorted(set(rng.integers(0, num_classes, 2).tolist()))
            people.append({"bounding_box": [float(x1), float(y1), float(x1 + width), float(y1 + height)],
                           "label": classes, "person_id": [person]})
        labels.append(people)

    def clips() -> torch.Tensor:
        return torch.randn((batch, 3, frames, size, size), generator=generator)

    def infos(flip: bool) -> list[dict]:
        return [{"crop_box": [0.0, 0.0, 1.0, 1.0], "flip": flip, "pad_ratio": [1.0, 1.0]} for _ in range(batch)]

    keyframes = Keyframes(labels, [f"video{b}" for b in range(batch)], [str(900 + b) for b in range(batch)],
                          list(range(batch)))
    if views is None:
        return TrainBatch(ClipView(clips(), infos(False)), keyframes)
    return EvalBatch([ClipView(clips(), infos(v % 2 == 1)) for v in range(views)], keyframes)
