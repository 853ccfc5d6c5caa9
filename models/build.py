"""Builds the action model from the YAML `model:` and `loss:` sections, validating names and kwargs first."""
from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import torch

from formats.errors import close_match_hint

from models.backbones import build_backbone, validate_backbone_config
from models.heads import HEADS, HeadWrapper
from models.losses import LOSSES
from models.model import AVAModel
from models.necks import NECKS

logger = logging.getLogger(__name__)


class ModelConfigError(ValueError):
    """A `model:` or `loss:` entry that cannot be built; the message starts with the dotted key.

    Attributes:
        key: dotted YAML path of the culprit, e.g. ``model.head.kwargs.width``.
        problem: what was expected and what was found.
    """

    def __init__(self, key: str, problem: str) -> None:
        self.key = key
        self.problem = problem
        super().__init__(f"{key}: {problem}")


# Head arguments that come from the built backbone, not from the config.
_HEAD_PROVIDED: dict[str, tuple[str, ...]] = {"acar": ("vit_channels",), "linear": ()}


def lookup_builder(table: Mapping[str, Callable[..., Any]], name: object, where: str) -> Callable[..., Any]:
    """Picks a builder by its config name.

    Args:
        table: ``{name: builder}`` (e.g. ``models.heads.HEADS``).
        name: the configured value.
        where: dotted YAML path of the value, e.g. ``model.head.type``.

    Returns:
        The builder.

    Raises:
        ModelConfigError: naming ``where``, the bad value and the choices.
    """
    if not isinstance(name, str) or name not in table:
        raise ModelConfigError(
            where, f"unknown value {name!r}{close_match_hint(str(name), table)}; choices: {', '.join(sorted(table))}"
        )
    return table[name]


def _parameters(builder: Callable[..., Any]) -> tuple[list[str], dict[str, Any], list[str], bool] | None:
    """Accepted keyword names, their defaults, the required ones and whether any name is accepted.

    None when the builder has no inspectable signature (some C builtins): nothing to check against.
    """
    try:
        params = list(inspect.signature(builder).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        # A pass-through builder (``def slowfast50(**kwargs) -> SlowFast``): check against the
        # class it returns when that is known; its required arguments are the builder's business.
        try:
            returned = typing.get_type_hints(builder).get("return")
        except (NameError, TypeError):  # unresolvable annotation: nothing to check against
            returned = None
        if inspect.isclass(returned):
            found = _parameters(returned)
            if found is not None:
                names, defaults, _, open_ended = found
                return names, defaults, [], open_ended
        return [], {}, [], True
    keyword = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    named = [p for p in params if p.kind in keyword and p.name != "self"]
    defaults = {p.name: p.default for p in named if p.default is not p.empty}
    return [p.name for p in named], defaults, [p.name for p in named if p.default is p.empty], False


def _check_type_against_default(default: object, value: object, where: str) -> None:
    """Catch numbers and booleans given as text, judged by the type of the builder's default."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ModelConfigError(where, f"expected a boolean (true/false), found {type(value).__name__} {value!r}")
    elif isinstance(default, (int, float)) and isinstance(value, str):
        raise ModelConfigError(where, f"expected a number, found str {value!r} (PyYAML reads exponents without "
                               "a dot as text: write 1.0e-4, not 1e-4)")


def check_kwargs(
    builder: Callable[..., Any],
    kwargs: Mapping[str, Any] | None,
    where: str,
    provided: Iterable[str] = (),
    check_required: bool = True,
) -> None:
    """Validates a config ``kwargs:`` mapping against a builder's signature, before building.

    The one checker of ``kwargs:`` blocks: the model builder and ``engine.config_builders`` (which
    also checks transforms and optimizers) both use it.

    Args:
        builder: the function (or class) the kwargs will be passed to.
        kwargs: the configured mapping (None = empty).
        where: dotted YAML path of the mapping, e.g. ``model.head.kwargs``.
        provided: argument names the code fills in itself (the head's ``vit_channels``, an
            optimizer's ``params`` and ``lr``); the config may not set them.
        check_required: also require every argument without a default that is not ``provided``.

    Raises:
        ModelConfigError: for a non-mapping, an unknown or reserved name (naming ``where.<name>``,
            with a close match or the accepted names), a value whose type contradicts the
            argument's default, or a missing required name.
    """
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise ModelConfigError(where, f"expected a mapping of argument names, got {type(kwargs).__name__}")
    found = _parameters(builder)
    if found is None:
        return
    names, defaults, required, open_ended = found
    provided = set(provided)
    accepted = [name for name in names if name not in provided]
    for name in kwargs:
        if name in provided:
            raise ModelConfigError(f"{where}.{name}", "is set by the code, not the config; remove it from kwargs")
        if not open_ended and name not in names:
            raise ModelConfigError(f"{where}.{name}", "unknown key" + close_match_hint(str(name), accepted)
                                   + f"; accepted: {', '.join(accepted) or '(none)'}")
    for name, value in kwargs.items():
        _check_type_against_default(defaults.get(name), value, f"{where}.{name}")
    if check_required:
        for name in required:
            if name not in kwargs and name not in provided:
                raise ModelConfigError(f"{where}.{name}", "missing required key")


def _section(cfg: Mapping[str, Any], name: str, where: str) -> Mapping[str, Any]:
    value = cfg.get(name)
    if not isinstance(value, Mapping):
        raise ModelConfigError(f"{where}.{name}", f"expected a mapping, got {type(value).__name__}")
    return value


def check_model_config(model_cfg: Mapping[str, Any], loss_cfg: Mapping[str, Any]) -> None:
    """Validates names and kwargs of ``model:`` and ``loss:`` without building or loading anything.

    The head ``width`` is checked later, by ``build_model``, against the built backbone; use
    ``backbone_channels`` to check it earlier.

    Args:
        model_cfg: the YAML ``model:`` mapping as plain dicts.
        loss_cfg: the YAML ``loss:`` mapping.

    Raises:
        ModelConfigError / ValueError: the message starts with the dotted key of the culprit.
    """
    validate_backbone_config(_section(model_cfg, "backbone", "model"))
    neck_cfg = _section(model_cfg, "neck", "model")
    check_kwargs(lookup_builder(NECKS, neck_cfg.get("type"), "model.neck.type"), neck_cfg.get("kwargs"),
                 "model.neck.kwargs")
    head_cfg = _section(model_cfg, "head", "model")
    head_type = head_cfg.get("type")
    check_kwargs(lookup_builder(HEADS, head_type, "model.head.type"), head_cfg.get("kwargs"), "model.head.kwargs",
                 provided=_HEAD_PROVIDED.get(head_type, ()))
    check_kwargs(lookup_builder(LOSSES, loss_cfg.get("type"), "loss.type"), loss_cfg.get("kwargs"), "loss.kwargs")


# Model variants, decided from the config alone by ``model_variant``.
SFMVIT = "sfmvit"
ACAR_NET = "acar_net"


def _shape_only(backbone_cfg: Mapping[str, Any]) -> dict[str, Any]:
    """``model.backbone`` without the file paths: building it reads no weights."""
    shape_only = {key: value for key, value in backbone_cfg.items() if key != "pretrain"}
    if isinstance(shape_only.get("subbackbone"), Mapping):
        shape_only["subbackbone"] = {k: v for k, v in shape_only["subbackbone"].items() if k != "path"}
    return shape_only


def backbone_channels(backbone_cfg: Mapping[str, Any], with_vit: bool = True) -> tuple[int, ...]:
    """Output channels of the configured backbone, found on the ``meta`` device (no memory, no file read).

    Args:
        backbone_cfg: the YAML ``model.backbone`` mapping.
        with_vit: include the ViT stream (SFMViT) or not (ACAR-Net).

    Returns:
        ``(slow, fast, vit)`` channels, e.g. ``(2048, 256, 1408)``; ``(slow, fast)`` without ViT.
    """
    with torch.device("meta"):
        return tuple(build_backbone(_shape_only(backbone_cfg), with_vit=with_vit).out_channels)


def _sum_text(channels: tuple[int, ...]) -> str:
    parts = " + ".join(f"{name} {c}" for name, c in zip(("slow", "fast", "vit"), channels))
    return f"{parts} = {sum(channels)}"


def model_variant(model_cfg: Mapping[str, Any]) -> str:
    """Which model a config describes, from the config alone: ACAR-Net's or SFMViT's.

    The rule: ``model.head.kwargs.width`` equal to the SlowFast channels (slow + fast, computed
    from ``model.backbone.arch`` and ``kwargs``; 2048 + 256 = 2304 for R50/R101 at beta 1/8) in
    a config that names no ViT (no ``model.backbone.subbackbone``) is ACAR-Net's model, SlowFast
    without the ViT stream. A width equal to SlowFast + ViT channels (3712 for ViT-g) is SFMViT's,
    whether or not ``subbackbone`` is present (its eval config has none). Anything else is an error.

    Args:
        model_cfg: the YAML ``model:`` mapping (backbone names already checked).

    Returns:
        ``ACAR_NET`` or ``SFMVIT``.

    Raises:
        ModelConfigError: naming ``model.head.kwargs.width``, with both accepted sums.
    """
    backbone_cfg = model_cfg["backbone"]
    width = (model_cfg["head"].get("kwargs") or {}).get("width")
    slowfast = backbone_channels(backbone_cfg, with_vit=False)
    names_vit = backbone_cfg.get("subbackbone") is not None
    if width == sum(slowfast) and not names_vit:
        return ACAR_NET
    dual = backbone_channels(backbone_cfg, with_vit=True)
    if width == sum(dual):
        return SFMVIT
    if width == sum(slowfast):
        raise ModelConfigError(
            "model.head.kwargs.width",
            f"{width} is the SlowFast channels {_sum_text(slowfast)} (ACAR-Net's model), but "
            f"model.backbone.subbackbone names a ViT: use width {_sum_text(dual)} for SFMViT, or "
            "remove subbackbone for ACAR-Net",
        )
    raise ModelConfigError(
        "model.head.kwargs.width",
        f"must equal the backbone's output channels: SlowFast {_sum_text(slowfast)} (ACAR-Net, no ViT) or "
        f"SlowFast + ViT {_sum_text(dual)} (SFMViT), got {width!r}",
    )


def check_head_width(head_kwargs: Mapping[str, Any], channels: tuple[int, ...]) -> None:
    """Checks ``model.head.kwargs.width`` against the backbone's output channels.

    Args:
        head_kwargs: the configured head kwargs.
        channels: the backbone's ``out_channels`` (slow, fast[, vit]).

    Raises:
        ModelConfigError: naming ``model.head.kwargs.width`` with the expected sum.
    """
    width = head_kwargs.get("width")
    if width != sum(channels):
        raise ModelConfigError(
            "model.head.kwargs.width",
            f"must equal the backbone's output channels {_sum_text(channels)}, got {width!r}",
        )


def build_model(model_cfg: Mapping[str, Any], loss_cfg: Mapping[str, Any]) -> AVAModel:
    """Builds backbone (with its pretrained weights), neck, head and loss from the config.

    Args:
        model_cfg: the YAML ``model:`` mapping as plain dicts (``freeze_bn``, ``backbone``,
            ``neck{type, kwargs}``, ``head{type, kwargs}``).
        loss_cfg: the YAML ``loss:`` mapping (``type``, ``kwargs``).

    The config alone says which model it is (``model_variant``): ACAR-Net's (SlowFast, no ViT
    stream) or SFMViT's (SlowFast + frozen ViT).

    Returns:
        The model, in train mode with the freezing rules applied.

    Raises:
        ModelConfigError / ValueError: for an invalid config, naming the dotted key.
        FileNotFoundError, models.weights.WeightsError: for pretrained files that are absent or do not fit.
    """
    check_model_config(model_cfg, loss_cfg)
    backbone_cfg, neck_cfg, head_cfg = model_cfg["backbone"], model_cfg["neck"], model_cfg["head"]
    head_kwargs = dict(head_cfg.get("kwargs") or {})
    with_vit = model_variant(model_cfg) == SFMVIT
    backbone = build_backbone(backbone_cfg, with_vit=with_vit)
    channels = tuple(backbone.out_channels)
    check_head_width(head_kwargs, channels)
    if "vit_channels" in _HEAD_PROVIDED.get(head_cfg["type"], ()):
        head_kwargs["vit_channels"] = channels[2] if with_vit else None
    neck = NECKS[neck_cfg["type"]](**(neck_cfg.get("kwargs") or {}))
    head = HeadWrapper(HEADS[head_cfg["type"]](**head_kwargs))
    if getattr(neck, "multi_class", False) and neck.num_classes != head.num_classes:
        raise ModelConfigError(
            "model.head.kwargs.num_classes",
            f"the head predicts {head.num_classes} classes but model.neck.kwargs.num_classes is {neck.num_classes}",
        )
    criterion = LOSSES[loss_cfg["type"]](**(loss_cfg.get("kwargs") or {}))
    subbackbone = backbone_cfg.get("subbackbone") or {}
    model = AVAModel(
        backbone,
        neck,
        head,
        criterion,
        freeze_bn=bool(model_cfg.get("freeze_bn", False)),
        vit_eval_mode=bool(subbackbone.get("eval_mode", False)),
    )
    logger.info(
        "model: %s backbone %s, %s neck, %s head (%d classes), %s loss; %d parameters (%d trainable)",
        backbone_cfg["arch"], channels, neck_cfg["type"], head_cfg["type"], model.num_classes, loss_cfg["type"],
        sum(p.numel() for p in model.parameters()),
        sum(p.numel() for p in model.parameters() if p.requires_grad),
    )
    return model
