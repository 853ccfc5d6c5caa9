"""Checks run by the launcher before any worker starts: every value a worker would trip over, in one line.

``config`` checks keys and types and ``engine.config_builders`` the ``kwargs`` names; what is
left are values only a builder or a reader judges: a transform ``resize: big``, a head ``width`` that
is not the backbone's channel count, a ``dropout: [0.3]``, a label map or pkl that does not parse.
Here the transforms are built, the model is built once on the ``meta`` device (no memory, no
weight file read) and the data files are parsed, so that such a mistake is a ``ConfigError`` or a
``FormatError`` before the workers spawn, not a traceback from every rank minutes later.
"""
from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

from config import Config, ConfigError

logger = logging.getLogger(__name__)

_T = TypeVar("_T")
# What a builder raises for a bad value; anything else is a bug and keeps its traceback.
_VALUE_ERRORS = (ValueError, TypeError, KeyError, IndexError, RuntimeError, AttributeError)


def _named(cfg: Config, key: str, build: Callable[[], _T], kwargs: Mapping[str, Any] | None = None,
           builder: Callable[..., Any] | None = None) -> _T:
    """Run ``build``; a value error becomes a ConfigError on ``key`` (or on the key the error names).

    With ``kwargs`` and ``builder``, a TypeError is pinned on the kwargs whose value's type differs
    from the builder's default (``dropout: [0.3]`` where the default is 0.0).
    """
    try:
        return build()
    except ConfigError as error:  # a builder's own check: add the file
        raise error.in_file(cfg.config_file) from None
    except _VALUE_ERRORS as error:
        suspects = _mistyped(kwargs, builder) if isinstance(error, TypeError) else []
        if suspects:
            name = suspects[0]
            raise ConfigError(cfg.config_file, f"{key}.{name}", f"{kwargs[name]!r} is not a "
                              f"{type(_default(builder, name)).__name__} like its default "
                              f"({type(error).__name__}: {error})") from None
        raise ConfigError(cfg.config_file, key, f"{type(error).__name__}: {error}") from None


def _default(builder: Callable[..., Any] | None, name: str) -> object:
    try:
        parameter = inspect.signature(builder).parameters.get(name)
    except (TypeError, ValueError):
        return None
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _mistyped(kwargs: Mapping[str, Any] | None, builder: Callable[..., Any] | None) -> list[str]:
    """The kwargs given a container where the builder's default is a number or a string."""
    if not kwargs or builder is None:
        return []
    suspects = []
    for name, value in kwargs.items():
        default = _default(builder, name)
        if isinstance(default, (int, float, str)) and not isinstance(default, bool) \
                and isinstance(value, (list, dict, tuple)):
            suspects.append(name)
    return suspects


def check_model_values(cfg: Config) -> None:
    """Build neck, head and the whole model on the ``meta`` device.

    Raises:
        ConfigError: naming ``model.neck.kwargs``, ``model.head.kwargs`` (e.g. ``dropout: [0.3]``),
            ``model.head.kwargs.width`` or ``num_classes`` and the builder's complaint.
    """
    from models.backbones import build_backbone
    from models.build import HEAD_PROVIDED, build_model, shape_only
    from models.heads import HEADS
    from models.necks import NECKS

    model = dataclasses.replace(cfg.model, backbone=shape_only(cfg.model.backbone))
    with torch.device("meta"):
        backbone = _named(cfg, "model.backbone", lambda: build_backbone(model.backbone))
        neck, head = model.neck, model.head
        _named(cfg, "model.neck.kwargs", lambda: NECKS[neck.type](**neck.kwargs), neck.kwargs, NECKS[neck.type])
        head_kwargs = dict(head.kwargs)
        if "vit_channels" in HEAD_PROVIDED.get(head.type, ()):
            head_kwargs["vit_channels"] = tuple(backbone.out_channels)[-1]
        _named(cfg, "model.head.kwargs", lambda: HEADS[head.type](**head_kwargs), head_kwargs, HEADS[head.type])
        del backbone
        _named(cfg, "model", lambda: build_model(model, cfg.loss))


def check_transforms(cfg: Config) -> None:
    """Build every transform chain the workers will build.

    Raises:
        ConfigError: naming ``{split}.augmentation.spatial`` / ``.temporal`` and the problem.
    """
    from datasets.transforms import build_spatial, build_spatial_views, build_temporal

    splits = [("val", cfg.val.augmentation, build_spatial_views)]
    if not cfg.evaluate and cfg.train is not None:
        splits.insert(0, ("train", cfg.train.augmentation, build_spatial))
    for split, augmentation, build in splits:
        key = f"{split}.augmentation"
        _named(cfg, f"{key}.spatial", lambda: build(augmentation.spatial, f"{key}.spatial"))
        _named(cfg, f"{key}.temporal", lambda: build_temporal(augmentation.temporal, f"{key}.temporal"))


def check_data_files(cfg: Config, world_size: int | None = None) -> None:
    """Parse the annotation pkls, the label map, the ground truth and the exclusions.

    Args:
        cfg: the config.
        world_size: processes of the run, when known: training needs at least one full batch per rank.

    Raises:
        FormatError: naming the file (and row) that does not parse.
        ConfigError: ``train.batch_size`` leaves a rank without a single batch.
    """
    from formats.annotation_pkl import load_annotation_pkl
    from formats.eval_csv import read_exclusions, read_ground_truth_csv
    from formats.pbtxt import read_label_map

    pkls = [cfg.val.annotation_path]
    if not cfg.evaluate and cfg.train is not None:
        pkls.insert(0, cfg.train.annotation_path)
    for path in pkls:
        loaded = load_annotation_pkl(path)
        if world_size and not cfg.evaluate and cfg.train is not None and path == cfg.train.annotation_path:
            check_training_batches(cfg, len(loaded.elements), world_size)
    eval_map = cfg.val.eval_mAP
    if eval_map is not None:
        for name, read in (("labelmap", read_label_map), ("groundtruth", read_ground_truth_csv),
                           ("exclusions", read_exclusions)):
            path = getattr(eval_map, name)
            if path:
                read(path)


def check_training_batches(cfg: Config, train_elements: int, world_size: int) -> None:
    """Each rank gets ``floor(N / W)`` training elements and drops its last partial batch (docs/numerics.md §8).

    Raises:
        ConfigError: not one batch per epoch would remain.
    """
    batch = cfg.train.batch_size
    if train_elements // world_size // batch == 0:
        raise ConfigError(cfg.config_file, "train.batch_size",
                          f"{batch} per process x {world_size} process(es) needs at least {batch * world_size} "
                          f"training elements, but {cfg.train.annotation_path} holds {train_elements}; no batch "
                          "would run (lower train.batch_size or --nproc_per_node)")


def check_evaluation_weights(cfg: Config) -> None:
    """``evaluate: True`` must have weights to evaluate (a resume or pretrain checkpoint).

    Raises:
        ConfigError: neither is set and ``evaluate_random_weights`` is not True.
    """
    from engine.checkpoint import list_checkpoints

    if not cfg.evaluate or cfg.resume_path or cfg.pretrain is not None:
        return
    if cfg.auto_resume and list_checkpoints(cfg.result_path):
        return
    if cfg.evaluate_random_weights:
        logger.warning("evaluate: True without resume_path or pretrain: evaluating randomly initialised weights")
        return
    raise ConfigError(cfg.config_file, "evaluate", "True, but no resume_path, pretrain or checkpoint is set, so the "
                      "scores would come from random weights; set resume_path (or pretrain), or "
                      "evaluate_random_weights: true if that is what you want")


def check_weight_files(cfg: Config) -> None:
    """Weight files that are empty (a copy or download cut short) are refused now, not in every worker.

    Raises:
        ConfigError: naming the key and the file.
    """
    from engine.checkpoint import resolve_resume_path

    backbone = cfg.model.backbone
    files = [("pretrain.path", cfg.pretrain.path if cfg.pretrain is not None else None),
             ("model.backbone.pretrain.path", backbone.pretrain.path if backbone.pretrain is not None else None),
             ("model.backbone.subbackbone.path", backbone.subbackbone.path if backbone.subbackbone is not None
              else None)]
    if cfg.resume_path and not cfg.auto_resume:
        try:
            files.append(("resume_path", str(resolve_resume_path(cfg.resume_path, cfg.result_path))))
        except FileNotFoundError as error:
            raise ConfigError(cfg.config_file, "resume_path", str(error)) from None
    for key, path in files:
        if path and Path(path).is_file() and Path(path).stat().st_size == 0:
            raise ConfigError(cfg.config_file, key, f"{path} is an empty file (0 bytes), not a checkpoint")


def preflight(cfg: Config, world_size: int | None = None) -> None:
    """All checks above, cheapest first (``world_size``: the run's processes, when the launcher knows it)."""
    check_evaluation_weights(cfg)
    check_weight_files(cfg)
    check_transforms(cfg)
    check_model_values(cfg)
    check_data_files(cfg, world_size)
