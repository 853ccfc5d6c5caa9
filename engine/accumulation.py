"""Optimiser steps over several micro-batches: the ranks a process plays (virtual ranks), and plain accumulation.

One step of a W-rank run, played by P processes (``engine/virtual_ranks.py``): each process runs,
one after the other, ``accumulate`` micro-batches of every rank it plays, each with that rank's
random generators, and the gradients are combined as DDP combines a real run's. It follows the
original's iteration (``engine.train_loop.train_step``) with two changes of order that change no
number:

- the RoIs of every micro-batch are drawn first (the neck's jitter, ``AVAModel.training_rois``) so
  that the RoI count over all ranks is known before any forward pass: each micro-batch's loss is
  then the original's ``BCE x n_rank / n_total x W`` and its backward pass can run at once, freeing
  its activations (peak memory stays one micro-batch's);
- the gradients of a process's micro-batches add up locally (``DistributedDataParallel.no_sync``)
  and its last backward pass all-reduces their sum, which DDP divides by P; each loss is scaled by
  P / W first, so the result is the mean over the W ranks, as DDP gives a real W-process run.

Without virtual ranks (W = P) the same step is plain gradient accumulation: ``accumulate``
consecutive batches of the process's own rank per step, the loss their RoI-weighted mean.
"""
from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from engine.context import BatchLoader, Learner, RunContext
from engine.distributed import all_reduce_sum
from engine.train_loop import StepResult, zero_loss
from engine.virtual_ranks import RankLayout, RankStreams, kept_buffers
from models.model import AVAModel, TrainOutput
from models.necks import NeckOutput
from structures.batch import TrainBatch

RankIterators = dict[int, Iterator[TrainBatch]]
"""Each played rank's batch iterator for the current epoch, keyed by rank."""


class MicroBatchEpoch:
    """An epoch's optimiser steps when each step takes several micro-batches.

    Iterating yields, once per step, the played ranks' batch iterators: the step fetches its
    micro-batches itself, each while its rank's generators are in place (a loader without workers
    draws the data augmentation in this process). Batches left over at the end of an epoch
    (fewer than ``accumulate``) are not fetched.

    Args:
        layout: the ranks played and ``accumulate``.
        loaders: each played rank's loader, in ``layout.ranks`` order (all of the same length).
    """

    def __init__(self, layout: RankLayout, loaders: Sequence[BatchLoader[TrainBatch]]) -> None:
        self.layout, self.loaders = layout, list(loaders)

    def __len__(self) -> int:
        return len(self.loaders[0]) // self.layout.accumulate

    def __iter__(self) -> Iterator[RankIterators]:
        iterators = {rank: iter(loader) for rank, loader in zip(self.layout.ranks, self.loaders)}
        for _ in range(len(self)):
            yield iterators


@dataclass(frozen=True)
class _MicroBatch:
    rank: int
    batch: TrainBatch
    rois: NeckOutput


@dataclass
class MicroBatchStep:
    """The optimiser step of a ``MicroBatchEpoch``: called with its rank iterators and the global step.

    Attributes:
        ctx: the process's device, ranks and autocast.
        ddp: the DDP-wrapped model (a plain ``AVAModel`` without a process group, in tests).
        learner: loss, optimiser and schedule.
        layout: the ranks played and the micro-batches per rank.
        streams: the played ranks' random generators.
    """

    ctx: RunContext
    ddp: nn.Module
    learner: Learner
    layout: RankLayout
    streams: RankStreams

    @property
    def model(self) -> AVAModel:
        return self.ddp.module if isinstance(self.ddp, DistributedDataParallel) else self.ddp

    def __call__(self, iterators: RankIterators, step: int) -> StepResult | None:
        """One optimiser step of the W-rank run; None when no rank has a RoI (skipped, quirk 23).

        Returns:
            As ``train_step``: the sum over the W ranks of their scaled losses (W x the mean BCE
            over every RoI, quirk 8) and the RoI count.
        """
        self.learner.scheduler.step(step)
        micro = self._draw(iterators)
        local_rois = sum(item.rois.num_rois for item in micro)
        total_rois = float(all_reduce_sum(torch.tensor([float(local_rois)], device=self.ctx.device)).item())
        if total_rois == 0:
            self._forward_only(micro)
            return None
        self.learner.optimizer.zero_grad()
        logged = torch.zeros((), device=self.ctx.device)
        for index, item in enumerate(micro):
            # Gradients of all but the last micro-batch stay local; the last backward all-reduces their sum.
            last = index == len(micro) - 1
            with self._rank(item.rank), self._no_sync(last):
                loss = self._loss(item, total_rois)
                (loss * self.layout.gradient_scale).backward()
            logged = logged + loss.detach()
        self.learner.optimizer.step()
        return StepResult(float(all_reduce_sum(logged).item()), total_rois)

    def _draw(self, iterators: RankIterators) -> list[_MicroBatch]:
        """Fetch each micro-batch and draw its RoIs, each in its rank's generators, as its rank would."""
        micro = []
        for rank in self.layout.ranks:
            with self.streams.playing(rank):
                for _ in range(self.layout.accumulate):
                    batch = next(iterators[rank])
                    micro.append(_MicroBatch(rank, batch, self.model.training_rois(batch)))
        return micro

    @contextlib.contextmanager
    def _rank(self, rank: int) -> Iterator[None]:
        """``rank``'s generators in place, and the buffers kept the first rank's (``kept_buffers``)."""
        with self.streams.playing(rank), kept_buffers(self.model, keep=rank != self.streams.first):
            yield

    def _no_sync(self, last: bool) -> contextlib.AbstractContextManager:
        if last or not isinstance(self.ddp, DistributedDataParallel):
            return contextlib.nullcontext()
        return self.ddp.no_sync()

    def _forward(self, item: _MicroBatch) -> TrainOutput:
        with self.ctx.autocast():
            return self.ddp(self.ctx.to_device(item.batch), rois=item.rois)

    def _loss(self, item: _MicroBatch, total_rois: float) -> torch.Tensor:
        """The original's loss of one rank: ``BCE x n_rank / n_total x W``, or zero when it has no RoI."""
        outputs = self._forward(item)
        num_rois = outputs.num_rois
        if num_rois == 0:
            return zero_loss(self.ddp, self.ctx.device)
        return self.learner.loss_fn(outputs.logits.float(), outputs.targets) * num_rois / total_rois \
            * self.layout.world_size

    def _forward_only(self, micro: list[_MicroBatch]) -> None:
        # A skipped iteration still runs every rank's forward pass in a real run: its random draws
        # (drop-path, dropout) and BatchNorm updates happen; nothing is learnt.
        with torch.no_grad():
            for item in micro:
                with self._rank(item.rank):
                    self._forward(item)
