"""The original's distributed sampler: one seeded permutation per epoch, split into disjoint rank slices.

Unlike ``torch.utils.data.DistributedSampler`` there is no padding and no wrap-around: with
``round_down=False`` the last rank(s) get fewer (possibly zero) indices, so no element is ever
given to two ranks (docs/numerics.md §8). Rank and world size are passed explicitly, so it works
with one process and without an initialised process group.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class RankSliceSampler(Sampler[int]):
    """Indices of one rank's share of a dataset, reshuffled per epoch: the original's ``DistributedSampler``.

    Named for what it does (each rank takes one slice of the epoch's permutation) so that it is not
    mistaken for torch's sampler of the same name, which pads and wraps around.

    The permutation is ``torch.randperm(N, generator=torch.Generator().manual_seed(epoch +
    seed_offset))``; each rank takes ``perm[rank * n : (rank + 1) * n]`` with
    ``n = floor(N / W)`` (``round_down``, training: the last ``N mod W`` indices are unused) or
    ``ceil(N / W)`` (evaluation: every index exactly once over all ranks).
    """

    def __init__(self, dataset_len: int, num_replicas: int, rank: int, round_down: bool, seed_offset: int = 0) -> None:
        """Fix the share size; the epoch starts at 0.

        Args:
            dataset_len: N, the number of items.
            num_replicas: W, the world size (>= 1).
            rank: this process's rank, ``0 <= rank < W``.
            round_down: floor (training) or ceil (evaluation) share size.
            seed_offset: added to the epoch to seed the permutation (0 reproduces the original).

        Raises:
            ValueError: negative N, W < 1 or rank outside ``0..W-1``.
        """
        if dataset_len < 0:
            raise ValueError(f"dataset_len must be >= 0, got {dataset_len}")
        if num_replicas < 1:
            raise ValueError(f"num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(f"rank must be in 0..{num_replicas - 1}, got {rank}")
        self.dataset_len = dataset_len
        self.num_replicas = num_replicas
        self.rank = rank
        self.round_down = round_down
        self.seed_offset = seed_offset
        self.epoch = 0
        # Share size per rank (the original's num_samples); the last ranks may get fewer with ceil.
        self.num_samples = dataset_len // num_replicas if round_down else -(-dataset_len // num_replicas)

    def set_epoch(self, epoch: int) -> None:
        """Select the permutation of ``epoch`` (evaluation never calls it: epoch 0)."""
        self.epoch = epoch

    def permutation(self) -> list[int]:
        """The whole permutation of the current epoch (identical on every rank)."""
        generator = torch.Generator().manual_seed(self.epoch + self.seed_offset)
        return torch.randperm(self.dataset_len, generator=generator).tolist()

    def indices(self) -> list[int]:
        """This rank's indices for the current epoch, in permutation order."""
        start = self.rank * self.num_samples
        return self.permutation()[start : start + self.num_samples]

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices())

    def __len__(self) -> int:
        # The real share (the original returned num_samples even when the last rank got fewer).
        return max(0, min(self.num_samples, self.dataset_len - self.rank * self.num_samples))
