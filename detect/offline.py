"""Network-free ultralytics setup: settings and config inside the project, no downloads, no telemetry."""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path
from types import ModuleType

LOGGER = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
# Read by ultralytics once, at its import (ENVIRONMENT.md §2): setting them later has no effect.
_ENV_DEFAULTS = {
    "YOLO_OFFLINE": "1",  # no DNS probes by utils.is_online()
    "YOLO_AUTOINSTALL": "0",  # never pip-install a missing requirement
    "YOLO_VERBOSE": "0",  # ultralytics' own logger quiet; our modules log what matters
}
# Integrations that could phone home or write outside the project.
_DISABLED_INTEGRATIONS = ("clearml", "comet", "dvc", "mlflow", "raytune", "tensorboard", "wandb")

_prepared: dict[str, ModuleType] = {}


def prepare_ultralytics(project_root: str | Path | None = None) -> ModuleType:
    """Import ultralytics configured to stay offline, with its settings and runs inside the project.

    Sets (with ``setdefault``, so a user's own values win) ``YOLO_CONFIG_DIR=<root>/.ultralytics``,
    ``YOLO_OFFLINE=1``, ``YOLO_AUTOINSTALL=0``, ``YOLO_VERBOSE=0``; imports torch before ultralytics
    (ultralytics would otherwise pin ``OMP_NUM_THREADS=1`` before torch sizes its thread pool); places
    a local ``Arial.ttf`` in the settings folder (the dataset check downloads that font otherwise, even
    with ``plots=False``); turns off settings sync and the logging integrations. Idempotent.

    Args:
        project_root: folder holding ``.ultralytics/`` (settings, and ``datasets/`` for relative
            dataset paths), ``runs/`` and ``weights/``; defaults to this repository (all git-ignored).

    Returns:
        The imported ``ultralytics`` package (``ultralytics.YOLO`` is the model class).
    """
    root = Path(project_root).resolve() if project_root is not None else PROJECT_ROOT
    if str(root) in _prepared:
        return _prepared[str(root)]
    already_imported = "ultralytics" in sys.modules
    if already_imported and "YOLO_CONFIG_DIR" not in os.environ:
        LOGGER.warning("ultralytics was imported before prepare_ultralytics(); its config folder and "
                       "offline flag were fixed at that import and may allow network access")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(root / ".ultralytics"))
    for key, value in _ENV_DEFAULTS.items():
        os.environ.setdefault(key, value)
    import torch  # noqa: F401  (before ultralytics, see the docstring)
    import ultralytics
    from ultralytics.utils import SETTINGS as settings
    from ultralytics.utils import USER_CONFIG_DIR

    _place_font(Path(USER_CONFIG_DIR))
    _undo_pil_patch()
    wanted = {"sync": False, **{name: False for name in _DISABLED_INTEGRATIONS},
              # Not <root>/datasets: that is this project's Python package.
              "datasets_dir": str(root / ".ultralytics" / "datasets"), "weights_dir": str(root / "weights"),
              "runs_dir": str(root / "runs")}
    # settings.update rewrites settings.json; skip it when nothing changes (many calls per test session).
    if any(settings.get(key) != value for key, value in wanted.items()):
        settings.update(wanted)
    _prepared[str(root)] = ultralytics
    return ultralytics


def _undo_pil_patch() -> None:
    """Give ``PIL.Image.open`` back its own behaviour after importing ultralytics.

    ultralytics replaces ``Image.open`` process-wide with a wrapper that, on an unidentified image,
    tries to install and import ``pi_heif`` (a network fetch with autoinstall on, a ModuleNotFoundError
    with it off). In a process that also reads frames (data checks, the dataset, the video demo) a
    corrupt PNG must raise PIL's own UnidentifiedImageError. HEIF input is not used here.
    """
    from PIL import Image
    from ultralytics.utils import patches

    original = getattr(patches, "_image_open", None)
    if original is not None and Image.open is not original:
        Image.open = original


def _place_font(config_dir: Path) -> None:
    """Copy matplotlib's DejaVuSans as ``Arial.ttf`` (any TTF satisfies ultralytics' font check)."""
    target = config_dir / "Arial.ttf"
    if target.exists():
        return
    import matplotlib

    source = Path(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans.ttf")
    config_dir.mkdir(parents=True, exist_ok=True)
    # Copy to a temp name then rename, so a concurrent process never sees half a font.
    partial = config_dir / f".Arial.ttf.{os.getpid()}.tmp"
    shutil.copyfile(source, partial)
    os.replace(partial, target)


def resolve_device(device: str = "auto") -> str:
    """``'auto'`` -> ``'0'`` (first CUDA GPU) when CUDA is available, else ``'cpu'``; other values pass through."""
    if device != "auto":
        return device
    import torch

    return "0" if torch.cuda.is_available() else "cpu"
