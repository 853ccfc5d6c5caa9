"""Backbone builder tables and `build_backbone`, which assembles the dual backbone from `model.backbone`."""
from __future__ import annotations

from collections.abc import Callable

from config import BackboneConfig, PretrainConfig, SubbackboneConfig, construct, lookup
from models.backbones.dual import DualBackbone
from models.backbones.single import SlowFastBackbone
from models.backbones.slowfast import SlowFast, slowfast50, slowfast101, slowfast152, slowfast200
from models.backbones.vit import SFMVIT_VIT_KWARGS, VIT_BUILDERS, VisionTransformer
from models.weights import load_slowfast_pretrain, load_vit_checkpoint

BACKBONES: dict[str, Callable[..., SlowFast]] = {
    "slowfast50": slowfast50,
    "slowfast101": slowfast101,
    "slowfast152": slowfast152,
    "slowfast200": slowfast200,
}
# ``model.backbone.subbackbone.arch`` -> builder: the size table of models/backbones/vit.py.
VITS: dict[str, Callable[..., VisionTransformer]] = VIT_BUILDERS
__all__ = ["BACKBONES", "VITS", "DualBackbone", "SlowFastBackbone", "build_backbone", "describe_backbone"]


def _load_pretrain(slowfast: SlowFast, pretrain: PretrainConfig) -> None:
    load_slowfast_pretrain(slowfast, pretrain.path, state_dict_key=pretrain.state_dict_key,
                           delete_prefix=pretrain.delete_prefix, replace_prefix=pretrain.replace_prefix,
                           replace_to=pretrain.replace_to)


def build_backbone(backbone: BackboneConfig, with_vit: bool = True) -> DualBackbone | SlowFastBackbone:
    """Build SlowFast + ViT from `model.backbone`, in the original's order, and load pretrained weights.

    The ViT is built whether or not `subbackbone` is present, as the original does: the eval and
    resume configs have no `subbackbone` key, yet their checkpoints hold the ViT's weights. It is
    `SFMVIT_VIT_KWARGS` applied to `subbackbone.arch` (the schema's default without a
    `subbackbone` section: ViT-g/14), then `subbackbone.kwargs` on top (additive extension, e.g.
    `{depth: 2}`). Its weights are read from `subbackbone.path` when given; otherwise they stay
    at their initialisation until a full checkpoint is loaded. SlowFast weights come from
    `pretrain` when given.

    With `with_vit=False` (ACAR-Net's models: the variant of `models.build.ModelSpec`) no ViT is
    built and the result is SlowFast alone.

    Args:
        backbone: the typed `model.backbone` section.
        with_vit: build the ViT stream (SFMViT) or not (ACAR-Net).

    Returns:
        The dual backbone, ViT frozen (or `SlowFastBackbone` without ViT); SlowFast frozen too
        when `learnable` is False.

    Raises:
        ConfigError: an unknown `arch`, a kwargs key its builder does not take or a value it rejects,
            naming the dotted key (no file: the caller adds it).
        FileNotFoundError, models.weights.WeightsError: for weight files that are absent or do not fit.
    """
    # Pass-through builders (`**kwargs`) get more than the config gives: no required-key check.
    slowfast = construct(lookup(BACKBONES, backbone.arch, "model.backbone.arch"), backbone.kwargs,
                         "model.backbone.kwargs", check_required=False)
    if not with_vit:
        if backbone.pretrain is not None:
            _load_pretrain(slowfast, backbone.pretrain)
        return SlowFastBackbone(slowfast, learnable=backbone.learnable)
    sub = backbone.subbackbone or SubbackboneConfig()
    vit = construct(lookup(VITS, sub.arch, "model.backbone.subbackbone.arch"), {**SFMVIT_VIT_KWARGS, **sub.kwargs},
                    "model.backbone.subbackbone.kwargs", check_required=False)
    if backbone.pretrain is not None:
        _load_pretrain(slowfast, backbone.pretrain)
    if sub.path:
        load_vit_checkpoint(vit, sub.path)
    return DualBackbone(slowfast, vit, learnable=backbone.learnable, vit_eval_mode=sub.eval_mode)


def describe_backbone(backbone: BackboneConfig, built: DualBackbone | SlowFastBackbone) -> str:
    """One phrase for logs: the SlowFast and, when built, the frozen ViT of ``build_backbone``'s result.

    ``build_backbone`` logs nothing itself: the run plan builds backbones on the ``meta`` device
    (once more to infer an undeclared variant), and only the model a run uses deserves a line
    (``build_model``).
    """
    text = f"{backbone.arch} (slow, fast channels {tuple(built.module.out_channels)})"
    if not built.has_vit:
        return f"{text}, no ViT stream"
    vit = built.submodule
    sub = backbone.subbackbone or SubbackboneConfig()
    return f"{text} + frozen {sub.arch} ({len(vit.blocks)} blocks, width {vit.embed_dim}, grid {vit.grid_size})"
