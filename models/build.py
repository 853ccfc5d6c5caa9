"""Builds the action model from the typed `model:` and `loss:` sections of the config.

`ModelSpec` is what a run builds: the two sections and the model variant, resolved once by
`model_variant` (declared as `model.variant`, or inferred from the head width). `build_model` builds
it; every name, kwargs key and value it cannot use is a `ConfigError` naming the dotted key (the
caller that knows the file adds it: `ConfigError.in_file`). `engine.plan.make_plan` builds the spec
once on the `meta` device before any process starts, which is its check.
"""
from __future__ import annotations

import dataclasses
import logging

import torch

from config import (
    BackboneConfig,
    ConfigError,
    LossConfig,
    ModelConfig,
    SubbackboneConfig,
    Variant,
    check_kwargs,
    construct,
    lookup,
)
from models.backbones import build_backbone, describe_backbone
from models.heads import HEADS, HeadWrapper
from models.losses import LOSSES
from models.model import AVAModel
from models.necks import NECKS

logger = logging.getLogger(__name__)

# Head arguments that come from the built backbone, not from the config (the config may not set them).
HEAD_PROVIDED: dict[str, tuple[str, ...]] = {"acar": ("vit_channels",), "linear": ()}

# The values of ``model.variant`` (``config.schema.Variant``).
ACAR_NET: Variant = "acar_net"
SFMVIT: Variant = "sfmvit"


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """The model a run builds: its ``model:`` and ``loss:`` sections and its variant, resolved once.

    Attributes:
        model: the ``model:`` section.
        loss: the ``loss:`` section.
        variant: ``ACAR_NET`` (SlowFast alone) or ``SFMVIT`` (SlowFast + frozen ViT).
    """

    model: ModelConfig
    loss: LossConfig
    variant: Variant

    @property
    def with_vit(self) -> bool:
        """Whether the backbone has the ViT stream."""
        return self.variant == SFMVIT

    def without_weight_files(self) -> ModelSpec:
        """The same model with no weight file named: building it reads none (``shape_only``)."""
        model = dataclasses.replace(self.model, backbone=shape_only(self.model.backbone))
        return dataclasses.replace(self, model=model)


def model_spec(model: ModelConfig, loss: LossConfig) -> ModelSpec:
    """``ModelSpec`` of two sections, its variant from ``model_variant`` (for code without a run plan)."""
    return ModelSpec(model, loss, model_variant(model))


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


def model_variant(model: ModelConfig) -> Variant:
    """Which model a ``model:`` section describes: ``model.variant`` when declared, else inferred.

    A declared variant is returned as it is (building the model checks it against the head width,
    ``build_model``), except that ``acar_net`` with a ``subbackbone`` section is a contradiction.
    The inference rule: ``model.head.kwargs.width`` equal to the SlowFast channels (slow + fast,
    from ``model.backbone.arch`` and ``kwargs``; 2048 + 256 = 2304 for R50/R101 at beta 1/8) in a
    config that names no ViT (no ``model.backbone.subbackbone``) is ACAR-Net's model, SlowFast
    without the ViT stream. A width equal to SlowFast + ViT channels (3712 for ViT-g) is SFMViT's,
    whether or not ``subbackbone`` is present (its eval config has none). Anything else is an error.
    Inferring builds the backbone once on the ``meta`` device (no memory, no file read).

    Args:
        model: the ``model:`` section.

    Returns:
        ``ACAR_NET`` or ``SFMVIT``.

    Raises:
        ConfigError: naming ``model.variant``, ``model.head.kwargs.width`` (with both accepted sums), or
            the backbone or head key whose name or kwargs cannot be built.
    """
    if model.variant == ACAR_NET and model.backbone.subbackbone is not None:
        raise ConfigError("", "model.variant", "'acar_net' has no ViT stream, but model.backbone.subbackbone "
                          "names a ViT: remove subbackbone, or declare 'sfmvit'")
    if model.variant is not None:
        return model.variant
    # The width is read only once the head's kwargs are known to be its builder's (a typo or a
    # missing width is reported as such, not as a width that fits no model).
    check_kwargs(lookup(HEADS, model.head.type, "model.head.type"), model.head.kwargs, "model.head.kwargs",
                 provided=HEAD_PROVIDED.get(model.head.type, ()), check_required=True)
    width = model.head.kwargs.get("width")
    dual = backbone_channels(model.backbone, with_vit=True)
    slowfast = dual[:2]
    names_vit = model.backbone.subbackbone is not None
    if width == sum(slowfast) and not names_vit:
        return ACAR_NET
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


def _check_head_width(spec: ModelSpec, channels: tuple[int, ...]) -> None:
    """``model.head.kwargs.width`` must be the built backbone's output channels.

    Raises:
        ConfigError: naming ``model.variant`` when a declared variant contradicts the width (the width
            is the other variant's), else ``model.head.kwargs.width`` with the expected sum.
    """
    width = spec.model.head.kwargs.get("width")
    if width == sum(channels):
        return
    if spec.model.variant == SFMVIT and width == sum(channels[:2]):
        raise ConfigError("", "model.variant", f"'sfmvit' contradicts model.head.kwargs.width {width}, the SlowFast "
                          f"channels {_sum_text(channels[:2])} of ACAR-Net's model: declare 'acar_net', or set the "
                          f"width to {_sum_text(channels)}")
    declared = f" of model.variant {spec.variant!r}" if spec.model.variant is not None else ""
    raise ConfigError("", "model.head.kwargs.width",
                      f"must equal the backbone's output channels {_sum_text(channels)}{declared}, got {width!r}")


def build_model(spec: ModelSpec) -> AVAModel:
    """Builds backbone (with its pretrained weights), neck, head and loss of ``spec``.

    Args:
        spec: the sections and the resolved variant: ACAR-Net's model (SlowFast, no ViT stream) or
            SFMViT's (SlowFast + frozen ViT).

    Returns:
        The model, in train mode with the freezing rules applied.

    Raises:
        ConfigError: an unknown builder name, a kwargs key a builder does not take, a value it
            rejects, a head width or class count that does not fit the built modules; naming the
            dotted key.
        FileNotFoundError, models.weights.WeightsError: for pretrained files that are absent or do not fit.
    """
    model, loss = spec.model, spec.loss
    backbone = build_backbone(model.backbone, with_vit=spec.with_vit)
    channels = tuple(backbone.out_channels)
    head_builder = lookup(HEADS, model.head.type, "model.head.type")
    neck = construct(lookup(NECKS, model.neck.type, "model.neck.type"), model.neck.kwargs, "model.neck.kwargs")
    provided = {"vit_channels": channels[2] if spec.with_vit else None}
    head = HeadWrapper(construct(head_builder, model.head.kwargs, "model.head.kwargs",
                                 provided={name: provided[name] for name in HEAD_PROVIDED.get(model.head.type, ())}))
    _check_head_width(spec, channels)
    if getattr(neck, "multi_class", False) and neck.num_classes != head.num_classes:
        raise ConfigError(
            "", "model.head.kwargs.num_classes",
            f"the head predicts {head.num_classes} classes but model.neck.kwargs.num_classes is {neck.num_classes}",
        )
    criterion = construct(lookup(LOSSES, loss.type, "loss.type"), loss.kwargs, "loss.kwargs")
    sub = model.backbone.subbackbone or SubbackboneConfig()  # the schema's defaults without the section
    built = AVAModel(backbone, neck, head, criterion, freeze_bn=model.freeze_bn, vit_eval_mode=sub.eval_mode)
    # One line per model a run uses: the run plan builds the same model on the meta device (no
    # memory, no weights), which would repeat it.
    on_meta = any(parameter.is_meta for parameter in built.parameters())
    logger.log(
        logging.DEBUG if on_meta else logging.INFO,
        "model: backbone %s; %s neck, %s head (%d classes), %s loss; %d parameters (%d trainable)",
        describe_backbone(model.backbone, backbone), model.neck.type, model.head.type, built.num_classes, loss.type,
        sum(p.numel() for p in built.parameters()),
        sum(p.numel() for p in built.parameters() if p.requires_grad),
    )
    return built
