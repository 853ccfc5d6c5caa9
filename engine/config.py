"""Check that the files a config names exist, before any work starts.

The config itself (schema, YAML reading, overrides, validation) is the torch-free package
``config``; this engine module adds the checks that need the engine (the resume-checkpoint rule
of ``engine.checkpoint``).
"""
from __future__ import annotations

from pathlib import Path

from config import Config, ConfigError, TrainConfig, ValConfig
from engine.checkpoint import resolve_resume_path

__all__ = ["check_paths"]


def check_paths(cfg: Config, base_dir: str | Path | None = None) -> None:
    """Check that every file and folder the run will read exists, before any work starts.

    Checked: frames roots and annotation pkls (train only when training), the evaluator's label
    map, ground truth and exclusions (when given), the resume checkpoint (tried as given, then
    under ``result_path``, as the original), and the pretrained weight files.

    Args:
        cfg: a loaded config.
        base_dir: folder relative paths resolve against; None = the current working directory,
            as the original (which opened paths as given).

    Raises:
        ConfigError: naming the key and the resolved path that is missing.
    """
    base = Path(base_dir) if base_dir is not None else Path.cwd()
    wanted: list[tuple[str, str, bool]] = []  # (dotted key, path, is_dir)
    splits: list[tuple[str, TrainConfig | ValConfig]] = [("val", cfg.val)]
    if not cfg.evaluate and cfg.train is not None:
        splits.insert(0, ("train", cfg.train))
    for split, section in splits:
        wanted += [(f"{split}.root_path", section.root_path, True),
                   (f"{split}.annotation_path", section.annotation_path, False)]
    if cfg.val.eval_mAP is not None:
        for name in ("labelmap", "groundtruth", "exclusions"):
            value = getattr(cfg.val.eval_mAP, name)
            if value is not None:
                wanted.append((f"val.eval_mAP.{name}", value, False))
    backbone = cfg.model.backbone
    if backbone.pretrain is not None:
        wanted.append(("model.backbone.pretrain.path", backbone.pretrain.path, False))
    if backbone.subbackbone is not None and backbone.subbackbone.path is not None:
        wanted.append(("model.backbone.subbackbone.path", backbone.subbackbone.path, False))
    if cfg.pretrain is not None:
        wanted.append(("pretrain.path", cfg.pretrain.path, False))
    for key, value, is_dir in wanted:
        path = Path(value) if Path(value).is_absolute() else base / value
        if not (path.is_dir() if is_dir else path.is_file()):
            kind = "folder" if is_dir else "file"
            raise ConfigError(cfg.config_file, key, f"{kind} not found: {path} "
                              f"(relative paths resolve against the working directory {base})")
    if cfg.resume_path is not None:
        try:
            resolve_resume_path(cfg.resume_path, cfg.result_path, base)
        except FileNotFoundError as error:
            raise ConfigError(cfg.config_file, "resume_path", str(error)) from error
