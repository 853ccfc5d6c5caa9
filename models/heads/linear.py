"""The `linear` head: RoI-pooled features of every backbone stream, concatenated, one linear classifier."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from models.heads.acar import pool_rois


class LinearHead(nn.Module):
    """Per-stream temporal mean + RoIAlign + max-pool, concatenation, dropout and one ``fc``.

    Args:
        width: sum of the channels of all backbone streams.
        roi_spatial: RoIAlign output size.
        num_classes: number of logits per RoI.
        dropout: dropout before ``fc`` (0 = none).
        bias: whether ``fc`` has a bias.
    """

    def __init__(
        self, width: int, roi_spatial: int = 7, num_classes: int = 60, dropout: float = 0.0, bias: bool = False
    ) -> None:
        super().__init__()
        self.roi_spatial = roi_spatial
        self.num_classes = num_classes
        self.fc = nn.Linear(width, num_classes, bias=bias)
        self.dp = nn.Dropout(dropout) if dropout > 0 else None

    def forward(
        self,
        features: Sequence[torch.Tensor],
        rois: torch.Tensor,
        roi_ids: Sequence[int] | None = None,
        sizes_before_padding: Sequence[Sequence[float]] | None = None,
    ) -> torch.Tensor:
        """Classifies every RoI.

        Args:
            features: backbone streams, each ``[B, C_i, T_i, h_i, w_i]``; each is pooled on its own
                grid, so their spatial sizes may differ.
            rois: ``[N, 5]`` rows ``[sample index, x1, y1, x2, y2]``, normalised.
            roi_ids: unused (same call signature as the ACAR head).
            sizes_before_padding: unused.

        Returns:
            ``[N, num_classes]`` logits.
        """
        pooled = []
        for stream in features:
            height, width = stream.shape[-2:]
            plane = F.adaptive_avg_pool3d(stream, (1, height, width)).flatten(2, 3)
            pooled.append(pool_rois(plane, rois, self.roi_spatial))
        outputs = torch.cat(pooled, dim=1)
        if self.dp is not None:
            outputs = self.dp(outputs)
        return self.fc(outputs)
