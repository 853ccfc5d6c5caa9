"""Check a config's builder names and ``kwargs:`` blocks against the builders they feed, building nothing.

``validate_builders(cfg)`` runs before any process is spawned or weight loaded, and is the one place
that does: an unknown ``type`` or ``arch`` name, or a kwargs key the builder does not take, is a
ConfigError naming the file and the dotted key. The model builders (``models.build``) trust it and
check nothing of the sort again.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping

from config import (
    AugmentationConfig,
    BackboneConfig,
    Config,
    ConfigError,
    LossConfig,
    ModelConfig,
    SubbackboneConfig,
    check_kwargs,
    lookup,
)
from models import build


# ----------------------------------------------------------------------------------------------
# Builder tables
# ----------------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class BuilderTables:
    """The ``{name: builder}`` tables a config refers to (the real ones: ``default_builder_tables``)."""

    backbones: Mapping[str, Callable]
    vits: Mapping[str, Callable]
    necks: Mapping[str, Callable]
    heads: Mapping[str, Callable]
    losses: Mapping[str, Callable]
    spatial_transforms: Mapping[str, Callable]
    temporal_transforms: Mapping[str, Callable]
    optimizers: Mapping[str, Callable]


def default_builder_tables() -> BuilderTables:
    """Import the project's builder tables (models, datasets, torch.optim)."""
    from datasets.temporal_transforms import TEMPORAL_TRANSFORMS
    from datasets.transforms import SPATIAL_TRANSFORMS
    from engine.scheduler import OPTIMIZERS
    from models.backbones import BACKBONES, VITS
    from models.heads import HEADS
    from models.losses import LOSSES
    from models.necks import NECKS

    return BuilderTables(backbones=BACKBONES, vits=VITS, necks=NECKS, heads=HEADS, losses=LOSSES,
                         spatial_transforms=SPATIAL_TRANSFORMS, temporal_transforms=TEMPORAL_TRANSFORMS,
                         optimizers=OPTIMIZERS)


def check_backbone_builders(backbone: BackboneConfig, config_file: str = "",
                            tables: BuilderTables | None = None) -> None:
    """Check ``model.backbone.arch``, ``.kwargs`` and the subbackbone's ``arch`` and ``kwargs``.

    The ViT is built even without a ``subbackbone`` section (``models.backbones.build_backbone``),
    so its arch is checked then too, at the schema's default.

    Raises:
        ConfigError: unknown name (with the choices) or a kwargs key the builder does not take.
    """
    tables = tables or default_builder_tables()
    check_kwargs(lookup(tables.backbones, backbone.arch, "model.backbone.arch", config_file),
                 backbone.kwargs, "model.backbone.kwargs", config_file)
    sub = backbone.subbackbone or SubbackboneConfig()
    check_kwargs(lookup(tables.vits, sub.arch, "model.backbone.subbackbone.arch", config_file),
                 sub.kwargs, "model.backbone.subbackbone.kwargs", config_file)


def check_model_builders(model: ModelConfig, loss: LossConfig, config_file: str = "",
                         tables: BuilderTables | None = None) -> None:
    """Check every name and ``kwargs`` of ``model:`` and ``loss:`` against its builder.

    Neck, head and loss builders get nothing but their kwargs (the head also the arguments of
    ``models.build.HEAD_PROVIDED``, which the config may not set), so their required arguments
    are required here too.

    Raises:
        ConfigError: unknown name, unknown or code-owned kwargs key, missing required key.
    """
    tables = tables or default_builder_tables()
    check_backbone_builders(model.backbone, config_file, tables)
    check_kwargs(lookup(tables.necks, model.neck.type, "model.neck.type", config_file), model.neck.kwargs,
                 "model.neck.kwargs", config_file, check_required=True)
    check_kwargs(lookup(tables.heads, model.head.type, "model.head.type", config_file), model.head.kwargs,
                 "model.head.kwargs", config_file, provided=build.HEAD_PROVIDED.get(model.head.type, ()),
                 check_required=True)
    check_kwargs(lookup(tables.losses, loss.type, "loss.type", config_file), loss.kwargs, "loss.kwargs",
                 config_file, check_required=True)


def _check_transforms(cfg: Config, split: str, aug: AugmentationConfig, tables: BuilderTables) -> None:
    file = cfg.config_file
    for index, transform in enumerate(aug.spatial):
        key = f"{split}.augmentation.spatial[{index}]"
        builder = lookup(tables.spatial_transforms, transform.type, f"{key}.type", file)
        if isinstance(transform.kwargs, list):
            for view, kwargs in enumerate(transform.kwargs):
                check_kwargs(builder, kwargs, f"{key}.kwargs[{view}]", file, check_required=True)
        else:
            check_kwargs(builder, transform.kwargs, f"{key}.kwargs", file, check_required=True)
    key = f"{split}.augmentation.temporal"
    builder = lookup(tables.temporal_transforms, aug.temporal.type, f"{key}.type", file)
    assert isinstance(aug.temporal.kwargs, dict)  # lists rejected by _check_split
    check_kwargs(builder, aug.temporal.kwargs, f"{key}.kwargs", file, check_required=True)


def validate_builders(cfg: Config, tables: BuilderTables | None = None) -> None:
    """Check every ``type``/``arch`` name and ``kwargs`` block against its builder, building nothing.

    Args:
        cfg: a loaded config.
        tables: builder tables; None imports the real ones (``default_builder_tables``).

    With the real tables it also checks ``model.head.kwargs.width`` (``check_model_variant``).

    Raises:
        ConfigError: unknown builder name (with the choices), a kwargs key the builder does not
            take, or a head width that fits neither ACAR-Net's nor SFMViT's model.
    """
    real_tables = tables is None
    tables = tables or default_builder_tables()
    file = cfg.config_file
    check_model_builders(cfg.model, cfg.loss, file, tables)
    if not cfg.evaluate and cfg.train is not None:
        optimizer = cfg.train.optimizer
        check_kwargs(lookup(tables.optimizers, optimizer.type, "train.optimizer.type", file),
                     optimizer.kwargs, "train.optimizer.kwargs", file, provided=("params", "lr"),
                     check_required=True)
        _check_transforms(cfg, "train", cfg.train.augmentation, tables)
    _check_transforms(cfg, "val", cfg.val.augmentation, tables)
    if real_tables:
        check_model_variant(cfg)


def check_model_variant(cfg: Config) -> str:
    """Which model the config builds (``models.build.model_variant``), before any process is spawned.

    Returns:
        ``models.build.ACAR_NET`` or ``models.build.SFMVIT``.

    Raises:
        ConfigError: naming the file and ``model.head.kwargs.width`` when the width fits neither, or
            ``vit_cache.mode`` when a cache is asked for a model without ViT.
    """
    try:
        variant = build.model_variant(cfg.model)
    except ConfigError as error:
        raise error.in_file(cfg.config_file) from None
    if variant == build.ACAR_NET and cfg.vit_cache is not None and cfg.vit_cache.mode != "off":
        raise ConfigError(cfg.config_file, "vit_cache.mode",
                          f"{cfg.vit_cache.mode!r} caches ViT features, but this config builds ACAR-Net's model "
                          "(head width = SlowFast channels, no subbackbone), which has no ViT stream; set it to off")
    return variant
