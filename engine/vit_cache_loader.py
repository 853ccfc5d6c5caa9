"""The frozen-ViT cache in a run: its settings, cache keys, and a loader wrapper adding cached ViT statistics.

A clip's key is a digest of everything its ViT statistics depend on: the frame files (absolute
path, size, modification time), the spatial transform chain (with the per-clip flip outcome and
the batch padding), the ViT's fingerprint (description + every weight, ``models/vit_cache.py``),
the device type and the ``amp`` setting. Change any of them and the key changes, so a stale entry
can be missed but never used. Random transforms other than the horizontal flip (random crops,
random temporal windows) would make the clip unknowable from the element alone: such configs are
rejected (``plan_vit_cache``, called once by ``engine.plan.make_plan``). The cache is exact for a
ViT in eval mode only, hence the ``eval_mode`` requirement.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import torch
from torch import nn
from torch.utils.data import DataLoader

from config import AugmentationConfig, Config, ConfigError, Variant
from datasets.ava import AVADataset
from datasets.temporal_transforms import TemporalCenterCrop, TemporalSampling
from datasets.transforms import (
    CenterCrop,
    Compose,
    CornerCrop,
    Normalize,
    RandomHorizontalFlip,
    Scale,
    ToTensor,
)
from engine.context import RunContext, RunData
from engine.feature_cache import FeatureStore, new_writer_name
from models.build import ACAR_NET
from models.vit_cache import compute_vit_stats, vit_fingerprint
from structures.batch import ClipView, EvalBatch, TrainBatch
from structures.vit_stats import VitStats

logger = logging.getLogger(__name__)

KEY_VERSION = 1
# Spatial transforms whose output is a function of the frames alone (CornerCrop only with a fixed
# position), plus the flip, whose per-clip outcome is part of the key.
_DETERMINISTIC_SPATIAL = {"Scale", "CenterCrop", "ToTensor", "Normalize", "CornerCrop"}
_DETERMINISTIC_TEMPORAL = {"TemporalCenterCrop", "TemporalSampling"}


class VitCacheMissError(LookupError):
    """``vit_cache.mode: require`` met a clip that is not in the cache (the message names it)."""


@dataclass(frozen=True)
class VitCacheSettings:
    """A run's ViT cache when it is on: the folder, the mode and the ``amp`` setting (part of every key).

    Attributes:
        path: the cache folder (``vit_cache.path``, resolved against the working directory).
        mode: ``'lazy'`` or ``'require'``.
        amp: the run's ``amp``.
    """

    path: str
    mode: Literal["lazy", "require"]
    amp: str


def _check_augmentation(cfg: Config, split: str, aug: AugmentationConfig) -> None:
    if aug.temporal.type not in _DETERMINISTIC_TEMPORAL:
        raise ConfigError(cfg.config_file, f"{split}.augmentation.temporal.type",
                          f"vit_cache needs deterministic frame sampling "
                          f"({', '.join(sorted(_DETERMINISTIC_TEMPORAL))}), found {aug.temporal.type!r}; "
                          "set vit_cache.mode: off")
    flips = 0
    for index, entry in enumerate(aug.spatial):
        key = f"{split}.augmentation.spatial[{index}]"
        choices = entry.kwargs if isinstance(entry.kwargs, list) else [entry.kwargs]
        if entry.type == "RandomHorizontalFlip":
            flips += 1
        elif entry.type not in _DETERMINISTIC_SPATIAL:
            raise ConfigError(cfg.config_file, f"{key}.type",
                              f"vit_cache cannot key the random transform {entry.type!r} (allowed: "
                              f"{', '.join(sorted(_DETERMINISTIC_SPATIAL | {'RandomHorizontalFlip'}))}); "
                              "set vit_cache.mode: off")
        elif entry.type == "CornerCrop" and any(choice.get("crop_position") is None for choice in choices):
            raise ConfigError(cfg.config_file, f"{key}.kwargs.crop_position",
                              "vit_cache needs a fixed CornerCrop position (a random corner cannot be keyed)")
    if flips > 1:
        raise ConfigError(cfg.config_file, f"{split}.augmentation.spatial",
                          f"vit_cache allows at most one RandomHorizontalFlip, found {flips}")


def plan_vit_cache(cfg: Config, variant: Variant) -> VitCacheSettings | None:
    """The run's cache settings, None when ``vit_cache`` is off; checks that the run can use the cache.

    Args:
        cfg: the config.
        variant: the model's (``models.build.ModelSpec.variant``): ACAR-Net's has no ViT to cache.

    Raises:
        ConfigError: a model without ViT, training without ``model.backbone.subbackbone.eval_mode:
            true``, a head other than ``acar``, or a random transform the key cannot capture; the
            message names the key.
    """
    if cfg.vit_cache is None or cfg.vit_cache.mode == "off":
        return None
    mode = cfg.vit_cache.mode
    if variant == ACAR_NET:
        raise ConfigError(cfg.config_file, "vit_cache.mode",
                          f"{mode!r} caches ViT features, but this config builds ACAR-Net's model "
                          "(head width = SlowFast channels, no subbackbone), which has no ViT stream; set it to off")
    sub = cfg.model.backbone.subbackbone
    if not cfg.evaluate and (sub is None or not sub.eval_mode):
        raise ConfigError(cfg.config_file, "vit_cache.mode",
                          f"{mode!r} needs model.backbone.subbackbone.eval_mode: true when training: cached ViT "
                          "features are exact only for a ViT in eval mode, and by default the frozen ViT trains "
                          "in train mode with drop-path (docs/numerics.md quirk 6)")
    if cfg.model.head.type != "acar":
        raise ConfigError(cfg.config_file, "model.head.type",
                          f"vit_cache works with the 'acar' head only, found {cfg.model.head.type!r}")
    if not cfg.evaluate and cfg.train is not None:
        _check_augmentation(cfg, "train", cfg.train.augmentation)
    _check_augmentation(cfg, "val", cfg.val.augmentation)
    return VitCacheSettings(cfg.vit_cache.path, mode, cfg.amp)


def describe_spatial_chain(chain: Compose) -> str:
    """Text of a spatial chain for the cache key; the flip appears as a slot filled per clip.

    Raises:
        ValueError: a transform whose output the key cannot capture (see ``plan_vit_cache``).
    """
    parts, flips = [], 0
    for transform in chain.transforms:
        if isinstance(transform, RandomHorizontalFlip):
            flips += 1
            parts.append("HorizontalFlip(per clip)")
        elif isinstance(transform, (Scale, CenterCrop, ToTensor, Normalize)) or (
                isinstance(transform, CornerCrop) and transform.crop_position is not None):
            parts.append(repr(transform))
        else:
            raise ValueError(f"vit_cache cannot key the random transform {transform!r}")
    if flips > 1:
        raise ValueError(f"vit_cache allows at most one RandomHorizontalFlip per chain, found {flips}")
    return "|".join(parts)


def flip_outcomes(chain: Compose) -> list[bool]:
    """The flip values a chain can produce: ``[False, True]`` for a random flip, one value otherwise."""
    flips = [t for t in chain.transforms if isinstance(t, RandomHorizontalFlip)]
    if not flips or flips[0].p == 0.0:
        return [False]
    return [True] if flips[0].p == 1.0 else [False, True]


def with_forced_flip(chain: Compose, flip: bool) -> Compose:
    """The chain with its random flip replaced by an always (or never) flip, same position."""
    forced = RandomHorizontalFlip(1.0 if flip else 0.0)
    return Compose([forced if isinstance(t, RandomHorizontalFlip) else t for t in chain.transforms])


def frame_signature(paths: Iterable[Path]) -> list[list]:
    """``[absolute path, size in bytes, mtime in ns]`` of each frame file, in clip order (repeats kept)."""
    signature = []
    for path in paths:
        status = os.stat(path)
        signature.append([os.path.abspath(path), status.st_size, status.st_mtime_ns])
    return signature


def clip_key(frames: list[list], transform: str, flip: bool, pad_ratio: Sequence[float], vit_id: str) -> str:
    """Cache key of one clip: 40 hex digits of SHA-256 over a canonical JSON of its inputs.

    Args:
        frames: ``frame_signature`` of the clip's frames.
        transform: ``describe_spatial_chain`` of the view's chain.
        flip: the clip's flip outcome (``aug_info['flip']``).
        pad_ratio: ``aug_info['pad_ratio']`` (padding to the batch's largest clip changes the input).
        vit_id: ``vit_identity`` of the ViT that computes the statistics.
    """
    payload = {"version": KEY_VERSION, "frames": frames, "transform": transform, "flip": bool(flip),
               "pad": [float(v) for v in pad_ratio], "vit": vit_id}
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


def vit_identity(vit: nn.Module, device: torch.device, amp: str) -> str:
    """The ViT part of every key: its fingerprint, the device type and the autocast setting."""
    return f"{vit_fingerprint(vit)}|{device.type}|amp={amp}"


class VitStatsSource:
    """Statistics of clips by key: read from the store, or computed with the ViT and stored (lazy mode).

    Args:
        store: the cache folder, opened with this process's writer name.
        vit: the frozen ViT (must be in eval mode whenever statistics are computed).
        vit_id: ``vit_identity`` of ``vit``.
        mode: ``'lazy'`` or ``'require'``.
        device: where the statistics are returned (and the ViT runs).
        autocast: the run's autocast context factory (the one the model's forward uses).
    """

    def __init__(self, store: FeatureStore, vit: nn.Module, vit_id: str, mode: str, device: torch.device,
                 autocast: Callable[[], object]) -> None:
        if mode not in ("lazy", "require"):
            raise ValueError(f"mode must be 'lazy' or 'require', got {mode!r}")
        self.store, self.vit, self.vit_id, self.mode = store, vit, vit_id, mode
        self.device, self.autocast = device, autocast
        self.hits = self.computed = 0

    def fetch(self, clips: torch.Tensor, keys: Sequence[str], names: Sequence[str]) -> VitStats:
        """Statistics of a batch of clips, in batch order.

        Args:
            clips: ``[B, 3, T, H, W]`` (only the clips that miss are read, on ``device``).
            keys: B cache keys.
            names: B descriptions of the clips for error messages.

        Returns:
            ``VitStats`` of the B clips on ``device``.

        Raises:
            VitCacheMissError: in ``require`` mode, for the first clip not in the store.
            RuntimeError: the ViT is in train mode (its features would not be reproducible).
        """
        found = {key: stats for key in dict.fromkeys(keys) if (stats := self.store.get(key)) is not None}
        missing = [key for key in dict.fromkeys(keys) if key not in found]
        if missing and self.mode == "require" and self.store.refresh():
            return self.fetch(clips, keys, names)  # another rank sealed some meanwhile
        if missing and self.mode == "require":
            first = keys.index(missing[0])
            raise VitCacheMissError(
                f"{self.store.root}: no cached ViT statistics for {names[first]} (key {keys[first]}); fill the "
                "cache with `python -m tools.precompute_vit_cache --config <config>` or set vit_cache.mode: lazy")
        self.hits += sum(key in found for key in keys)
        if missing:
            found.update(self._compute(clips, [keys.index(key) for key in missing], missing))
        return VitStats.cat([found[key].to(self.device) for key in keys])

    def _compute(self, clips: torch.Tensor, rows: list[int], keys: list[str]) -> dict[str, VitStats]:
        """Run the ViT on ``clips[rows]`` and store the statistics under ``keys`` (lazy mode)."""
        if self.vit.training:
            raise RuntimeError("the frozen ViT is in train mode: cached statistics would not be reproducible "
                               "(set model.backbone.subbackbone.eval_mode: true)")
        picked = clips.index_select(0, torch.tensor(rows, dtype=torch.int64, device=clips.device))
        with torch.no_grad(), self.autocast():
            computed = compute_vit_stats(self.vit(picked.to(self.device)))
        result = {}
        for j, key in enumerate(keys):
            result[key] = computed.select(j)
            self.store.put(key, result[key])
        self.computed += len(keys)
        return result

    def wrap(self, loader: DataLoader, dataset: AVADataset) -> CachedLoader:
        """A loader whose batches carry ``vit_stats`` in every view (see ``CachedLoader``)."""
        return CachedLoader(loader, dataset, self)


class CachedLoader:
    """Iterates over a DataLoader of the AVA dataset and fills ``vit_stats`` in each view of each batch.

    Each pass first merges what other ranks sealed, and seals this rank's new records when it ends.

    Args:
        loader: the DataLoader (its length and ``generator`` are passed through).
        dataset: its ``AVADataset`` (``frame_paths``, ``spatial_views``, ``training``).
        source: where statistics come from.
    """

    def __init__(self, loader: DataLoader, dataset: AVADataset, source: VitStatsSource) -> None:
        temporal = dataset.temporal_transform
        if temporal is not None and not isinstance(temporal, (TemporalCenterCrop, TemporalSampling)):
            raise ValueError(f"vit_cache needs deterministic frame sampling, got {temporal!r}")
        self.loader, self.dataset, self.source = loader, dataset, source
        self.views = [describe_spatial_chain(chain) for chain in dataset.spatial_views]

    def __len__(self) -> int:
        return len(self.loader)

    @property
    def generator(self) -> torch.Generator | None:
        """The wrapped DataLoader's generator (the runner reseeds it every epoch)."""
        return getattr(self.loader, "generator", None)

    def __iter__(self) -> Iterator[TrainBatch | EvalBatch]:
        store, source = self.source.store, self.source
        store.refresh()
        hits = computed = 0
        try:
            for batch in self.loader:
                # Counted around this pass's own batches: with virtual ranks several passes share the source.
                before = source.hits, source.computed
                attached = self.attach(batch)
                hits, computed = hits + source.hits - before[0], computed + source.computed - before[1]
                yield attached
        finally:
            store.seal()
            logger.info("vit_cache %s pass: %d clips read from %s, %d computed; %d entries visible",
                        "train" if self.dataset.training else "eval", hits, store.root, computed, len(store))

    def attach(self, batch: TrainBatch | EvalBatch) -> TrainBatch | EvalBatch:
        """``batch`` with ``vit_stats`` (on the source's device) in each of its views."""
        keyframes = batch.keyframes
        indices = keyframes.element_index
        frames = [frame_signature(self.dataset.frame_paths(i)) for i in indices]
        names = [f"element {i} (video {v!r}, time {t})"
                 for i, v, t in zip(indices, keyframes.filenames, keyframes.mid_times)]
        if isinstance(batch, TrainBatch):
            return replace(batch, view=self._with_stats(batch.view, frames, names, 0))
        return replace(batch, views=[self._with_stats(view, frames, names, index)
                                     for index, view in enumerate(batch.views)])

    def _with_stats(self, view: ClipView, frames: list, names: list[str], index: int) -> ClipView:
        keys = [clip_key(f, self.views[index], info["flip"], info["pad_ratio"], self.source.vit_id)
                for f, info in zip(frames, view.aug_info)]
        return view.with_vit_stats(self.source.fetch(view.clips, keys, [
            f"{name}, view {index}, flip {info['flip']}" for name, info in zip(names, view.aug_info)]))


def open_vit_cache(settings: VitCacheSettings | None, model: nn.Module, device: torch.device, rank: int,
                   autocast: Callable[[], object]) -> VitStatsSource | None:
    """The run's cache source, or None when the cache is off. Call it after all weights are loaded.

    Args:
        settings: the run plan's (``plan_vit_cache``); None when off.
        model: the ``AVAModel`` (its ``backbone.submodule`` is the ViT).
        device: this rank's device.
        rank: this rank (names its shard files).
        autocast: the run's autocast factory.
    """
    if settings is None:
        return None
    vit = model.backbone.submodule
    vit_id = vit_identity(vit, device, settings.amp)
    store = FeatureStore(settings.path, new_writer_name(rank), meta={"vit": vit_id})
    logger.info("vit_cache (%s): %s holds %d entries (all writers); this ViT is %s", settings.mode,
                store.root, len(store), vit_id)
    return VitStatsSource(store, vit, vit_id, settings.mode, device, autocast)


def attach_vit_cache(settings: VitCacheSettings | None, model: nn.Module, ctx: RunContext, data: RunData) -> RunData:
    """The runner's loaders, wrapped with the cache when it is on (returned unchanged otherwise).

    Args:
        settings: the run plan's (``plan_vit_cache``); None when off.
        model: the ``AVAModel``, every weight loaded.
        ctx: this process's context (device, rank, autocast).
        data: the run's splits.

    Returns:
        ``data`` with each loader replaced by its ``CachedLoader``.
    """
    source = open_vit_cache(settings, model, ctx.device, ctx.dist.rank, ctx.autocast)
    if source is None:
        return data
    train = data.train
    if train is not None:
        # Every rank a process plays (virtual ranks) reads through the same cache.
        others = tuple(replace(share, loader=source.wrap(share.loader, train.dataset)) for share in train.others)
        train = replace(train, loader=source.wrap(train.loader, train.dataset), others=others)
    return RunData(train, replace(data.val, loader=source.wrap(data.val.loader, data.val.dataset)))
