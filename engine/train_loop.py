"""One training epoch: the original's per-iteration schedule, RoI-normalised loss across ranks, logging."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol

import torch
from torch import nn

from engine.context import IterationHook, Learner, RunContext, global_step
from engine.distributed import all_reduce_sum
from engine.logs import TabLogger, batch_progress
from models.model import TrainOutput
from structures.batch import TrainBatch

logger = logging.getLogger(__name__)


@dataclass
class EpochStats:
    """What one epoch of training produced (rank 0's view of the global figures)."""

    epoch: int
    loss: float
    lr: float
    iterations: int
    skipped: int
    seconds: float


def zero_loss(model: nn.Module, device: torch.device) -> torch.Tensor:
    """The loss of a rank without RoIs: zero, with a zero gradient for every trainable parameter."""
    # A rank without RoIs must still join DDP's gradient all-reduce: the original uses
    # 0 x (sum of every trainable parameter), which gives zero gradients everywhere.
    total = torch.zeros((), device=device)
    for param in model.parameters():
        if param.requires_grad:
            total = total + param.sum()
    return 0.0 * total


class StepResult(NamedTuple):
    """An optimiser step's figures: the all-reduced sum of the scaled rank losses and the global RoI count."""

    loss: float
    rois: float


StepFunction = Callable[[Any, int], StepResult | None]
"""One optimiser step: ``(what the epoch's loader yielded, global step) -> StepResult | None``."""


class StepLoader(Protocol):
    """What an epoch iterates over: one item per optimiser step (a batch, or a step's micro-batches), E of them."""

    def __iter__(self) -> Iterator[Any]: ...

    def __len__(self) -> int: ...


class _RoiWeightedMean:
    """Running mean of step losses weighted by their global RoI counts."""

    def __init__(self) -> None:
        self.loss_sum = self.rois_sum = 0.0

    def add(self, step: StepResult) -> None:
        self.loss_sum += step.loss * step.rois
        self.rois_sum += step.rois

    def mean(self) -> float:
        return self.loss_sum / max(self.rois_sum, 1.0)


def train_step(ctx: RunContext, model: nn.Module, learner: Learner, batch: TrainBatch, step: int) -> StepResult | None:
    """One iteration of the original's ``train_epoch``; None when no rank has a RoI (skipped, quirk 23).

    ``scheduler.step(step)`` comes before the forward; the loss of a rank is
    ``BCE x n_rank / n_total x world_size`` so that DDP's gradient averaging yields the mean over
    every RoI of every rank.

    Args:
        ctx: the run's device, ranks and autocast.
        model: called as ``model(batch) -> TrainOutput`` (the DDP-wrapped ``AVAModel`` in a run).
        learner: its loss, optimiser and schedule.
        batch: this rank's batch (moved to ``ctx.device`` here).
        step: the global step of this iteration (``engine.context.global_step``).
    """
    learner.scheduler.step(step)
    with ctx.autocast():
        outputs: TrainOutput = model(ctx.to_device(batch))
    num_rois = outputs.num_rois
    total_rois = float(all_reduce_sum(torch.tensor([float(num_rois)], device=ctx.device)).item())
    if total_rois == 0:
        return None
    learner.optimizer.zero_grad()
    if num_rois > 0:
        loss = learner.loss_fn(outputs.logits.float(), outputs.targets) * num_rois / total_rois * ctx.world_size
    else:
        loss = zero_loss(model, ctx.device)
    loss.backward()
    learner.optimizer.step()
    return StepResult(float(all_reduce_sum(loss.detach()).item()), total_rois)


def train_one_epoch(ctx: RunContext, model: nn.Module, learner: Learner, loader: StepLoader, epoch: int,
                    batch_logger: TabLogger | None = None, on_iteration: IterationHook | None = None, *,
                    run_step: StepFunction | None = None) -> EpochStats:
    """Train for one epoch exactly as the original's ``train_epoch`` (``train_step`` per iteration).

    Every ``ctx.print_freq`` iterations rank 0 writes the loss of the window (RoI-weighted) and the
    learning rate to TensorBoard at the global step, to ``batch_logger`` and to the log.

    Args:
        ctx: the run's device, ranks, autocast, writer and print frequency.
        model: the model the steps call (DDP-wrapped in a run; see ``train_step``).
        learner: its loss, the optimiser and the scheduler.
        loader: yields what each step takes (collated training batches for ``train_step``); its
            length is E, the iterations (optimiser steps) per epoch.
        epoch: 1-based epoch number.
        batch_logger: ``train_batch.log`` writer (rank 0) or None.
        on_iteration: called with ``(epoch, iteration)`` after each optimiser step.
        run_step: called as ``run_step(item, global_step)`` for each item of ``loader``; None:
            ``train_step`` of ``model`` and ``learner`` (steps over several micro-batches:
            ``engine.accumulation.MicroBatchStep``).

    Returns:
        The epoch's statistics. ``loss`` is the all-reduced sum of the scaled rank losses, averaged
        over iterations weighted by RoIs: world_size x the global mean BCE, as the original logs it
        (quirk 8, kept so logs compare with the original's).
    """
    model.train()
    if run_step is None:
        def run_step(batch: TrainBatch, step: int) -> StepResult | None:
            return train_step(ctx, model, learner, batch, step)
    start = time.perf_counter()
    iters_per_epoch = len(loader)
    epoch_mean, window = _RoiWeightedMean(), _RoiWeightedMean()
    skipped = 0
    with batch_progress(loader, f"train epoch {epoch}", ctx.is_main) as progress:
        for i, batch in enumerate(progress):
            result = run_step(batch, global_step(epoch, i, iters_per_epoch))
            if result is None:
                skipped += 1
                continue
            epoch_mean.add(result)
            window.add(result)
            lr = learner.optimizer.param_groups[0]["lr"]
            if ctx.is_main:
                progress.set_postfix(loss=f"{result.loss:.4f}", lr=f"{lr:.2e}")
            if (i + 1) % ctx.print_freq == 0 and ctx.is_main:
                _log_window(ctx, batch_logger, epoch, i, iters_per_epoch, window.mean(), lr)
                window = _RoiWeightedMean()
            if on_iteration is not None:
                on_iteration(epoch, i)
    return EpochStats(epoch=epoch, loss=epoch_mean.mean(), lr=learner.optimizer.param_groups[0]["lr"],
                      iterations=iters_per_epoch, skipped=skipped, seconds=time.perf_counter() - start)


def _log_window(ctx: RunContext, batch_logger: TabLogger | None, epoch: int, i: int, iters_per_epoch: int,
                loss: float, lr: float) -> None:
    step = global_step(epoch, i + 1, iters_per_epoch)
    ctx.writer.add_scalar("train/loss", loss, step)
    ctx.writer.add_scalar("lr", lr, step)
    if batch_logger is not None:
        batch_logger.log({"epoch": epoch, "batch": i + 1, "iter": step, "loss": loss, "lr": lr})
    logger.info("epoch %d iter %d/%d loss %.4f lr %.6f", epoch, i + 1, iters_per_epoch, loss, lr)
