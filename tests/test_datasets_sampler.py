"""RankSliceSampler, the original's DistributedSampler: seeded permutation per epoch, disjoint rank slices."""
from __future__ import annotations

import pytest
import torch

from datasets.sampler import RankSliceSampler


def _shares(n: int, world: int, round_down: bool, epoch: int = 0) -> list[list[int]]:
    shares = []
    for rank in range(world):
        sampler = RankSliceSampler(n, num_replicas=world, rank=rank, round_down=round_down)
        sampler.set_epoch(epoch)
        shares.append(list(sampler))
        assert len(sampler) == len(shares[-1])
    return shares


def test_golden_permutation_for_n10_epoch0() -> None:
    sampler = RankSliceSampler(10, num_replicas=1, rank=0, round_down=False)
    direct = torch.randperm(10, generator=torch.Generator().manual_seed(0)).tolist()
    assert list(sampler) == direct
    assert direct == [4, 1, 7, 5, 3, 9, 0, 8, 6, 2]  # torch's CPU randperm for seed 0
    assert all(type(index) is int for index in sampler)


@pytest.mark.parametrize("n,world", [(10, 3), (10, 4), (7, 2), (12, 4), (2, 4)])
def test_round_down_uses_the_first_world_times_floor_of_the_permutation(n: int, world: int) -> None:
    shares = _shares(n, world, round_down=True, epoch=3)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(3)).tolist()
    per_rank = n // world
    assert [len(s) for s in shares] == [per_rank] * world
    assert [i for s in shares for i in s] == perm[: world * per_rank]


@pytest.mark.parametrize(
    "n,world,sizes", [(10, 3, [4, 4, 2]), (10, 4, [3, 3, 3, 1]), (2, 4, [1, 1, 0, 0]), (9, 3, [3, 3, 3])]
)
def test_ceil_gives_every_index_exactly_once(n: int, world: int, sizes: list[int]) -> None:
    shares = _shares(n, world, round_down=False)
    assert [len(s) for s in shares] == sizes
    flat = [i for s in shares for i in s]
    assert flat == torch.randperm(n, generator=torch.Generator().manual_seed(0)).tolist()
    assert sorted(flat) == list(range(n))


def test_epoch_and_seed_offset_change_the_permutation() -> None:
    sampler = RankSliceSampler(50, num_replicas=2, rank=1, round_down=True)
    first = list(sampler)
    sampler.set_epoch(1)
    second = list(sampler)
    assert first != second
    sampler.set_epoch(0)
    assert list(sampler) == first
    shifted = RankSliceSampler(50, num_replicas=2, rank=1, round_down=True, seed_offset=1)
    assert list(shifted) == second


def test_invalid_arguments() -> None:
    with pytest.raises(ValueError, match="rank"):
        RankSliceSampler(10, num_replicas=2, rank=2, round_down=False)
    with pytest.raises(ValueError, match="num_replicas"):
        RankSliceSampler(10, num_replicas=0, rank=0, round_down=False)
    assert list(RankSliceSampler(0, num_replicas=2, rank=1, round_down=False)) == []
