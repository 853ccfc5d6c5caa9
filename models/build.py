"""Builds the action model from the typed `model:` and `loss:` sections of the config.

The sections come checked: their keys, types and defaults by `config` (the schema), their builder
names and kwargs by `engine.config_builders.validate_builders`, before any process is spawned. What
only the built modules can tell (the head width against the backbone's channels, the class counts
of neck and head) is checked here, as a `ConfigError` naming the dotted key (the caller that knows
the file adds it: `ConfigError.in_file`).
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping

import torch

from config import BackboneConfig, ConfigError, LossConfig, ModelConfig, SubbackboneConfig
from models.backbones import build_backbone, describe_backbone
from models.heads import HEADS, HeadWrapper
from models.losses import LOSSES
from models.model import AVAModel
from models.necks import NECKS

logger = logging.getLogger(__name__)

# Head arguments that come from the built backbone, not from the config (the config may not set them).
HEAD_PROVIDED: dict[str, tuple[str, ...]] = {"acar": ("vit_channels",), "linear": ()}


# Model variants, decided from the config alone by ``model_variant``.
SFMVIT = "sfmvit"
ACAR_NET = "acar_net"


def shape_only(backbone: BackboneConfig) -> BackboneConfig:
    """``model.backbone`` without its weight files: building it reads none."""
    sub = backbone.subbackbone
    return dataclasses.replace(backbone, pretrain=None,
                               subbackbone=None if sub is None else dataclasses.replace(sub, path=None))


def backbone_channels(backbone: BackboneConfig, with_vit: bool = True) -> tuple[int, ...]:
    """Output channels of the configured backbone, found on the ``meta`` device (no memory, no file read).

    Args:
        backbone: the ``model.backbone`` section.
        with_vit: include the ViT stream (SFMViT) or not (ACAR-Net).

    Returns:
        ``(slow, fast, vit)`` channels, e.g. ``(2048, 256, 1408)``; ``(slow, fast)`` without ViT.
    """
    with torch.device("meta"):
        return tuple(build_backbone(shape_only(backbone), with_vit=with_vit).out_channels)


def _sum_text(channels: tuple[int, ...]) -> str:
    parts = " + ".join(f"{name} {c}" for name, c in zip(("slow", "fast", "vit"), channels))
    return f"{parts} = {sum(channels)}"


def model_variant(model: ModelConfig) -> str:
    """Which model a config describes, from the config alone: ACAR-Net's or SFMViT's.

    The rule: ``model.head.kwargs.width`` equal to the SlowFast channels (slow + fast, computed
    from ``model.backbone.arch`` and ``kwargs``; 2048 + 256 = 2304 for R50/R101 at beta 1/8) in
    a config that names no ViT (no ``model.backbone.subbackbone``) is ACAR-Net's model, SlowFast
    without the ViT stream. A width equal to SlowFast + ViT channels (3712 for ViT-g) is SFMViT's,
    whether or not ``subbackbone`` is present (its eval config has none). Anything else is an error.

    Args:
        model: the ``model:`` section (backbone names already checked).

    Returns:
        ``ACAR_NET`` or ``SFMVIT``.

    Raises:
        ConfigError: naming ``model.head.kwargs.width``, with both accepted sums.
    """
    width = model.head.kwargs.get("width")
    slowfast = backbone_channels(model.backbone, with_vit=False)
    names_vit = model.backbone.subbackbone is not None
    if width == sum(slowfast) and not names_vit:
        return ACAR_NET
    dual = backbone_channels(model.backbone, with_vit=True)
    if width == sum(dual):
        return SFMVIT
    if width == sum(slowfast):
        raise ConfigError(
            "", "model.head.kwargs.width",
            f"{width} is the SlowFast channels {_sum_text(slowfast)} (ACAR-Net's model), but "
            f"model.backbone.subbackbone names a ViT: use width {_sum_text(dual)} for SFMViT, or "
            "remove subbackbone for ACAR-Net",
        )
    raise ConfigError(
        "", "model.head.kwargs.width",
        f"must equal the backbone's output channels: SlowFast {_sum_text(slowfast)} (ACAR-Net, no ViT) or "
        f"SlowFast + ViT {_sum_text(dual)} (SFMViT), got {width!r}",
    )


def check_head_width(head_kwargs: Mapping[str, object], channels: tuple[int, ...]) -> None:
    """Checks ``model.head.kwargs.width`` against the backbone's output channels.

    Args:
        head_kwargs: the configured head kwargs.
        channels: the backbone's ``out_channels`` (slow, fast[, vit]).

    Raises:
        ConfigError: naming ``model.head.kwargs.width`` with the expected sum.
    """
    width = head_kwargs.get("width")
    if width != sum(channels):
        raise ConfigError(
            "", "model.head.kwargs.width",
            f"must equal the backbone's output channels {_sum_text(channels)}, got {width!r}",
        )


def build_model(model: ModelConfig, loss: LossConfig) -> AVAModel:
    """Builds backbone (with its pretrained weights), neck, head and loss from the config.

    Args:
        model: the ``model:`` section (``freeze_bn``, ``backbone``, ``neck``, ``head``).
        loss: the ``loss:`` section.

    The config alone says which model it is (``model_variant``): ACAR-Net's (SlowFast, no ViT
    stream) or SFMViT's (SlowFast + frozen ViT).

    Returns:
        The model, in train mode with the freezing rules applied.

    Raises:
        ConfigError: a head width or class count that does not fit the built modules, naming the
            dotted key.
        FileNotFoundError, models.weights.WeightsError: for pretrained files that are absent or do not fit.
    """
    head_kwargs = dict(model.head.kwargs)
    with_vit = model_variant(model) == SFMVIT
    backbone = build_backbone(model.backbone, with_vit=with_vit)
    channels = tuple(backbone.out_channels)
    check_head_width(head_kwargs, channels)
    if "vit_channels" in HEAD_PROVIDED.get(model.head.type, ()):
        head_kwargs["vit_channels"] = channels[2] if with_vit else None
    neck = NECKS[model.neck.type](**model.neck.kwargs)
    head = HeadWrapper(HEADS[model.head.type](**head_kwargs))
    if getattr(neck, "multi_class", False) and neck.num_classes != head.num_classes:
        raise ConfigError(
            "", "model.head.kwargs.num_classes",
            f"the head predicts {head.num_classes} classes but model.neck.kwargs.num_classes is {neck.num_classes}",
        )
    criterion = LOSSES[loss.type](**loss.kwargs)
    sub = model.backbone.subbackbone or SubbackboneConfig()  # the schema's defaults without the section
    built = AVAModel(backbone, neck, head, criterion, freeze_bn=model.freeze_bn, vit_eval_mode=sub.eval_mode)
    # One line per model a run uses: the launcher's checks build the same model on the meta device
    # (no memory, no weights), which would repeat it.
    on_meta = any(parameter.is_meta for parameter in built.parameters())
    logger.log(
        logging.DEBUG if on_meta else logging.INFO,
        "model: backbone %s; %s neck, %s head (%d classes), %s loss; %d parameters (%d trainable)",
        describe_backbone(model.backbone, backbone), model.neck.type, model.head.type, built.num_classes, loss.type,
        sum(p.numel() for p in built.parameters()),
        sum(p.numel() for p in built.parameters() if p.requires_grad),
    )
    return built
