"""The run config: its schema (the one place for its keys and defaults), YAML reading and checks.

A bottom layer beside ``formats``: no torch, importable by ``models``, ``datasets``, ``engine`` and
everything above them. ``models`` builds from the typed sections (``ModelConfig``, ``LossConfig``);
``engine.plan`` builds a whole file's components once, which checks them.
"""
from __future__ import annotations

from config.builders import BUILDER_VALUE_ERRORS, check_kwargs, construct, lookup
from config.errors import ConfigError
from config.load import apply_overrides, from_dict, load_config, section, to_dict
from config.schema import (
    AugmentationConfig,
    BackboneConfig,
    Config,
    CudnnConfig,
    EvalMapConfig,
    HeadConfig,
    InitCheckpointConfig,
    LossConfig,
    ModelConfig,
    NeckConfig,
    OptimizerConfig,
    PretrainConfig,
    SchedulerConfig,
    SubbackboneConfig,
    TrainConfig,
    TransformConfig,
    ValConfig,
    Variant,
    VitCacheConfig,
)
from config.yaml_loader import ConfigLoader, parse_yaml, read_yaml

__all__ = [
    "BUILDER_VALUE_ERRORS", "AugmentationConfig", "BackboneConfig", "Config", "ConfigError", "ConfigLoader",
    "CudnnConfig", "EvalMapConfig", "HeadConfig", "InitCheckpointConfig", "LossConfig", "ModelConfig", "NeckConfig",
    "OptimizerConfig", "PretrainConfig", "SchedulerConfig", "SubbackboneConfig", "TrainConfig",
    "TransformConfig", "ValConfig", "Variant", "VitCacheConfig", "apply_overrides", "check_kwargs", "construct",
    "from_dict", "load_config", "lookup", "parse_yaml", "read_yaml", "section", "to_dict",
]
