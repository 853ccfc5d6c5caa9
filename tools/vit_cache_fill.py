"""The work of ``python -m tools.precompute_vit_cache`` (its command line): list a config's clips, run the
frozen ViT over those not cached yet, store their statistics.

Kept apart from the command line because it imports torch, the datasets and the model: the command line
imports it after parsing, so ``--help`` and argument errors answer at once.
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset
from tqdm import tqdm

from config import Config, ConfigError, VitCacheConfig, load_config
from datasets.ava import AVADataset
from engine.checkpoint import find_latest_checkpoint, load_checkpoint, resolve_resume_path
from engine.feature_cache import FeatureStore, new_writer_name
from engine.plan import RunPlan, make_plan
from engine.preflight import check_paths
from engine.runner import seed_everything
from engine.vit_cache_loader import (clip_key, describe_spatial_chain, flip_outcomes, frame_signature, vit_identity,
                                     with_forced_flip)
from models.build import build_model
from models.vit_cache import compute_vit_stats

LOGGER = logging.getLogger(__name__)
_VIT_PREFIX = "backbone.submodule."


@dataclass(frozen=True)
class ClipJob:
    """One clip to cache: an element of a split, seen through one view with one flip outcome."""

    split: str
    index: int
    view: int
    flip: bool
    key: str


@dataclass
class PrecomputeSummary:
    """What one rank did."""

    rank: int
    world: int
    clips: int
    already_cached: int
    computed: int
    store_entries: int
    store_bytes: int
    seconds: float


def _datasets(plan: RunPlan, splits: Sequence[str]) -> dict[str, AVADataset]:
    cfg, built = plan.cfg, {}
    for split in splits:
        if split == "train" and (cfg.train is None or plan.train is None):
            raise ConfigError(cfg.config_file, split, "this split is not in the config (or the config only evaluates)")
        if split == "train":
            built[split] = AVADataset(cfg.train.root_path, cfg.train.annotation_path, plan.train.spatial,
                                      plan.train.temporal, training=True)
        else:
            built[split] = AVADataset(cfg.val.root_path, cfg.val.annotation_path, plan.val.views, plan.val.temporal,
                                      training=False)
    return built


def load_run_vit_weights(cfg: Config, model: nn.Module) -> list[str]:
    """Give the ViT the weights a run of ``cfg`` would have: top-level ``pretrain``, then the resume checkpoint.

    Returns:
        The checkpoint files whose ViT weights were loaded (after ``subbackbone.path``, read by
        ``build_model``).
    """
    sources = [Path(cfg.pretrain.path)] if cfg.pretrain is not None else []
    resume = find_latest_checkpoint(cfg.result_path) if cfg.auto_resume else None
    if resume is None and cfg.resume_path:
        resume = resolve_resume_path(cfg.resume_path, cfg.result_path)
    sources += [resume] if resume is not None else []
    loaded = []
    for source in sources:
        state = load_checkpoint(source)
        state = state.get("state_dict", state)
        vit_state = {}
        for name, value in state.items():
            name = name[len("module."):] if name.startswith("module.") else name
            if name.startswith(_VIT_PREFIX):
                vit_state[name[len(_VIT_PREFIX):]] = value
        if vit_state:
            # Non-strict as the run's ``pretrain`` loading; a resume checkpoint holds the whole ViT.
            model.backbone.submodule.load_state_dict(vit_state, strict=False)
            loaded.append(str(source))
    return loaded


class _ClipJobs(Dataset):
    """Decodes and transforms the clip of each job (in DataLoader workers)."""

    def __init__(self, jobs: list[ClipJob], datasets: dict[str, AVADataset]) -> None:
        self.jobs, self.datasets = jobs, datasets

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, item: int) -> tuple[str, torch.Tensor]:
        job = self.jobs[item]
        dataset = self.datasets[job.split]
        chain = with_forced_flip(dataset.spatial_views[job.view], job.flip)
        clip, _ = chain(dataset.load_frames(job.index))
        return job.key, clip


def _autocast(amp: str, device: torch.device) -> contextlib.AbstractContextManager:
    # The run's autocast for the ViT forward, so that the statistics (and keys) are the run's.
    if amp == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def list_jobs(datasets: dict[str, AVADataset], vit_id: str, rank: int, world: int) -> list[ClipJob]:
    """This rank's clips (elements ``rank, rank + world, ...`` of each split), keyed as a run keys them."""
    jobs = []
    for split, dataset in datasets.items():
        views = [(describe_spatial_chain(chain), flip_outcomes(chain)) for chain in dataset.spatial_views]
        for index in range(rank, len(dataset), world):
            frames = frame_signature(dataset.frame_paths(index))
            for view, (text, flips) in enumerate(views):
                jobs.extend(ClipJob(split, index, view, flip, clip_key(frames, text, flip, (1.0, 1.0), vit_id))
                            for flip in flips)
    return jobs


@dataclass(frozen=True)
class PrecomputeOptions:
    """How ``precompute`` runs.

    Attributes:
        rank, world: this process's share (element i goes to rank ``i % world``).
        device: where the ViT runs (None: the CPU).
        batch_size: clips per ViT forward.
        workers: DataLoader processes decoding frames.
        seal_every: records per shard (what an interruption can lose at most).
        progress: show a progress bar.
    """

    rank: int = 0
    world: int = 1
    device: torch.device | None = None
    batch_size: int = 4
    workers: int = 0
    seal_every: int = 256
    progress: bool = True


def precompute(plan: RunPlan, cache_path: str | Path, splits: Sequence[str],
               options: PrecomputeOptions = PrecomputeOptions()) -> PrecomputeSummary:
    """Compute and store the ViT statistics of this rank's share of clips that are not cached yet.

    Args:
        plan: the run plan of the config (``checked_config``).
        cache_path: the cache folder.
        splits: ``'train'`` and/or ``'val'``.
        options: this rank's share, the device, batch size, workers... (``PrecomputeOptions``).
    """
    rank, world = options.rank, options.world
    if not 0 <= rank < world:
        raise ValueError(f"rank {rank} outside world size {world}")
    start = time.perf_counter()
    cfg = plan.cfg
    device = options.device or torch.device("cpu")
    # Seeded as main.py seeds before building: a ViT without a weight file gets the run's initial weights.
    seed_everything(cfg.manual_seed)
    model = build_model(plan.model)
    loaded = load_run_vit_weights(cfg, model)
    vit = model.backbone.submodule.to(device).eval()
    vit_id = vit_identity(vit, device, cfg.amp)
    LOGGER.info("ViT %s (weights from the config%s)", vit_id, "".join(f", {p}" for p in loaded))
    datasets = _datasets(plan, splits)
    store = FeatureStore(cache_path, new_writer_name(rank), seal_every=options.seal_every, meta={"vit": vit_id})
    jobs = list_jobs(datasets, vit_id, rank, world)
    todo = [job for job in jobs if job.key not in store]
    loader = DataLoader(_ClipJobs(todo, datasets), batch_size=options.batch_size, num_workers=options.workers,
                        pin_memory=device.type == "cuda")
    bar = tqdm(total=len(todo), unit="clip", desc=f"ViT cache rank {rank}", disable=not options.progress,
               dynamic_ncols=True)
    try:
        with torch.no_grad():
            for keys, clips in loader:
                with _autocast(cfg.amp, device):
                    stats = compute_vit_stats(vit(clips.to(device, non_blocking=True)))
                for j, key in enumerate(keys):
                    store.put(key, stats.select(j))
                bar.update(len(keys))
    finally:
        bar.close()
        store.close()
    store.refresh()
    return PrecomputeSummary(rank=rank, world=world, clips=len(jobs), already_cached=len(jobs) - len(todo),
                             computed=len(todo), store_entries=len(store), store_bytes=store.disk_bytes(),
                             seconds=time.perf_counter() - start)


def checked_config(args: argparse.Namespace) -> tuple[RunPlan, str, list[str]]:
    """The command line's run plan, cache folder and splits, checked as a run with the cache on checks them."""
    cfg = load_config(args.config, args.overrides)
    cache = args.cache or (cfg.vit_cache.path if cfg.vit_cache is not None else None)
    if cache is None:
        raise ConfigError(cfg.config_file, "vit_cache.path", "missing: give --cache DIR or a vit_cache section")
    # Planned with the cache on, so that the transforms and the ViT mode are checked as such a run's.
    plan = make_plan(dataclasses.replace(cfg, vit_cache=VitCacheConfig(path=cache, mode="lazy")))
    check_paths(cfg)
    splits = args.split or (["val"] if cfg.evaluate or cfg.train is None else ["train", "val"])
    return plan, cache, splits
