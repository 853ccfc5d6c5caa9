"""Backbone builder tables and `build_backbone`, which assembles the dual backbone from `model.backbone`."""
from __future__ import annotations

import inspect
import logging
from collections.abc import Callable, Mapping
from typing import Any

from formats.errors import close_match_hint
from models.backbones.dual import DualBackbone
from models.backbones.single import SlowFastBackbone
from models.backbones.slowfast import SlowFast, slowfast50, slowfast101, slowfast152, slowfast200
from models.backbones.vit import (
    SFMVIT_VIT_KWARGS,
    VisionTransformer,
    vit_base_patch16_224,
    vit_giant_patch14_224,
    vit_huge_patch16_224,
    vit_large_patch16_224,
    vit_small_patch16_224,
)
from models.weights import load_slowfast_pretrain, load_vit_checkpoint

logger = logging.getLogger(__name__)

BACKBONES: dict[str, Callable[..., SlowFast]] = {
    "slowfast50": slowfast50,
    "slowfast101": slowfast101,
    "slowfast152": slowfast152,
    "slowfast200": slowfast200,
}
VITS: dict[str, Callable[..., VisionTransformer]] = {
    "vit_small_patch16_224": vit_small_patch16_224,
    "vit_base_patch16_224": vit_base_patch16_224,
    "vit_large_patch16_224": vit_large_patch16_224,
    "vit_huge_patch16_224": vit_huge_patch16_224,
    "vit_giant_patch14_224": vit_giant_patch14_224,
}
DEFAULT_VIT = "vit_giant_patch14_224"

# Arguments a config may pass through `kwargs:` (the builders forward them to these classes).
SLOWFAST_KWARGS = frozenset(inspect.signature(SlowFast).parameters) - {"layers"}
VIT_KWARGS = frozenset(inspect.signature(VisionTransformer).parameters)
PRETRAIN_KEYS = frozenset({"path", "state_dict_key", "delete_prefix", "replace_prefix", "replace_to"})
SUBBACKBONE_KEYS = frozenset({"path", "arch", "kwargs", "eval_mode"})

__all__ = ["BACKBONES", "DEFAULT_VIT", "VITS", "DualBackbone", "SlowFastBackbone", "build_backbone",
           "validate_backbone_config"]


def _check_name(value: object, choices: Mapping[str, object] | frozenset[str], key: str) -> None:
    if value not in choices:
        raise ValueError(f"{key}: unknown value {value!r}{close_match_hint(str(value), choices)}; choices: {', '.join(sorted(choices))}")


def _check_mapping(value: object, allowed: frozenset[str], key: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{key}: expected a mapping, got {type(value).__name__}")
    for name in value:
        _check_name(name, allowed, f"{key}.{name}")
    return value


def validate_backbone_config(backbone_cfg: Mapping[str, Any]) -> None:
    """Check `model.backbone` before anything is built or loaded.

    Args:
        backbone_cfg: the YAML `model.backbone` mapping as plain dicts.

    Raises:
        ValueError: naming the dotted key (`model.backbone.arch`, `model.backbone.kwargs.<name>`,
            `model.backbone.subbackbone.kwargs.<name>`, ...) for an unknown name or a missing path.
    """
    _check_name(backbone_cfg.get("arch"), BACKBONES, "model.backbone.arch")
    _check_mapping(backbone_cfg.get("kwargs"), SLOWFAST_KWARGS, "model.backbone.kwargs")
    pretrain = _check_mapping(backbone_cfg.get("pretrain"), PRETRAIN_KEYS, "model.backbone.pretrain")
    if "pretrain" in backbone_cfg and not pretrain.get("path"):
        raise ValueError("model.backbone.pretrain.path: required when model.backbone.pretrain is given")
    sub = _check_mapping(backbone_cfg.get("subbackbone"), SUBBACKBONE_KEYS, "model.backbone.subbackbone")
    _check_name(sub.get("arch", DEFAULT_VIT), VITS, "model.backbone.subbackbone.arch")
    _check_mapping(sub.get("kwargs"), VIT_KWARGS, "model.backbone.subbackbone.kwargs")


def build_backbone(backbone_cfg: Mapping[str, Any], with_vit: bool = True) -> DualBackbone | SlowFastBackbone:
    """Build SlowFast + ViT from `model.backbone`, in the original's order, and load pretrained weights.

    The ViT is built whether or not `subbackbone` is present, as the original does: the eval and
    resume configs have no `subbackbone` key, yet their checkpoints hold the ViT's weights. It is
    `SFMVIT_VIT_KWARGS` applied to `subbackbone.arch` (default ViT-g/14), then
    `subbackbone.kwargs` on top (additive extension, e.g. `{depth: 2}`). Its weights are read
    from `subbackbone.path` when given; otherwise they stay at their initialisation until a full
    checkpoint is loaded. SlowFast weights come from `pretrain` when given.

    With `with_vit=False` (ACAR-Net's models: `models.build.model_variant` decides) no ViT is
    built and the result is SlowFast alone.

    Args:
        backbone_cfg: the YAML `model.backbone` mapping (`arch`, `learnable`, `kwargs`,
            `pretrain{path, state_dict_key, delete_prefix, replace_prefix, replace_to}`,
            `subbackbone{path, arch, kwargs, eval_mode}`).
        with_vit: build the ViT stream (SFMViT) or not (ACAR-Net).

    Returns:
        The dual backbone, ViT frozen (or `SlowFastBackbone` without ViT); SlowFast frozen too
        when `learnable` is False.

    Raises:
        ValueError: for an invalid config (see `validate_backbone_config`).
        FileNotFoundError, models.weights.WeightsError: for weight files that are absent or do not fit.
    """
    validate_backbone_config(backbone_cfg)
    slowfast = BACKBONES[backbone_cfg["arch"]](**(backbone_cfg.get("kwargs") or {}))
    if not with_vit:
        logger.info("backbone: %s (slow, fast channels %s), no ViT stream", backbone_cfg["arch"], slowfast.out_channels)
        if backbone_cfg.get("pretrain") is not None:
            load_slowfast_pretrain(slowfast, **backbone_cfg["pretrain"])
        return SlowFastBackbone(slowfast, learnable=bool(backbone_cfg.get("learnable", True)))
    sub = backbone_cfg.get("subbackbone") or {}
    vit_arch = sub.get("arch", DEFAULT_VIT)
    vit = VITS[vit_arch](**{**SFMVIT_VIT_KWARGS, **(sub.get("kwargs") or {})})
    logger.info("backbone: %s (slow, fast channels %s) + frozen %s (%d blocks, width %d, grid %s)",
                backbone_cfg["arch"], slowfast.out_channels, vit_arch, len(vit.blocks), vit.embed_dim, vit.grid_size)
    pretrain = backbone_cfg.get("pretrain")
    if pretrain is not None:
        load_slowfast_pretrain(slowfast, **pretrain)
    if sub.get("path"):
        load_vit_checkpoint(vit, sub["path"])
    return DualBackbone(slowfast, vit, learnable=bool(backbone_cfg.get("learnable", True)),
                        vit_eval_mode=bool(sub.get("eval_mode", False)))
