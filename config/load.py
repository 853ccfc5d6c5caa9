"""Load, override and validate YAML run configs into the frozen dataclasses of ``config.schema``.

Usage (``main.py``): ``cfg = load_config(path, overrides)``, then ``engine.plan.make_plan(cfg)``
builds (and so checks) every component it names before any process is spawned or weight loaded;
``to_dict(cfg)`` gives the plain nested mapping written to ``opts.json``.

Relative paths in a config resolve against the current working directory, as in the original
(which opened them as given): run ``main.py`` from the dataset root, or give absolute paths.
This module imports no torch.
"""
from __future__ import annotations

import copy
import dataclasses
import re
import types
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, Union

import yaml

from common.errors import close_match_hint
from config.errors import ConfigError
from config.schema import Config, TrainConfig, ValConfig
from config.yaml_loader import parse_yaml, read_yaml

__all__ = ["apply_overrides", "from_dict", "load_config", "section", "to_dict"]

_S = TypeVar("_S")
_NONE = type(None)


def load_config(path: str | Path, overrides: Iterable[str] = ()) -> Config:
    """Read a YAML config, apply command-line overrides, and build the validated ``Config``.

    Args:
        path: the YAML file.
        overrides: ``"dotted.key=value"`` strings (values parsed as YAML), applied in order.

    Returns:
        The frozen config; ``cfg.config_file`` remembers ``path`` for later error messages.

    Raises:
        ConfigError: missing file, invalid YAML, unknown/missing key, wrong type, inconsistent values.
    """
    path = Path(path)
    raw = apply_overrides(read_yaml(path), overrides, str(path))
    return from_dict(raw, str(path))


# ----------------------------------------------------------------------------------------------
# Walking the tree into dataclasses
# ----------------------------------------------------------------------------------------------
def _join(key: str, name: str) -> str:
    return f"{key}.{name}" if key else name


def _describe(value: object) -> str:
    text = repr(value)
    return f"{type(value).__name__} {text if len(text) <= 40 else text[:37] + '...'}"


def _yaml_fields(cls: type) -> list[dataclasses.Field]:
    return [f for f in dataclasses.fields(cls) if f.metadata.get("yaml", True)]


def _type_name(tp: object) -> str:
    names = {bool: "a boolean (true/false)", int: "an integer", float: "a number", str: "a string"}
    if tp in names:
        return names[tp]
    if dataclasses.is_dataclass(tp):
        return "a mapping"
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin in (tuple, list):
        return "a list"
    if origin is dict:
        return "a mapping"
    if origin in (Union, types.UnionType):
        return " or ".join(_type_name(a) for a in typing.get_args(tp) if a is not _NONE)
    return str(tp)


def _build(cls: type, raw: object, key: str, config_file: str) -> Any:
    """Build dataclass ``cls`` from the YAML mapping ``raw`` found at dotted ``key``."""
    if not isinstance(raw, dict):
        raise ConfigError(config_file, key or "<top>", f"expected a mapping, found {_describe(raw)}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in _yaml_fields(cls)}
    for name in raw:
        if not isinstance(name, str) or name not in fields:
            raise ConfigError(config_file, _join(key, str(name)), "unknown key" + (
                close_match_hint(str(name), fields) or f"; allowed keys here: {', '.join(fields)}"))
    values = {}
    for name, fld in fields.items():
        if name in raw:
            values[name] = _convert(hints[name], raw[name], _join(key, name), config_file)
        elif fld.default is dataclasses.MISSING and fld.default_factory is dataclasses.MISSING:
            raise ConfigError(config_file, _join(key, name),
                              f"missing required key (expected {_type_name(hints[name])})")
    return cls(**values)


def _convert(tp: object, value: object, key: str, config_file: str) -> Any:
    """Check ``value`` against type ``tp`` and convert it (lists -> tuples, mappings -> dataclasses)."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value, key, config_file)
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and _NONE in args:
            return None
        options = [a for a in args if a is not _NONE]
        if len(options) > 1:  # ``Kwargs | list[Kwargs]``: the YAML shape picks the branch
            wanted = list if isinstance(value, list) else dict
            options = [a for a in options if typing.get_origin(a) is wanted] or options
        return _convert(options[0], value, key, config_file)
    if origin is Literal:
        if value not in typing.get_args(tp) or isinstance(value, bool):
            raise ConfigError(config_file, key, f"expected {_type_name(tp)}, found {_describe(value)}")
        return value
    if origin in (tuple, list):
        if not isinstance(value, list):
            raise ConfigError(config_file, key, f"expected a list, found {_describe(value)}")
        item_tp = typing.get_args(tp)[0]
        items = [_convert(item_tp, item, f"{key}[{i}]", config_file) for i, item in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if value is None:  # an empty ``kwargs:`` line means no keyword arguments
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise ConfigError(config_file, key, f"expected a mapping with string keys, found {_describe(value)}")
        return copy.deepcopy(value)
    return _convert_scalar(tp, value, key, config_file)


def _convert_scalar(tp: object, value: object, key: str, config_file: str) -> Any:
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if tp is str and isinstance(value, str):
        return value
    raise ConfigError(config_file, key, f"expected {_type_name(tp)}, found {_describe(value)}")


def from_dict(raw: Mapping, config_file: str = "<dict>") -> Config:
    """Build and cross-check a ``Config`` from a parsed YAML mapping.

    Args:
        raw: the mapping (as ``config.read_yaml`` returns it).
        config_file: name used in error messages.

    Raises:
        ConfigError: as ``load_config``.
    """
    cfg = dataclasses.replace(_build(Config, dict(raw), "", config_file), config_file=config_file)
    _check_consistency(cfg)
    return cfg


def section(cls: type[_S], raw: Mapping, key: str, config_file: str = "<dict>") -> _S:
    """Build one typed section (``ModelConfig``, ``BackboneConfig``, ...) from its plain mapping.

    For code that holds a section as plain dicts (tests, benchmarks): the keys, types and defaults
    are those of the whole-file loader; the cross-section rules of ``from_dict`` are not applied.

    Args:
        cls: the section's dataclass.
        raw: its mapping.
        key: its dotted YAML path (``model``, ``model.backbone``), for error messages.
        config_file: name used in error messages.

    Raises:
        ConfigError: unknown or missing key, wrong type.
    """
    return _build(cls, dict(raw), key, config_file)


def _require(ok: bool, cfg: Config, key: str, problem: str) -> None:
    if not ok:
        raise ConfigError(cfg.config_file, key, problem)


def _check_consistency(cfg: Config) -> None:
    """Rules between the schema's own keys and bounds on them (types are already checked).

    Only keys that feed no builder: the run's counts and frequencies, the ``cap_min``/``cap_max``
    pair, which sections must be present, and where a list of kwargs (test-time views) may stand.
    A value a builder consumes (a transform's, the model's, the optimizer's or the scheduler's) is
    judged by that builder when ``engine.plan.make_plan`` builds it, so an option is its schema
    entry plus its builder, and no rule here.
    """
    _require(cfg.print_freq >= 1, cfg, "print_freq", f"must be >= 1, found {cfg.print_freq}")
    _require((cfg.cap_min is None) == (cfg.cap_max is None), cfg, "cap_min" if cfg.cap_min is None else "cap_max",
             "cap_min and cap_max go together: give both or neither")
    if cfg.cap_min is not None and cfg.cap_max is not None:
        _require(1 <= cfg.cap_min <= cfg.cap_max, cfg, "cap_min",
                 f"need 1 <= cap_min <= cap_max, found {cfg.cap_min} and {cfg.cap_max}")
        spec = cfg.val.eval_mAP
        # The sweep is range(cap_min, cap_max), as the original's: empty when the two are equal.
        _require(cfg.cap_min < cfg.cap_max or spec is None or spec.include_cap_max, cfg, "cap_max",
                 f"the capacity sweep range(cap_min, cap_max) leaves cap_max out and is empty for cap_min = "
                 f"cap_max = {cfg.cap_max}; raise cap_max or set val.eval_mAP.include_cap_max: true")
    _require(cfg.evaluate or cfg.train is not None, cfg, "train", "missing required key (needed unless evaluate: True)")
    _check_split(cfg, "val", cfg.val, multi_view=True)
    if cfg.train is not None:
        _check_split(cfg, "train", cfg.train, multi_view=False)
        for name in ("n_epochs", "val_freq", "save_freq", "accumulate"):
            value = getattr(cfg.train, name)
            _require(value >= 1, cfg, f"train.{name}", f"must be >= 1, found {value}")
        virtual = cfg.train.virtual_world_size
        _require(virtual is None or virtual >= 1, cfg, "train.virtual_world_size", f"must be >= 1, found {virtual}")


def _check_split(cfg: Config, split: str, section: TrainConfig | ValConfig, multi_view: bool) -> None:
    _require(section.batch_size >= 1, cfg, f"{split}.batch_size", f"must be >= 1, found {section.batch_size}")
    _require(section.workers >= 0, cfg, f"{split}.workers", f"must be >= 0, found {section.workers}")
    aug = section.augmentation
    for index, transform in enumerate(aug.spatial):
        if isinstance(transform.kwargs, list):
            key = f"{split}.augmentation.spatial[{index}].kwargs"
            _require(multi_view, cfg, key, "a list of kwargs (test-time views) is only allowed under val")
            _require(len(transform.kwargs) > 0, cfg, key, "an empty list gives no view")
    _require(not isinstance(aug.temporal.kwargs, list), cfg, f"{split}.augmentation.temporal.kwargs",
             "expected a mapping (only spatial transforms of val may list several views)")


# ----------------------------------------------------------------------------------------------
# Command-line overrides
# ----------------------------------------------------------------------------------------------
_SEGMENT = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _split_key(dotted: str) -> list[str | int]:
    segments: list[str | int] = []
    for part in dotted.split("."):
        pieces = _SEGMENT.findall(part)
        if not part or "".join(name or f"[{idx}]" for name, idx in pieces) != part:
            raise ValueError(dotted)
        for name, idx in pieces:
            segments.append(int(name) if name.isdigit() else name if name else int(idx))
    return segments


def _child_type(tp: object, node: object, segment: str | int, shown: str, where: str) -> object:
    """Schema type of ``node[segment]`` below a node of type ``tp``; raises on unknown names."""
    if typing.get_origin(tp) in (Union, types.UnionType):
        options = [a for a in typing.get_args(tp) if a is not _NONE]
        if len(options) > 1:
            wanted = list if isinstance(node, list) else dict
            options = [a for a in options if typing.get_origin(a) is wanted] or options
        tp = options[0]
    if dataclasses.is_dataclass(tp):
        names = [f.name for f in _yaml_fields(tp)]
        if segment not in names:
            hint = close_match_hint(str(segment), names) or f"; allowed keys here: {', '.join(names)}"
            raise ConfigError(where, shown, f"unknown key{hint}")
        return typing.get_type_hints(tp)[segment]
    origin = typing.get_origin(tp)
    if origin in (tuple, list):
        if not isinstance(segment, int):
            raise ConfigError(where, shown, "this is a list: use an index, e.g. spatial[0]")
        return typing.get_args(tp)[0]
    if origin is dict or tp is Any:
        return Any  # inside a free kwargs block: checked later against the builder's signature
    raise ConfigError(where, shown, "cannot set a key below a plain value")


def apply_overrides(raw: Mapping, overrides: Iterable[str], config_file: str) -> dict:
    """Return a copy of the parsed YAML with ``"dotted.key=value"`` overrides applied.

    Keys follow the schema (``train.batch_size``, ``val.augmentation.spatial[0].kwargs.resize``);
    inside ``kwargs`` blocks any name is accepted here and checked by the builder it feeds
    (``engine.plan.make_plan``).
    Missing intermediate sections are created. Values are parsed as the config file is
    (``config.parse_yaml``: ``2`` -> int, ``1e-4`` -> float, ``[112, 112]`` -> list, ``true`` -> bool,
    ``null`` -> None).

    Raises:
        ConfigError: malformed override, unknown key (with a close match), index out of range.
    """
    result = copy.deepcopy(dict(raw))
    for item in overrides:
        dotted, sep, text = item.partition("=")
        dotted = dotted.strip()
        try:
            segments = _split_key(dotted) if sep and dotted else []
        except ValueError:
            segments = []
        if not segments:
            raise ConfigError(config_file, f"--set {item}",
                              "expected KEY=VALUE with a dotted key, e.g. train.batch_size=2")
        try:
            value = parse_yaml(text)
        except yaml.YAMLError as error:
            raise ConfigError(config_file, f"--set {dotted}", f"value is not valid YAML: {error}") from error
        _set_path(result, segments, value, dotted, config_file)
    return result


def _set_path(root: dict, segments: list[str | int], value: object, dotted: str, config_file: str) -> None:
    node: Any = root
    tp: object = Config
    shown = ""
    for depth, segment in enumerate(segments):
        shown = f"{shown}[{segment}]" if isinstance(segment, int) else _join(shown, segment)
        tp = _child_type(tp, node, segment, f"{shown} (in --set {dotted})", config_file)
        last = depth == len(segments) - 1
        if isinstance(node, list):
            if not isinstance(segment, int) or not 0 <= segment < len(node):
                raise ConfigError(config_file, shown, f"index out of range: the list has {len(node)} entries")
            if last:
                node[segment] = value
            else:
                node = node[segment]
            continue
        if not isinstance(node, dict):
            raise ConfigError(config_file, shown, f"cannot set a key below {_describe(node)}")
        if last:
            node[segment] = value
        else:
            if node.get(segment) is None:
                node[segment] = {}
            node = node[segment]


# ----------------------------------------------------------------------------------------------
# Back to plain dicts
# ----------------------------------------------------------------------------------------------
def to_dict(cfg: object) -> Any:
    """Plain nested dicts/lists with the YAML's key names (``opts.json``, ``build_model``).

    Optional sections and keys whose value is None are left out (so ``'pretrain' in d`` means
    "configured"); defaults of the other optional keys are written out. ``from_dict(to_dict(cfg))``
    gives ``cfg`` back.
    """
    if dataclasses.is_dataclass(cfg) and not isinstance(cfg, type):
        return {f.name: to_dict(getattr(cfg, f.name)) for f in _yaml_fields(type(cfg))
                if getattr(cfg, f.name) is not None}
    if isinstance(cfg, (list, tuple)):
        return [to_dict(item) for item in cfg]
    if isinstance(cfg, dict):
        return {key: to_dict(value) for key, value in cfg.items()}
    return copy.deepcopy(cfg)
