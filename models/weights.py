"""The one place that reads weight files: pretrained SlowFast / ViT weights and full model checkpoints."""
from __future__ import annotations

import contextlib
import contextvars
import logging
import os
import pickle
import re
import zipfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

logger = logging.getLogger(__name__)

_SHOWN = 5  # keys quoted in an error message
_DDP_PREFIX = "module."


class WeightsError(ValueError):
    """A weight file that cannot be read, or does not fit the module it is loaded into."""


@dataclass(frozen=True)
class LoadReport:
    """What a non-strict load did.

    Attributes:
        loaded: number of module keys taken from the file.
        missing: module keys the file did not provide (they keep their initial values).
        unexpected: file keys the module does not have (ignored).
    """

    loaded: int
    missing: list[str]
    unexpected: list[str]


def _first(keys: list[str] | set[str]) -> str:
    ordered = list(keys) if isinstance(keys, list) else sorted(keys)
    shown = ", ".join(ordered[:_SHOWN])
    more = f" ... (+{len(ordered) - _SHOWN} more)" if len(ordered) > _SHOWN else ""
    return f"[{shown}{more}]"


# Globals a foreign checkpoint may name and still load with ``weights_only=True``: numpy scalars,
# arrays and dtypes (the epoch or best mAP saved as np.float64, RNG states) and argparse.Namespace
# (the ``args`` of older training scripts). Rebuilding any of them only sets data: no code named by
# the file runs. Entries are also accepted under numpy 1.x's module names (``numpy.core``).
def _safe_globals() -> list[object]:
    import argparse

    import numpy as np

    scalar = np._core.multiarray.scalar if hasattr(np, "_core") else np.core.multiarray.scalar
    reconstruct = np._core.multiarray._reconstruct if hasattr(np, "_core") else np.core.multiarray._reconstruct
    dtype_classes = [getattr(np.dtypes, name) for name in dir(np.dtypes) if name.endswith("DType")]
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), reconstruct,
            (reconstruct, "numpy.core.multiarray._reconstruct"), np.ndarray, np.dtype, *dtype_classes,
            argparse.Namespace]


TRUST_HINT = "set trust_checkpoints: true in the config (or --set trust_checkpoints=true) if you trust it"
_trusted: contextvars.ContextVar[bool] = contextvars.ContextVar("trust_checkpoints", default=False)


@contextlib.contextmanager
def trusted_checkpoints(enabled: bool = True) -> Iterator[None]:
    """Within the block, weight files that need full unpickling are loaded that way (opt-in).

    The engine enters it with the config's ``trust_checkpoints``; outside it, such files are errors.
    """
    token = _trusted.set(bool(enabled))
    try:
        yield
    finally:
        _trusted.reset(token)


def load_weights_file(path: str | os.PathLike[str], trust: bool | None = None) -> object:
    """Read a torch-saved file onto the CPU without running code from it.

    Always loads with `weights_only=True` (tensors, containers, numbers, plus the numpy and
    argparse types of `_safe_globals`). A file naming any other global (a custom class, or a
    `__reduce__` that calls a function) is an error unless trust was given: `trust=True`, or the
    `trusted_checkpoints()` block the engine opens when the config says `trust_checkpoints: true`;
    only then is it fully unpickled, which executes code stored in the file. Zip-format files are
    memory-mapped, so a multi-GB checkpoint is not read into RAM twice.

    Args:
        path: the file.
        trust: allow full unpickling; None = the enclosing `trusted_checkpoints` setting.

    Returns:
        The saved object (usually a dict of tensors), tensors on the CPU.

    Raises:
        FileNotFoundError: if the file does not exist.
        WeightsError: not a readable torch file, an empty file, or one needing full unpickling
            without trust (the message names the global and the opt-in).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weight file not found: {path}")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: empty file (0 bytes), not a torch checkpoint")
    trust = _trusted.get() if trust is None else trust
    mmap = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        if "weights only load failed" not in str(exc).lower():
            raise WeightsError(f"{path}: not a readable torch file ({_first_line(exc)})") from None
        culprit = _unsafe_globals(path, str(exc))
        if not trust:
            raise WeightsError(f"{path}: not loaded: it holds {culprit}, and unpickling it could run code; "
                               f"{TRUST_HINT}") from None
        logger.warning("%s: holds %s; trust_checkpoints is on, so it is fully unpickled, which executes code "
                       "stored in the file", path, culprit)
    except Exception as exc:  # weights_only ran nothing from the file: any other failure means a bad file
        raise WeightsError(f"{path}: not a readable torch file ({type(exc).__name__}: {_first_line(exc)})") from None
    try:
        return torch.load(path, map_location="cpu", weights_only=False, mmap=mmap)
    except Exception as exc:  # anything the pickled code raises: report the file, keep the cause
        raise WeightsError(f"{path}: could not be unpickled ({type(exc).__name__}: {exc})") from exc


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


def _unsafe_globals(path: Path, error: str) -> str:
    """The globals outside the allowlist that the file names, for the error message."""
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # legacy (non-zip) files cannot be listed: take the first from torch's message
        names = re.findall(r"GLOBAL (\S+)", error)[:1]
    return ", ".join(names[:_SHOWN]) if names else "objects the weights-only loader does not admit"


def _as_state_dict(obj: object, source: str) -> dict[str, object]:
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{source}: expected a mapping of parameter names to tensors, got {type(obj).__name__}")
    return {str(key): value for key, value in obj.items()}


def _shape_mismatches(own: Mapping[str, torch.Tensor], incoming: Mapping[str, object], keys: list[str]) -> list[str]:
    """Describe the keys in `keys` whose incoming value is not a tensor of the module's shape."""
    problems = []
    for key in keys:
        value = incoming[key]
        if not isinstance(value, torch.Tensor):
            problems.append(f"{key}: file has {type(value).__name__}, not a tensor")
        elif value.shape != own[key].shape:
            problems.append(f"{key}: file {list(value.shape)} vs model {list(own[key].shape)}")
    return problems


def _zero_match_hint(state: Mapping[str, object]) -> str:
    nested = [key for key, value in state.items() if isinstance(value, Mapping)]
    if nested:
        return f"; the file nests mappings under {_first(nested)}: set state_dict_key"
    prefixes = {key.split(".", 1)[0] + "." for key in state if "." in key}
    if len(prefixes) == 1:
        return f"; every file key starts with {prefixes.pop()!r}: set delete_prefix/replace_prefix"
    return ""


def _entry(obj: object, key: str, path: str | os.PathLike[str], config_key: str) -> object:
    """``obj[key]``, or a WeightsError naming the config key and what the file has instead."""
    if not isinstance(obj, Mapping) or key not in obj:
        found = _first([str(k) for k in obj]) if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsError(f"{path}: no entry {key!r} ({config_key}); the file has {found}")
    return obj[key]


def _renamed(state: dict[str, object], delete_prefix: str | None, replace_prefix: str | None,
             replace_to: str) -> dict[str, object]:
    """The original's key edits: drop ``delete_prefix`` keys, then rename ``replace_prefix`` to ``replace_to``."""
    if delete_prefix:
        state = {key: value for key, value in state.items() if not key.startswith(delete_prefix)}
    if replace_prefix:
        state = {(replace_to + key[len(replace_prefix):] if key.startswith(replace_prefix) else key): value
                 for key, value in state.items()}
    return state


def _load_matching(module: nn.Module, own: Mapping[str, torch.Tensor], state: Mapping[str, object],
                   path: str | os.PathLike[str], target: str) -> LoadReport:
    """Load the file keys the module has (non-strict); error when none fits or one has another shape.

    Returns:
        What was loaded, missing and ignored.
    """
    matched = [key for key in own if key in state]
    if not matched:
        raise WeightsError(
            f"{path}: none of its {len(state)} keys matches {target} "
            f"(first file keys {_first(list(state))}, expected keys like {_first(list(own))})"
            + _zero_match_hint(state)
        )
    problems = _shape_mismatches(own, state, matched)
    if problems:
        raise WeightsError(f"{path}: {len(problems)} keys do not fit {target}: " + "; ".join(problems[:_SHOWN]))
    module.load_state_dict({key: state[key] for key in matched}, strict=False)
    return LoadReport(loaded=len(matched), missing=[key for key in own if key not in state],
                      unexpected=[key for key in state if key not in own])


def _log_report(report: LoadReport, source: str, total: int, into: str) -> None:
    if report.missing:
        logger.warning("%s: %d keys missing, left at their initial values: %s", source, len(report.missing),
                       ", ".join(report.missing))
    if report.unexpected:
        logger.info("%s: %d redundant keys ignored: %s", source, len(report.unexpected), ", ".join(report.unexpected))
    logger.info("%s: loaded %d of %d keys into %s", source, report.loaded, total, into)


def load_slowfast_pretrain(
    module: nn.Module,
    path: str | os.PathLike[str],
    state_dict_key: str | None = None,
    delete_prefix: str | None = None,
    replace_prefix: str | None = None,
    replace_to: str = "",
) -> LoadReport:
    """Load pretrained weights into the SlowFast module, non-strictly (`model.backbone.pretrain`).

    Original semantics (docs/numerics.md §12 (a)): optionally take `obj[state_dict_key]`; drop
    the keys starting with `delete_prefix`; rename keys starting with `replace_prefix` to
    `replace_to + rest`; then load what matches, keeping missing keys at their initial values and
    ignoring extra file keys. Unlike the original, a file of which no key matches is an error
    (quirk 11), as is a matching key with the wrong shape.

    Args:
        module: the SlowFast module (keys such as `fast_conv1.weight`, no prefix).
        path: the weight file.
        state_dict_key: entry of the loaded dict that holds the weights.
        delete_prefix: remove file keys with this prefix.
        replace_prefix: rename file keys with this prefix ...
        replace_to: ... to start with this instead.

    Returns:
        What was loaded, missing and ignored.

    Raises:
        FileNotFoundError: if the file does not exist.
        WeightsError: unreadable file, missing `state_dict_key`, no matching key, or shape mismatch.
    """
    obj = load_weights_file(path)
    if state_dict_key is not None:
        obj = _entry(obj, state_dict_key, path, "model.backbone.pretrain.state_dict_key")
    state = _renamed(_as_state_dict(obj, str(path)), delete_prefix, replace_prefix, replace_to)
    own = module.state_dict()
    report = _load_matching(module, own, state, path, f"the {type(module).__name__} module")
    _log_report(report, str(path), len(own), type(module).__name__)
    return report


def load_vit_checkpoint(vit: nn.Module, path: str | os.PathLike[str]) -> None:
    """Load a VideoMAE-v2 checkpoint into the ViT strictly (`model.backbone.subbackbone.path`).

    Original semantics (docs/numerics.md §12 (b)): unwrap the first of `'model'`, `'module'`
    present (one level), move `norm.weight`/`norm.bias` to `fc_norm.*` (the ViT pools with
    `fc_norm`; its `norm` is an Identity), then load strictly.

    Args:
        vit: the `VisionTransformer`.
        path: the checkpoint file.

    Raises:
        FileNotFoundError: if the file does not exist.
        WeightsError: unreadable file, no `norm.*` entries, or keys/shapes that differ from the ViT.
    """
    obj = load_weights_file(path)
    if isinstance(obj, Mapping):
        for wrapper in ("model", "module"):
            if wrapper in obj:
                obj = obj[wrapper]
                break
    state = _as_state_dict(obj, str(path))
    if getattr(vit, "fc_norm", None) is not None:
        absent = [key for key in ("norm.weight", "norm.bias") if key not in state]
        if absent:
            raise WeightsError(f"{path}: a VideoMAE-v2 checkpoint must hold norm.weight and norm.bias (loaded as "
                               f"fc_norm.*); missing {absent}; first file keys {_first(list(state))}")
        state["fc_norm.weight"] = state.pop("norm.weight")
        state["fc_norm.bias"] = state.pop("norm.bias")
    own = vit.state_dict()
    logger.info("%s: ViT keys missing from the file: %s; file keys ignored: %s", path,
                _first(sorted(set(own) - set(state))), _first(sorted(set(state) - set(own))))
    load_state_dict_strict(vit, state, str(path))
    logger.info("%s: loaded %d keys into the ViT", path, len(own))


def load_model_checkpoint(path: str | os.PathLike[str]) -> dict[str, object]:
    """Read a full training checkpoint (`{'epoch', 'state_dict', 'optimizer', 'scheduler'}`) onto the CPU.

    Args:
        path: the checkpoint file (e.g. `ckpt_12.pth.tar`, saved from GPU tensors or not).

    Returns:
        The checkpoint dict; `state_dict` keys as saved (usually with the DDP `module.` prefix).

    Raises:
        FileNotFoundError: if the file does not exist.
        WeightsError: unreadable file, or no `state_dict` mapping / integer `epoch` entry.
    """
    obj = load_weights_file(path)
    if not isinstance(obj, Mapping) or not isinstance(obj.get("state_dict"), Mapping):
        found = _first([str(key) for key in obj]) if isinstance(obj, Mapping) else type(obj).__name__
        raise WeightsError(f"{path}: not a model checkpoint: expected a dict with 'epoch', 'state_dict', "
                           f"'optimizer', 'scheduler'; found {found}")
    if isinstance(obj.get("epoch"), bool) or not isinstance(obj.get("epoch"), int):
        raise WeightsError(f"{path}: checkpoint entry 'epoch' must be an int, got {obj.get('epoch')!r}")
    return dict(obj)


def _align_ddp_prefix(state: dict[str, object], own_keys: list[str]) -> dict[str, object]:
    """Add or strip the DDP `module.` prefix so that the file's keys use the model's convention."""
    own_wrapped = bool(own_keys) and all(key.startswith(_DDP_PREFIX) for key in own_keys)
    file_wrapped = bool(state) and all(key.startswith(_DDP_PREFIX) for key in state)
    if file_wrapped and not own_wrapped:
        return {key[len(_DDP_PREFIX):]: value for key, value in state.items()}
    if own_wrapped and not file_wrapped:
        return {_DDP_PREFIX + key: value for key, value in state.items()}
    return state


def load_state_dict_strict(model: nn.Module, state_dict: Mapping[str, object], source: str) -> None:
    """Load every key of the model from `state_dict`, nothing more, nothing less.

    Keys may carry the DDP `module.` prefix or not, independently of whether `model` is wrapped.

    Args:
        model: the module (plain or DistributedDataParallel-wrapped).
        state_dict: name -> tensor.
        source: where the state dict came from (a file path), for messages.

    Raises:
        WeightsError: with the counts and the first missing, unexpected and shape-mismatched keys.
    """
    own = model.state_dict()
    state = _align_ddp_prefix(_as_state_dict(state_dict, source), list(own))
    missing = [key for key in own if key not in state]
    unexpected = [key for key in state if key not in own]
    mismatched = _shape_mismatches(own, state, [key for key in own if key in state])
    if missing or unexpected or mismatched:
        parts = [f"{source}: state_dict does not match {type(model).__name__} ({len(own)} model keys, "
                 f"{len(state)} file keys): {len(missing)} missing, {len(unexpected)} unexpected, "
                 f"{len(mismatched)} with another shape"]
        if missing:
            parts.append(f"first missing {_first(missing)}")
        if unexpected:
            parts.append(f"first unexpected {_first(unexpected)}")
        if mismatched:
            parts.append("first mismatched: " + "; ".join(mismatched[:_SHOWN]))
        raise WeightsError("; ".join(parts))
    model.load_state_dict(state, strict=True)


def load_model_pretrain(
    model: nn.Module,
    path: str | os.PathLike[str],
    state_dict_key: str | None = None,
    delete_prefix: str | None = None,
    replace_prefix: str | None = None,
    replace_to: str = "",
) -> LoadReport:
    """Initialise the whole model from a weight file, non-strictly (top-level ``pretrain``).

    ACAR-Net's ``load_pretrain`` semantics (docs/numerics.md §12 (c)): take ``obj[state_dict_key]``
    when given; drop keys starting with ``delete_prefix``; rename keys starting with ``replace_prefix``
    to ``replace_to`` + the rest (all on the file's keys as saved, DDP's ``module.`` included); then load
    what matches the model and leave the rest. Without ``state_dict_key``, a file holding a
    ``state_dict`` mapping (a training checkpoint, SFMViT's ``load_fortrain``) is read through it;
    a plain state dict (ACAR-Net's model-zoo files) is used as is. Keys with or without ``module.``
    both fit. Unlike both originals, a file of which no key fits is an error (quirk 11), and so is
    a matching key of another shape (torch raises on it too, less clearly).

    Args:
        model: the (unwrapped) model.
        path: the weight file.
        state_dict_key: entry of the loaded dict that holds the weights.
        delete_prefix: remove file keys with this prefix.
        replace_prefix: rename file keys with this prefix ...
        replace_to: ... to start with this instead.

    Returns:
        What was loaded, missing (model keys left at their values) and ignored (file keys).

    Raises:
        FileNotFoundError: if the file does not exist.
        WeightsError: unreadable file, missing ``state_dict_key``, no matching key, or shape mismatch.
    """
    obj = load_weights_file(path)
    if state_dict_key is not None:
        obj = _entry(obj, state_dict_key, path, "pretrain.state_dict_key")
    elif isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    state = _renamed(_as_state_dict(obj, str(path)), delete_prefix, replace_prefix, replace_to)
    own = model.state_dict()
    state = _align_ddp_prefix(state, list(own))
    report = _load_matching(model, own, state, path, "the model (pretrain.path)")
    _log_report(report, f"pretrain {path}", len(own), "the model")
    return report
