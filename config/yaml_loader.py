"""The one YAML reader of config files: PyYAML's safe loader with unique keys and YAML 1.2 floats.

Every place that reads a config YAML (``config.load``, the benchmarks, the tools) uses ``read_yaml``
or ``parse_yaml``, so ``lr: 1e-4`` means the same number everywhere.
"""
from __future__ import annotations

import re
from pathlib import Path

import yaml

from config.errors import ConfigError


class ConfigLoader(yaml.SafeLoader):
    """``yaml.SafeLoader`` that rejects a repeated key and reads ``1e-4`` as a float.

    Plain PyYAML keeps the last of two equal keys, and its YAML 1.1 float rule needs a dot and a
    signed exponent, so ``1e-4``, ``1.0e4``, ``-3e2`` and ``-.5`` come back as strings. Here they
    are floats, as in YAML 1.2; text such as ``1e4x`` stays a string.
    """


def _construct_unique_mapping(loader: ConfigLoader, node: yaml.MappingNode, deep: bool = False) -> dict:
    seen: set = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


# add_constructor / add_implicit_resolver on the subclass copy the tables, so yaml.SafeLoader
# itself is untouched. The resolver is appended: PyYAML's own int and float rules are tried
# first, and this one only takes the exponent and signed-dot forms they leave as strings (the
# float constructor then parses them with float()).
ConfigLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_unique_mapping)
ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?[0-9][0-9_]*(?:\.[0-9_]*)?[eE][-+]?[0-9]+
                    |[-+]?\.[0-9][0-9_]*(?:[eE][-+]?[0-9]+)?)$""", re.X),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> object:
    """Parse YAML text with ``ConfigLoader`` (raises ``yaml.YAMLError``)."""
    return yaml.load(text, Loader=ConfigLoader)  # noqa: S506 (a SafeLoader subclass)


def read_yaml(path: str | Path) -> dict:
    """Read a config file: a mapping at the top level (an empty file is ``{}``).

    Raises:
        ConfigError: naming the file (and line): missing, not UTF-8, invalid YAML, a repeated key,
            or not a mapping at the top level.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "", "config file not found")
    try:
        raw = parse_yaml(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as error:
        raise ConfigError(str(path), "", f"not UTF-8 text ({error.reason} at byte {error.start}); a YAML config "
                          "must be UTF-8") from None
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "YAML"
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(str(path), where, f"invalid YAML: {problem}") from error
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "", f"expected a mapping at the top level, found {type(raw).__name__}")
    return raw
