"""Heads: backbone features + RoIs -> per-RoI logits; `HEADS` maps config names to builders."""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from models.heads.acar import HR2O, ACARHead, pool_rois
from models.heads.linear import LinearHead

# The classes are the builders: their constructor arguments are the config's `model.head.kwargs`.
HEADS: dict[str, Callable[..., nn.Module]] = {"acar": ACARHead, "linear": LinearHead}


class HeadWrapper(nn.Module):
    """Holds the head as ``.module``, which gives the original's ``head.module.*`` state_dict keys.

    Args:
        module: an ``ACARHead`` or ``LinearHead`` (anything with ``num_classes`` and the same call).
    """

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    @property
    def num_classes(self) -> int:
        """Number of logits per RoI."""
        return int(self.module.num_classes)

    def forward(
        self,
        features: Sequence[torch.Tensor],
        rois: torch.Tensor,
        roi_ids: Sequence[int],
        sizes_before_padding: Sequence[Sequence[float]],
    ) -> torch.Tensor:
        """Runs the wrapped head; returns ``[N, num_classes]`` logits (see ``ACARHead.forward``)."""
        return self.module(features, rois, roi_ids, sizes_before_padding)


__all__ = ["HEADS", "HR2O", "ACARHead", "HeadWrapper", "LinearHead", "pool_rois"]
