"""Necks: boxes of a batch -> RoIs, targets and per-box metadata; `NECKS` maps config names to builders."""
from __future__ import annotations

from collections.abc import Callable

from torch import nn

from models.necks.basic import NO_AUG, BasicNeck, NeckOutput, basic, bbox_jitter, get_bbox_after_aug

NECKS: dict[str, Callable[..., nn.Module]] = {"basic": basic}

__all__ = ["NECKS", "NO_AUG", "BasicNeck", "NeckOutput", "basic", "bbox_jitter", "get_bbox_after_aug"]
