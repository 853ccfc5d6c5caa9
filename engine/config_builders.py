"""Check a config's builder names and ``kwargs:`` blocks against the builders they feed, building nothing.

``validate_builders(cfg)`` runs before any process is spawned or weight loaded: an unknown ``type``
or ``arch`` name, or a kwargs key the builder does not take, is a ConfigError naming the dotted key.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping

from engine.config import to_dict
from engine.config_schema import AugmentationConfig, Config, ConfigError
from models import build


# ----------------------------------------------------------------------------------------------
# Builder tables and kwargs signatures
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
    from datasets.transforms import SPATIAL_TRANSFORMS, TEMPORAL_TRANSFORMS
    from engine.scheduler import OPTIMIZERS
    from models.backbones import BACKBONES, VITS
    from models.heads import HEADS
    from models.losses import LOSSES
    from models.necks import NECKS

    return BuilderTables(backbones=BACKBONES, vits=VITS, necks=NECKS, heads=HEADS, losses=LOSSES,
                         spatial_transforms=SPATIAL_TRANSFORMS, temporal_transforms=TEMPORAL_TRANSFORMS,
                         optimizers=OPTIMIZERS)


def lookup(table: Mapping[str, Callable], name: str, yaml_key: str, config_file: str) -> Callable:
    """Return ``table[name]``, or raise a ConfigError naming the key, the bad value and the choices."""
    try:
        return build.lookup_builder(table, name, yaml_key)
    except build.ModelConfigError as error:
        raise ConfigError(config_file, error.key, error.problem) from None


def check_kwargs(builder: Callable, kwargs: Mapping[str, object], yaml_key: str, config_file: str,
                 injected: Iterable[str] = (), check_required: bool = False) -> None:
    """``models.build.check_kwargs`` with the config file in the error (a ConfigError).

    Args:
        builder: function or class.
        kwargs: the block's mapping.
        yaml_key: dotted key of the block (``model.head.kwargs``).
        config_file: for the error message.
        injected: arguments the code passes itself (e.g. ``params``, ``lr`` for optimizers):
            they may not appear in the block.
        check_required: also require every argument without a default (only where the engine
            passes nothing else; model builders receive extra arguments from the model assembly).
    """
    try:
        build.check_kwargs(builder, kwargs, yaml_key, provided=injected, check_required=check_required)
    except build.ModelConfigError as error:
        raise ConfigError(config_file, error.key, error.problem) from None


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
    backbone = cfg.model.backbone
    check_kwargs(lookup(tables.backbones, backbone.arch, "model.backbone.arch", file),
                 backbone.kwargs, "model.backbone.kwargs", file)
    if backbone.subbackbone is not None:
        sub = backbone.subbackbone
        check_kwargs(lookup(tables.vits, sub.arch, "model.backbone.subbackbone.arch", file),
                     sub.kwargs, "model.backbone.subbackbone.kwargs", file)
    for section, table in (("neck", tables.necks), ("head", tables.heads)):
        part = getattr(cfg.model, section)
        check_kwargs(lookup(table, part.type, f"model.{section}.type", file),
                     part.kwargs, f"model.{section}.kwargs", file)
    check_kwargs(lookup(tables.losses, cfg.loss.type, "loss.type", file), cfg.loss.kwargs, "loss.kwargs", file)
    if not cfg.evaluate and cfg.train is not None:
        optimizer = cfg.train.optimizer
        check_kwargs(lookup(tables.optimizers, optimizer.type, "train.optimizer.type", file),
                     optimizer.kwargs, "train.optimizer.kwargs", file, injected=("params", "lr"),
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
        variant = build.model_variant(to_dict(cfg.model))
    except build.ModelConfigError as error:
        raise ConfigError(cfg.config_file, error.key, error.problem) from None
    if variant == build.ACAR_NET and cfg.vit_cache is not None and cfg.vit_cache.mode != "off":
        raise ConfigError(cfg.config_file, "vit_cache.mode",
                          f"{cfg.vit_cache.mode!r} caches ViT features, but this config builds ACAR-Net's model "
                          "(head width = SlowFast channels, no subbackbone), which has no ViT stream; set it to off")
    return variant
