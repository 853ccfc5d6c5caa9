"""Training checkpoints in the original layout, written atomically, with RNG state for exact resume."""
from __future__ import annotations

import logging
import os
import random
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from common.atomic import atomic_open

logger = logging.getLogger(__name__)

# ``ckpt_{epoch}.pth.tar``, the original's name; atomic_open's temporaries start with a dot.
_CHECKPOINT_NAME = re.compile(r"^ckpt_(\d+)\.pth\.tar$")


def checkpoint_path(result_path: str | Path, epoch: int) -> Path:
    """``result_path/ckpt_{epoch}.pth.tar``."""
    return Path(result_path) / f"ckpt_{epoch}.pth.tar"


def _is_wrapped(model: nn.Module) -> bool:
    return isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel))


def prefixed_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's state_dict with the ``module.`` prefix of DDP, on CPU.

    A DDP/DataParallel model already yields ``module.`` keys; a plain model (single process) gets
    the prefix added, so checkpoints look the same whatever the number of processes and load into
    the original code.
    """
    state = model.state_dict()
    prefix = "" if _is_wrapped(model) else "module."
    return {prefix + key: value.detach().cpu() for key, value in state.items()}


def capture_rng() -> dict[str, Any]:
    """The states of Python's, NumPy's and torch's (CPU, and CUDA when present) random generators.

    Stored with plain types and tensors only, so that ``torch.load(weights_only=True)`` reads them.
    """
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    state: dict[str, Any] = {
        "python": random.getstate(),
        "numpy": {"kind": str(kind), "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "torch": torch.get_rng_state(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: Mapping[str, Any]) -> None:
    """Put back the generator states saved by ``capture_rng`` (entries absent are left alone).

    A CUDA state is restored only when CUDA is available here (a checkpoint written on GPUs can
    resume on CPU, with CUDA's streams then irrelevant).
    """
    if "python" in state:
        version, internal, gauss = state["python"]
        random.setstate((version, tuple(internal), gauss))
    if "numpy" in state:
        saved = state["numpy"]
        keys = np.asarray(saved["keys"].numpy() if torch.is_tensor(saved["keys"]) else saved["keys"], dtype=np.uint32)
        np.random.set_state((saved["kind"], keys, saved["pos"], saved["has_gauss"], saved["cached_gaussian"]))
    if "torch" in state:
        torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(path: str | Path, epoch: int, model: nn.Module, optimizer: torch.optim.Optimizer | None,
                    scheduler: Any | None, extra: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically: readers see the old file or the complete new one.

    Layout: the original's ``{'epoch', 'state_dict' (keys with 'module.'), 'optimizer',
    'scheduler'}``, plus the additive ``'rng'`` (see ``capture_rng``) and ``'extra'``.

    Args:
        path: destination (normally ``checkpoint_path(result_path, epoch)``).
        epoch: the epoch just finished (1-based, as the original).
        model: the model, DDP-wrapped or not.
        optimizer: its ``state_dict()`` is stored; None stores ``{}`` (as in released eval files).
        scheduler: an object with ``state_dict()`` (``engine.scheduler``); None stores ``{}``.
        extra: any further picklable entries (e.g. the global iteration); default ``{}``.

    Returns:
        The path written.
    """
    path = Path(path)
    states = {
        "epoch": int(epoch),
        "state_dict": prefixed_state_dict(model),
        "optimizer": optimizer.state_dict() if optimizer is not None else {},
        "scheduler": scheduler.state_dict() if scheduler is not None else {},
        "rng": capture_rng(),
        "extra": dict(extra or {}),
    }
    with atomic_open(path, "wb") as handle:
        torch.save(states, handle)
    logger.info("checkpoint saved to %s", path)
    return path


def list_checkpoints(result_path: str | Path) -> list[tuple[int, Path]]:
    """The ``ckpt_{epoch}.pth.tar`` files in ``result_path`` as ``(epoch, path)``, latest first.

    Temporary files of an interrupted save (``.ckpt_*.tmp``) and other names are ignored.
    """
    folder = Path(result_path)
    if not folder.is_dir():
        return []
    found = [(int(match.group(1)), entry) for entry in folder.iterdir()
             if (match := _CHECKPOINT_NAME.match(entry.name)) and entry.is_file()]
    return sorted(found, key=lambda item: item[0], reverse=True)


def find_latest_checkpoint(result_path: str | Path) -> Path | None:
    """The ``ckpt_{epoch}.pth.tar`` in ``result_path`` with the largest epoch, or None.

    Temporary files of an interrupted save (``.ckpt_*.tmp``) and other names are ignored.
    """
    found = list_checkpoints(result_path)
    return found[0][1] if found else None


def load_latest_readable_checkpoint(result_path: str | Path) -> tuple[Path, dict[str, Any]] | None:
    """``auto_resume``: the latest checkpoint that loads, falling back past unreadable ones (said so).

    Returns:
        ``(path, checkpoint)``, or None when the folder holds no checkpoint.

    Raises:
        WeightsError: every checkpoint there is unreadable (the latest one's problem quoted).
    """
    from models.weights import WeightsError

    found = list_checkpoints(result_path)
    first_error: WeightsError | None = None
    for _, path in found:
        try:
            return path, load_checkpoint(path)
        except WeightsError as error:
            first_error = first_error or error
            logger.warning("auto_resume: %s; falling back to the previous checkpoint", error)
    if first_error is not None:
        raise WeightsError(f"auto_resume: none of the {len(found)} checkpoints in {result_path} is readable; "
                           f"the latest: {first_error}")
    return None


def resolve_resume_path(resume_path: str | Path, result_path: str | Path,
                        base_dir: str | Path | None = None) -> Path:
    """Find the resume checkpoint the way the original does.

    ``resume_path`` is used if it is a file; otherwise ``os.path.join(result_path, resume_path)``
    (which is ``resume_path`` again when it is absolute).

    Args:
        resume_path: the config's ``resume_path``.
        result_path: the config's ``result_path``.
        base_dir: folder relative paths resolve against; None = the current working directory.

    Returns:
        The existing file (relative paths stay relative when ``base_dir`` is None).

    Raises:
        FileNotFoundError: neither candidate is a file; the message names both.
    """
    candidates = [Path(resume_path), Path(os.path.join(result_path, resume_path))]
    if base_dir is not None:
        candidates = [c if c.is_absolute() else Path(base_dir) / c for c in candidates]
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = " and ".join(dict.fromkeys(str(c) for c in candidates))
    raise FileNotFoundError(f"checkpoint not found: tried {tried}")


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Read a checkpoint file (ours or the original's) through the project's one weight loader.

    Pickled checkpoints can execute code when loaded: only open files you trust (the loader uses
    ``weights_only=True`` where it can).

    Returns:
        The checkpoint mapping (``epoch``, ``state_dict``, ``optimizer``, ``scheduler``, and ``rng``
        / ``extra`` when written by ``save_checkpoint``), tensors on CPU.
    """
    # Imported here so that saving and the path helpers do not pull in the model package.
    from models.weights import load_model_checkpoint

    return load_model_checkpoint(path)
