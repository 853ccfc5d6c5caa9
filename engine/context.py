"""What the training and evaluation loops of one process share, and the data each of them iterates over.

``RunContext`` is built once per process by the runner (``engine/runner.py``); the loops read the
device, the process's place in the job, the autocast factory, the TensorBoard writer and the print
frequency from it instead of taking each as a parameter. ``global_step`` is the one x-axis of every
TensorBoard scalar.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Protocol, TypeVar

import torch

from datasets.ava import AVADataset
from datasets.sampler import RankSliceSampler
from engine.distributed import DistInfo
from engine.logs import NullWriter, ScalarWriter
from engine.scheduler import WarmupScheduler
from engine.virtual_ranks import RankLayout
from structures.batch import EvalBatch, TrainBatch

AutocastFactory = Callable[[], AbstractContextManager]
"""Returns the mixed-precision context of a forward pass (``contextlib.nullcontext`` when amp is off)."""

IterationHook = Callable[[int, int], None]
"""Called with ``(epoch, iteration)`` after each optimiser step (tests simulate a crash with it)."""


BatchT = TypeVar("BatchT", TrainBatch, EvalBatch)
BatchT_co = TypeVar("BatchT_co", TrainBatch, EvalBatch, covariant=True)


class BatchLoader(Protocol[BatchT_co]):
    """What the loops iterate over: a DataLoader, a ``CachedLoader`` or a list of collated batches."""

    def __iter__(self) -> Iterator[BatchT_co]: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True)
class RunContext:
    """One process's settings that every loop reads.

    Attributes:
        dist: the process's place in the job (rank, world size, device).
        autocast: the forward pass's mixed-precision context factory.
        writer: TensorBoard writer (a ``NullWriter`` on ranks other than 0).
        print_freq: log the training loss every this many iterations.
    """

    dist: DistInfo
    autocast: AutocastFactory = contextlib.nullcontext
    writer: ScalarWriter = field(default_factory=NullWriter)
    print_freq: int = 1

    @classmethod
    def local(cls, device: torch.device, autocast: AutocastFactory = contextlib.nullcontext) -> RunContext:
        """A single-process context without TensorBoard (benchmarks, tests, tools)."""
        return cls(DistInfo(device=device), autocast)

    @property
    def device(self) -> torch.device:
        return self.dist.device

    @property
    def is_main(self) -> bool:
        """Rank 0: the one with progress bars, logs and TensorBoard."""
        return self.dist.is_main

    @property
    def world_size(self) -> int:
        return self.dist.world_size

    def to_device(self, batch: BatchT) -> BatchT:
        """``batch`` on this process's device (on CUDA the copy from pinned memory does not block)."""
        return batch.to(self.device, non_blocking=self.device.type == "cuda")


@dataclass(frozen=True)
class RankShare:
    """One rank's share of the training split: its per-epoch sampler and its loader."""

    sampler: RankSliceSampler
    loader: BatchLoader[TrainBatch]


@dataclass(frozen=True)
class TrainData:
    """The training split: its dataset, the per-epoch sampler the runner reseeds, and the loader.

    Attributes:
        dataset: the training split.
        sampler: this process's rank's sampler (the first rank it plays, with virtual ranks).
        loader: that rank's loader.
        others: the further ranks this process plays (``train.virtual_world_size``), in rank order.
        layout: the ranks played and the micro-batches per optimiser step; None: the original's
            step, one batch of the process's own rank.
    """

    dataset: AVADataset
    sampler: RankSliceSampler
    loader: BatchLoader[TrainBatch]
    others: tuple[RankShare, ...] = ()
    layout: RankLayout | None = None

    @property
    def shares(self) -> tuple[RankShare, ...]:
        """Every rank's share this process plays, its own first."""
        return (RankShare(self.sampler, self.loader), *self.others)

    @property
    def steps_per_epoch(self) -> int:
        """E, the optimiser steps of an epoch: the batches of a rank, by ``train.accumulate``."""
        return len(self.loader) // (1 if self.layout is None else self.layout.accumulate)


@dataclass(frozen=True)
class EvalData:
    """The evaluation split: its dataset, this rank's loader, and how predict.csv lists and names it.

    Attributes:
        dataset: the val split.
        loader: this rank's batches (``ChunkedBatchSampler``).
        element_ranks: the file position of each element (``val.predict_order: original``), or
            None for element order (``engine.eval_loop.gather_predictions``).
        boxes: what the boxes are, for the plot title and the log (``engine.scoring.describe_boxes``;
            rank 0 only).
    """

    dataset: AVADataset
    loader: BatchLoader[EvalBatch]
    element_ranks: list[int] | None = None
    boxes: str | None = None

    @property
    def class_ids(self) -> list[int]:
        """The pkl's class ids in output order: output c is predict.csv's ``class_ids[c]``."""
        return [int(c["id"]) for c in self.dataset.classes]


@dataclass(frozen=True)
class RunData:
    """Both splits of a run; ``train`` is None when the run only evaluates."""

    train: TrainData | None
    val: EvalData


@dataclass(frozen=True)
class Learner:
    """How an optimiser step changes the weights of the model it is given.

    Attributes:
        loss_fn: ``(logits [N, C], targets [N, C]) -> scalar``, the model's ``loss``.
        optimizer: the optimiser over the model's parameters.
        scheduler: the original's per-iteration learning-rate schedule.
    """

    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
    optimizer: torch.optim.Optimizer
    scheduler: WarmupScheduler


def global_step(epoch: int, iteration: int, iters_per_epoch: int) -> int:
    """Training iterations done before iteration ``iteration`` (0-based) of ``epoch`` (1-based).

    It is the scheduler's step index of that iteration, and the x-axis of every TensorBoard scalar:
    a scalar logged after iteration i is written at ``global_step(epoch, i + 1, E)``, and an epoch's
    scalars (its loss, its evaluation) at ``global_step(epoch, E, E) = epoch x E``, the step reached
    at its end, so that every curve of a run shares one axis.
    """
    return (epoch - 1) * iters_per_epoch + iteration
