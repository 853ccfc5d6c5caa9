"""Virtual ranks: P processes playing the W ranks of a W-process run, and what each rank keeps of its own.

In a real W-process run every rank seeds Python's, NumPy's and torch's generators identically
(``engine.runner.seed_everything``) and builds the same model, so all ranks reach the first
training step with the same generator states; from there each rank's states move with its own
batches (its data augmentation when the loader has no workers, the neck's box jitter from
``np.random``, dropout and drop-path from torch). Its DataLoader's generator is seeded from
(seed, epoch) alone, so its workers' seeds are the same on every rank. Its BatchNorms normalise
over its own clips and update rank-local running statistics (DDP runs with
``broadcast_buffers=False``; quirk 7), of which the checkpoint keeps rank 0's.

A process that plays several ranks (``train.virtual_world_size``) reproduces that: ``RankLayout``
says which ranks it plays, ``RankStreams`` keeps each rank's generator states and swaps them in
around that rank's work, and ``kept_buffers`` keeps the process's buffers those of its first rank.
The optimiser step that uses them is ``engine/accumulation.py``.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from config import Config, ConfigError
from engine.checkpoint import capture_rng, restore_rng

RngState = dict[str, Any]
"""What ``engine.checkpoint.capture_rng`` returns: the states of Python's, NumPy's and torch's generators."""


@dataclass(frozen=True)
class RankLayout:
    """Which ranks of the W-rank run one process plays, and the micro-batches of an optimiser step.

    Process p of P plays the ranks ``p * W / P .. (p + 1) * W / P - 1`` (contiguous, so process 0
    plays rank 0, whose buffers and generator states a real run's checkpoint holds first). Each
    optimiser step takes ``accumulate`` micro-batches from each played rank, one rank after the other.

    Attributes:
        world_size: W, the ranks of the run reproduced (the real world size without virtual ranks).
        processes: P, the real processes.
        rank: p, this process's real rank.
        accumulate: micro-batches per rank and optimiser step (``train.accumulate``).
    """

    world_size: int
    processes: int
    rank: int
    accumulate: int = 1

    def __post_init__(self) -> None:
        # Internal invariants: rank_layout() turns every user value that breaks them into a ConfigError.
        assert self.processes >= 1 and self.world_size % self.processes == 0, self
        assert 0 <= self.rank < self.processes and self.accumulate >= 1, self

    @property
    def per_process(self) -> int:
        """W / P, the ranks each process plays."""
        return self.world_size // self.processes

    @property
    def ranks(self) -> range:
        """The ranks this process plays, in the order each step runs them; the first is its own."""
        first = self.rank * self.per_process
        return range(first, first + self.per_process)

    @property
    def micro_batches(self) -> int:
        """Micro-batches this process runs per optimiser step."""
        return self.per_process * self.accumulate

    @property
    def plain(self) -> bool:
        """One micro-batch per step, the process's own rank: the original's step (``train_loop.train_step``)."""
        return self.micro_batches == 1

    @property
    def gradient_scale(self) -> float:
        """P / W: DDP divides the summed gradients by P, the W-rank run by W (exact when W / P is a power of 2)."""
        return self.processes / self.world_size


def rank_layout(cfg: Config, processes: int, rank: int = 0) -> RankLayout:
    """The layout of process ``rank`` of ``processes`` for ``cfg.train``'s virtual ranks and accumulation.

    Args:
        cfg: a training config (``cfg.train`` set).
        processes: P, the real processes of the run.
        rank: this process's real rank.

    Raises:
        ConfigError: ``train.virtual_world_size`` below P or not a multiple of it, or virtual ranks
            with ``rank_local_eval`` (a process holds one rank's statistics, not each played rank's).
    """
    train = cfg.train
    assert train is not None  # only training runs have a layout
    virtual = train.virtual_world_size
    world_size = processes if virtual is None else virtual
    if world_size < processes:
        raise ConfigError(cfg.config_file, "train.virtual_world_size",
                          f"{world_size} ranks cannot be played by {processes} processes: it must be at least the "
                          f"number of processes (--nproc_per_node x --nnodes); leave it out to train with {processes}")
    if world_size % processes:
        raise ConfigError(cfg.config_file, "train.virtual_world_size",
                          f"{world_size} ranks cannot be shared evenly by {processes} processes: it must be a "
                          f"multiple of the number of processes (--nproc_per_node x --nnodes)")
    if world_size > processes and cfg.rank_local_eval:
        raise ConfigError(cfg.config_file, "train.virtual_world_size",
                          f"{world_size} ranks on {processes} processes cannot evaluate with rank_local_eval: a "
                          "process keeps the BatchNorm statistics of one rank only; remove rank_local_eval")
    return RankLayout(world_size, processes, rank, train.accumulate)


class RankStreams:
    """The global random generators of every rank a process plays, one rank's at a time in the globals.

    Between steps the globals hold the process's first rank's states (the ones a checkpoint's
    ``rng`` entry and evaluation see); ``playing(rank)`` swaps another rank's in for its work.

    Args:
        ranks: the ranks played, the first one the process's own.
        saved: the generator states of ``ranks[1:]`` (from a checkpoint); None: the current
            global states, as every rank of a real run has at its first step (same seed, same draws).
    """

    def __init__(self, ranks: Sequence[int], saved: Sequence[RngState] | None = None) -> None:
        self.first, others = ranks[0], list(ranks[1:])
        if saved is not None and len(saved) != len(others):
            raise ValueError(f"{len(saved)} saved generator states for the {len(others)} further ranks {others}")
        self._saved: dict[int, RngState] = (dict(zip(others, saved)) if saved is not None
                                             else {rank: capture_rng() for rank in others})

    @contextlib.contextmanager
    def playing(self, rank: int) -> Iterator[None]:
        """Run the body with ``rank``'s generator states in the globals, and keep what it drew."""
        if rank == self.first:
            yield
            return
        own = capture_rng()
        restore_rng(self._saved[rank])
        try:
            yield
        finally:
            self._saved[rank] = capture_rng()
            restore_rng(own)

    def states(self) -> list[RngState]:
        """The generator states of every rank played, in rank order (for the checkpoint's ``rng_per_rank``)."""
        return [capture_rng(), *(self._saved[rank] for rank in sorted(self._saved))]


@contextlib.contextmanager
def kept_buffers(model: nn.Module, keep: bool = True) -> Iterator[None]:
    """Undo, at exit, what the body did to ``model``'s buffers (BatchNorm running statistics).

    A process playing several ranks keeps its first rank's buffers, as a real run's checkpoint
    and evaluation keep rank 0's: another rank's forward pass still normalises over its own clips
    (batch statistics), but its running-statistics update is dropped.

    Args:
        model: the module whose buffers are kept.
        keep: False runs the body without copying anything (the first rank's own work).
    """
    if not keep:
        yield
        return
    saved = [buffer.detach().clone() for buffer in model.buffers()]
    try:
        yield
    finally:
        with torch.no_grad():
            for buffer, value in zip(model.buffers(), saved):
                buffer.copy_(value)
