"""Statistics of the frozen ViT's features that stand in for them in the ACAR head (``models/vit_cache.py``).

They travel in batches (``structures.batch.ClipView.vit_stats``) from the ViT-cache loader
(``engine/vit_cache_loader.py``) to the model, and are stored by ``engine/feature_cache.py``.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class VitStats:
    """What the ACAR head needs of the ViT features of B clips.

    Attributes:
        mean_map: ``[B, C, H, W]`` float32, the temporal mean of the feature ``v [B, C, T, H, W]``.
        sums: ``[B, C]`` float64, ``sum over (T, H, W)`` of v per clip and channel.
        sq_sums: ``[B, C]`` float64, ``sum over (T, H, W)`` of v squared.
        count: T * H * W, the positions summed per clip (the same for every clip).
    """

    mean_map: torch.Tensor
    sums: torch.Tensor
    sq_sums: torch.Tensor
    count: int

    def __post_init__(self) -> None:
        batch, channels = self.mean_map.shape[:2] if self.mean_map.dim() == 4 else (-1, -1)
        if tuple(self.sums.shape) != (batch, channels) or self.sums.shape != self.sq_sums.shape:
            raise ValueError(f"VitStats shapes disagree: mean_map {list(self.mean_map.shape)}, sums "
                             f"{list(self.sums.shape)}, sq_sums {list(self.sq_sums.shape)}")
        if self.count < 1:
            raise ValueError(f"VitStats.count must be >= 1, got {self.count}")

    @property
    def batch_size(self) -> int:
        """B, the number of clips."""
        return int(self.mean_map.shape[0])

    @property
    def device(self) -> torch.device:
        """Where the tensors live."""
        return self.mean_map.device

    def to(self, device: torch.device | str, non_blocking: bool = False) -> VitStats:
        """The same statistics on ``device`` (dtypes unchanged)."""
        return VitStats(self.mean_map.to(device, non_blocking=non_blocking),
                        self.sums.to(device, non_blocking=non_blocking),
                        self.sq_sums.to(device, non_blocking=non_blocking), self.count)

    def select(self, index: int) -> VitStats:
        """Clip ``index`` alone, as a batch of one."""
        return VitStats(self.mean_map[index:index + 1], self.sums[index:index + 1],
                        self.sq_sums[index:index + 1], self.count)

    @staticmethod
    def cat(parts: Sequence[VitStats]) -> VitStats:
        """Concatenate batches along B (all on one device, with one ``count``)."""
        if not parts:
            raise ValueError("VitStats.cat needs at least one part")
        counts = {part.count for part in parts}
        if len(counts) != 1:
            raise ValueError(f"cannot concatenate statistics of different grid sizes (counts {sorted(counts)})")
        return VitStats(torch.cat([p.mean_map for p in parts]), torch.cat([p.sums for p in parts]),
                        torch.cat([p.sq_sums for p in parts]), parts[0].count)
