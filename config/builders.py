"""Pick a builder by its config name, and call it with a ``kwargs:`` block checked against its signature.

The one name lookup (``lookup``), kwargs checker (``check_kwargs``) and builder call (``construct``) of
the project: every builder of a model part, transform or optimizer goes through them, so building a
component is its check (``engine.plan.make_plan`` builds each once, before any process starts). A
builder is only inspected and called here, never imported, so this module needs no torch.
"""
from __future__ import annotations

import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Any, TypeVar

from common.errors import close_match_hint
from config.errors import ConfigError

_B = TypeVar("_B")
_T = TypeVar("_T")
# What a builder raises for a value it rejects; anything else is a bug and keeps its traceback.
BUILDER_VALUE_ERRORS = (ValueError, TypeError, KeyError, IndexError)


def lookup(table: Mapping[str, _B], name: object, key: str, config_file: str = "", kind: str = "value") -> _B:
    """Pick a builder by its config name.

    Args:
        table: ``{name: builder}`` (e.g. ``models.heads.HEADS``).
        name: the configured value.
        key: dotted YAML path of the value, e.g. ``model.head.type``.
        config_file: the YAML file, for the message ("" when unknown).
        kind: what the name names, for the message (``unknown transform 'x'``).

    Returns:
        ``table[name]``.

    Raises:
        ConfigError: naming the key, the bad value, a close match and the choices.
    """
    if not isinstance(name, str) or name not in table:
        raise ConfigError(config_file, key, f"unknown {kind} {name!r}{close_match_hint(str(name), table)}; "
                                            f"choices: {', '.join(sorted(table))}")
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


def _check_type_against_default(default: object, value: object, key: str, config_file: str) -> None:
    """Catch numbers and booleans given as text, judged by the type of the builder's default."""
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ConfigError(config_file, key,
                              f"expected a boolean (true/false), found {type(value).__name__} {value!r}")
    elif isinstance(default, (int, float)) and isinstance(value, str):
        raise ConfigError(config_file, key, f"expected a number, found str {value!r}")


def check_kwargs(
    builder: Callable[..., Any],
    kwargs: Mapping[str, Any] | None,
    key: str,
    config_file: str = "",
    provided: Iterable[str] = (),
    check_required: bool = False,
) -> None:
    """Validate a config ``kwargs:`` mapping against a builder's signature, building nothing.

    Args:
        builder: the function (or class) the kwargs will be passed to.
        kwargs: the configured mapping (None = empty).
        key: dotted YAML path of the mapping, e.g. ``model.head.kwargs``.
        config_file: the YAML file, for the message ("" when unknown).
        provided: argument names the code fills in itself (the head's ``vit_channels``, an
            optimizer's ``params`` and ``lr``); the config may not set them.
        check_required: also require every argument without a default that is not ``provided``
            (only where the code passes nothing else; model builders receive extra arguments
            from the model assembly).

    Raises:
        ConfigError: for a non-mapping, an unknown or reserved name (naming ``key.<name>``, with a
            close match or the accepted names), a value whose type contradicts the argument's
            default, or a missing required name.
    """
    if kwargs is None:
        kwargs = {}
    if not isinstance(kwargs, Mapping):
        raise ConfigError(config_file, key, f"expected a mapping of argument names, got {type(kwargs).__name__}")
    found = _parameters(builder)
    if found is None:
        return
    names, defaults, required, open_ended = found
    provided = set(provided)
    accepted = [name for name in names if name not in provided]
    for name in kwargs:
        if name in provided:
            raise ConfigError(config_file, f"{key}.{name}", "is set by the code, not the config; remove it from kwargs")
        if not open_ended and name not in names:
            raise ConfigError(config_file, f"{key}.{name}", "unknown key" + close_match_hint(str(name), accepted)
                              + f"; accepted: {', '.join(accepted) or '(none)'}")
    for name, value in kwargs.items():
        _check_type_against_default(defaults.get(name), value, f"{key}.{name}", config_file)
    if check_required:
        for name in required:
            if name not in kwargs and name not in provided:
                raise ConfigError(config_file, f"{key}.{name}", "missing required key")


def construct(builder: Callable[..., _T], kwargs: Mapping[str, Any] | None, key: str,
              provided: Mapping[str, Any] | None = None, check_required: bool = True) -> _T:
    """Call ``builder(**kwargs, **provided)`` after checking ``kwargs`` against its signature.

    Args:
        builder: the function or class a config entry names.
        kwargs: the configured ``kwargs:`` mapping (None = empty).
        key: dotted YAML path of the mapping, e.g. ``model.head.kwargs``.
        provided: arguments the code fills in itself (the config may not set them).
        check_required: as ``check_kwargs`` (False for pass-through builders that get more later).

    Returns:
        What the builder returns.

    Raises:
        ConfigError: without a file name (the caller that knows it adds it): what ``check_kwargs``
            rejects, or a value the builder rejects, named ``key.<name>`` when the value's type
            contradicts the argument's default (``dropout: [0.3]``), else ``key``.
    """
    provided = dict(provided or {})
    check_kwargs(builder, kwargs, key, provided=provided, check_required=check_required)
    kwargs = dict(kwargs or {})
    try:
        return builder(**kwargs, **provided)
    except BUILDER_VALUE_ERRORS as error:
        suspects = _mistyped(kwargs, builder) if isinstance(error, TypeError) else []
        if suspects:
            name = suspects[0]
            raise ConfigError("", f"{key}.{name}", f"{kwargs[name]!r} is not a "
                              f"{type(_default(builder, name)).__name__} like its default "
                              f"({type(error).__name__}: {error})") from None
        raise ConfigError("", key, f"{_builder_name(builder)}: {error}") from None


def _builder_name(builder: Callable[..., Any]) -> str:
    # A ``functools.partial`` (the ViT sizes) has no name of its own: name the class it builds.
    return getattr(builder, "__name__", None) or _builder_name(getattr(builder, "func", type(builder)))


def _default(builder: Callable[..., Any], name: str) -> object:
    try:
        parameter = inspect.signature(builder).parameters.get(name)
    except (TypeError, ValueError):
        return None
    return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default


def _mistyped(kwargs: Mapping[str, Any], builder: Callable[..., Any]) -> list[str]:
    """The kwargs given a container where the builder's default is a number or a string."""
    suspects = []
    for name, value in kwargs.items():
        default = _default(builder, name)
        if isinstance(default, (int, float, str)) and not isinstance(default, bool) \
                and isinstance(value, (list, dict, tuple)):
            suspects.append(name)
    return suspects
