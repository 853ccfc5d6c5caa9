"""The run config: its schema (the one place for its keys and defaults), YAML reading and checks.

A bottom layer beside ``formats``: no torch, importable by ``models``, ``datasets``, ``engine`` and
everything above them. ``models`` builds from the typed sections (``ModelConfig``, ``LossConfig``);
``engine`` loads and checks whole files.
"""
from __future__ import annotations

from config.builders import check_kwargs, lookup
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
    VitCacheConfig,
)
from config.yaml_loader import ConfigLoader, parse_yaml, read_yaml

__all__ = [
    "AugmentationConfig", "BackboneConfig", "Config", "ConfigError", "ConfigLoader", "CudnnConfig",
    "EvalMapConfig", "HeadConfig", "InitCheckpointConfig", "LossConfig", "ModelConfig", "NeckConfig",
    "OptimizerConfig", "PretrainConfig", "SchedulerConfig", "SubbackboneConfig", "TrainConfig",
    "TransformConfig", "ValConfig", "VitCacheConfig", "apply_overrides", "check_kwargs", "from_dict",
    "load_config", "lookup", "parse_yaml", "read_yaml", "section", "to_dict",
]
