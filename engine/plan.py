"""The run plan: every component a config names, built once (which is its check) before any worker starts.

``make_plan(cfg)`` builds the transform chains, the model (on the ``meta`` device: no memory, no weight
file read), a throwaway optimizer and scheduler, the scoring protocol and the ViT-cache settings. A
builder that cannot use a value raises, and every such error leaves here as one ``ConfigError``
naming the config file and the dotted key. Workers receive the ``RunPlan`` (it pickles across
``torch.multiprocessing.spawn``; under torchrun or SLURM each process makes its own, once) and check
nothing again. Data (files, pkls, frames) is judged by ``engine.preflight``, not here.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import torch

from config import BUILDER_VALUE_ERRORS, AugmentationConfig, Config, ConfigError
from datasets.ava import TemporalTransform
from datasets.transforms import Compose, build_spatial, build_spatial_views, build_temporal
from engine.scheduler import OptimizerFactory, SchedulerFactory
from engine.scoring import MapProtocol, map_protocol
from engine.virtual_ranks import rank_layout
from engine.vit_cache_loader import VitCacheSettings, plan_vit_cache
from models.build import ModelSpec, build_model, model_spec

_T = TypeVar("_T")
# What a builder run on the meta device may raise for a bad value besides its own checks: a shape
# that does not fit a layer surfaces as a RuntimeError or an AttributeError there.
_META_VALUE_ERRORS = (*BUILDER_VALUE_ERRORS, RuntimeError, AttributeError)


@dataclass(frozen=True)
class TrainPlan:
    """What a training run builds besides the model.

    Attributes:
        spatial: the ``train.augmentation.spatial`` chain.
        temporal: the ``train.augmentation.temporal`` transform.
        optimizer: builds ``train.optimizer`` over the model's parameters.
        scheduler: builds ``train.scheduler`` once the iterations per epoch are known.
    """

    spatial: Compose
    temporal: TemporalTransform
    optimizer: OptimizerFactory
    scheduler: SchedulerFactory


@dataclass(frozen=True)
class EvalPlan:
    """The evaluation transforms: one spatial chain per test-time view, and the temporal transform."""

    views: list[Compose]
    temporal: TemporalTransform


@dataclass(frozen=True)
class RunPlan:
    """A checked run: the config and everything built from it.

    Attributes:
        cfg: the loaded config (paths, counts and frequencies are read from it).
        model: the model with its variant resolved.
        train: None when the run only evaluates.
        val: the evaluation transforms.
        scoring: how predict.csv is scored; None without ``val.eval_mAP``.
        vit_cache: the ViT cache's settings; None when it is off.
    """

    cfg: Config
    model: ModelSpec
    train: TrainPlan | None
    val: EvalPlan
    scoring: MapProtocol | None
    vit_cache: VitCacheSettings | None


def _built(cfg: Config, key: str, build: Callable[[], _T]) -> _T:
    """Run a builder; whatever it rejects becomes a ConfigError naming the file and the key.

    Builders raise ConfigError naming the precise key (without the file, which only the config
    knows); any other value error is pinned on ``key``, the section the builder was given.
    """
    try:
        return build()
    except ConfigError as error:
        raise error.in_file(cfg.config_file) from None
    except _META_VALUE_ERRORS as error:
        raise ConfigError(cfg.config_file, key, f"{type(error).__name__}: {error}") from None


def _model(cfg: Config) -> ModelSpec:
    spec = model_spec(cfg.model, cfg.loss)
    with torch.device("meta"):
        model = build_model(spec.without_weight_files())
    if cfg.val.with_label and not getattr(model.neck, "multi_class", False):
        raise ConfigError("", "val.with_label", "the validation loss needs multi-hot targets: set "
                          "model.neck.kwargs.multi_class to true or with_label to false")
    return spec


def _temporal(cfg: Config, split: str, augmentation: AugmentationConfig) -> TemporalTransform:
    key = f"{split}.augmentation.temporal"
    return _built(cfg, key, lambda: build_temporal(augmentation.temporal, key))


def _train(cfg: Config) -> TrainPlan:
    train = cfg.train
    assert train is not None  # make_plan asks for it only when training
    key = "train.augmentation.spatial"
    spatial = _built(cfg, key, lambda: build_spatial(train.augmentation.spatial, key))
    temporal = _temporal(cfg, "train", train.augmentation)
    optimizer = OptimizerFactory(train.optimizer, train.scheduler.base_lr)
    scheduler = SchedulerFactory(train.scheduler, train.n_epochs)
    # Built once over a stand-in parameter: the optimizer's and the schedule's own checks.
    probe = _built(cfg, "train.optimizer", lambda: optimizer([torch.nn.Parameter(torch.zeros(1))]))
    _built(cfg, "train.scheduler", lambda: scheduler(probe, iters_per_epoch=1))
    return TrainPlan(spatial, temporal, optimizer, scheduler)


def make_plan(cfg: Config, world_size: int | None = None) -> RunPlan:
    """Build every component of ``cfg`` once, reading no data and no weight file.

    Args:
        cfg: a loaded config (``config.load_config``).
        world_size: the run's processes, when the caller knows them (``main.py`` always does):
            ``train.virtual_world_size`` is checked against them here rather than in every worker.

    Returns:
        The plan the workers run.

    Raises:
        ConfigError: naming the config file and the dotted key of the first value a builder rejects.
    """
    model = _built(cfg, "model", lambda: _model(cfg))
    train = _train(cfg) if not cfg.evaluate and cfg.train is not None else None
    if train is not None and world_size is not None:
        rank_layout(cfg, world_size)
    key = "val.augmentation.spatial"
    views = _built(cfg, key, lambda: build_spatial_views(cfg.val.augmentation.spatial, key))
    val = EvalPlan(views, _temporal(cfg, "val", cfg.val.augmentation))
    vit_cache = _built(cfg, "vit_cache", lambda: plan_vit_cache(cfg, model.variant))
    return RunPlan(cfg, model, train, val, map_protocol(cfg), vit_cache)
