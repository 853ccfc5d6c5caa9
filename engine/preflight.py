"""The data preflight: what a run will read exists and parses, checked before any worker starts.

Files and folders named by the config exist, weight files are not empty, there are weights to
evaluate, the annotation pkls, label map, ground truth and exclusions parse, and every rank gets a
training batch; a problem is a ``ConfigError`` or ``FormatError`` in one line, not a traceback from
every rank minutes later. The config's own values are checked by building them
(``engine.plan.make_plan``); frames are decoded by ``tools/check_data.py``.
"""
from __future__ import annotations

import logging
from pathlib import Path

from config import Config, ConfigError, TrainConfig, ValConfig
from engine.checkpoint import list_checkpoints, resolve_resume_path

logger = logging.getLogger(__name__)


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


def check_data_files(cfg: Config, world_size: int | None = None) -> None:
    """Parse the annotation pkls, the label map, the ground truth and the exclusions.

    Args:
        cfg: the config.
        world_size: processes of the run, when known: training needs at least one full batch per rank.

    Raises:
        FormatError: naming the file (and row) that does not parse.
        ConfigError: ``train.batch_size`` leaves a rank without a single batch.
    """
    from formats.annotation_pkl import load_annotation_pkl
    from formats.eval_csv import read_exclusions, read_ground_truth_csv
    from formats.pbtxt import read_label_map

    pkls = [cfg.val.annotation_path]
    if not cfg.evaluate and cfg.train is not None:
        pkls.insert(0, cfg.train.annotation_path)
    for path in pkls:
        loaded = load_annotation_pkl(path)
        if world_size and not cfg.evaluate and cfg.train is not None and path == cfg.train.annotation_path:
            check_training_batches(cfg, len(loaded.elements), world_size)
    eval_map = cfg.val.eval_mAP
    if eval_map is not None:
        for name, read in (("labelmap", read_label_map), ("groundtruth", read_ground_truth_csv),
                           ("exclusions", read_exclusions)):
            path = getattr(eval_map, name)
            if path:
                read(path)


def check_training_batches(cfg: Config, train_elements: int, world_size: int) -> None:
    """Each rank gets ``floor(N / W)`` training elements and drops its last partial batch (docs/numerics.md §8).

    W is ``train.virtual_world_size`` when set (the ranks the processes play), else ``world_size``;
    an optimiser step takes ``train.accumulate`` batches of each rank.

    Raises:
        ConfigError: not one batch (or not one optimiser step) per epoch would remain.
    """
    train = cfg.train
    batch, ranks = train.batch_size, train.virtual_world_size or world_size
    batches = train_elements // ranks // batch
    if batches == 0:
        who = (f"per rank x {ranks} rank(s) (train.virtual_world_size)" if train.virtual_world_size
               else f"per process x {ranks} process(es)")
        raise ConfigError(cfg.config_file, "train.batch_size",
                          f"{batch} {who} needs at least {batch * ranks} "
                          f"training elements, but {train.annotation_path} holds {train_elements}; no batch "
                          "would run (lower train.batch_size or --nproc_per_node)")
    if batches < train.accumulate:
        raise ConfigError(cfg.config_file, "train.accumulate",
                          f"{train.accumulate} batches per optimiser step, but each of the {ranks} rank(s) gets "
                          f"{batches} batch(es) of {batch} from the {train_elements} training elements of "
                          f"{train.annotation_path}; no optimiser step would run")


def check_evaluation_weights(cfg: Config) -> None:
    """``evaluate: True`` must have weights to evaluate (a resume or pretrain checkpoint).

    Raises:
        ConfigError: neither is set and ``evaluate_random_weights`` is not True.
    """
    if not cfg.evaluate or cfg.resume_path or cfg.pretrain is not None:
        return
    if cfg.auto_resume and list_checkpoints(cfg.result_path):
        return
    if cfg.evaluate_random_weights:
        logger.warning("evaluate: True without resume_path or pretrain: evaluating randomly initialised weights")
        return
    raise ConfigError(cfg.config_file, "evaluate", "True, but no resume_path, pretrain or checkpoint is set, so the "
                      "scores would come from random weights; set resume_path (or pretrain), or "
                      "evaluate_random_weights: true if that is what you want")


def check_weight_files(cfg: Config) -> None:
    """Weight files that are empty (a copy or download cut short) are refused now, not in every worker.

    Raises:
        ConfigError: naming the key and the file.
    """
    backbone = cfg.model.backbone
    files = [("pretrain.path", cfg.pretrain.path if cfg.pretrain is not None else None),
             ("model.backbone.pretrain.path", backbone.pretrain.path if backbone.pretrain is not None else None),
             ("model.backbone.subbackbone.path", backbone.subbackbone.path if backbone.subbackbone is not None
              else None)]
    if cfg.resume_path and not cfg.auto_resume:
        try:
            files.append(("resume_path", str(resolve_resume_path(cfg.resume_path, cfg.result_path))))
        except FileNotFoundError as error:
            raise ConfigError(cfg.config_file, "resume_path", str(error)) from None
    for key, path in files:
        if path and Path(path).is_file() and Path(path).stat().st_size == 0:
            raise ConfigError(cfg.config_file, key, f"{path} is an empty file (0 bytes), not a checkpoint")


def data_preflight(cfg: Config, world_size: int | None = None) -> None:
    """All checks above, cheapest first (``world_size``: the run's processes, when the launcher knows it).

    Raises:
        ConfigError: a missing file or folder, an empty weight file, nothing to evaluate, too few
            training elements for one batch per rank; naming the key.
        FormatError: a file that does not parse.
    """
    check_paths(cfg)
    check_evaluation_weights(cfg)
    check_weight_files(cfg)
    check_data_files(cfg, world_size)
