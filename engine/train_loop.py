"""One training epoch: the original's per-iteration schedule, RoI-normalised loss across ranks, logging."""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch import nn
from tqdm import tqdm

from engine.distributed import all_reduce_sum
from engine.logs import TabLogger

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


def move_batch(batch: dict, device: torch.device) -> dict:
    """Clips to ``device`` (a tensor in training, a list of per-view tensors in evaluation)."""
    clips = batch["clips"]
    non_blocking = device.type == "cuda"
    if isinstance(clips, torch.Tensor):
        moved = clips.to(device, non_blocking=non_blocking)
    else:
        moved = [view.to(device, non_blocking=non_blocking) for view in clips]
    return {**batch, "clips": moved}


def _zero_loss(model: nn.Module, device: torch.device) -> torch.Tensor:
    # A rank without RoIs must still join DDP's gradient all-reduce: the original uses
    # 0 x (sum of every trainable parameter), which gives zero gradients everywhere.
    total = torch.zeros((), device=device)
    for param in model.parameters():
        if param.requires_grad:
            total = total + param.sum()
    return 0.0 * total


def train_one_epoch(
    epoch: int,
    loader: Iterable[dict],
    iters_per_epoch: int,
    model: nn.Module,
    loss_fn: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
    optimizer: torch.optim.Optimizer,
    scheduler,
    device: torch.device,
    world_size: int,
    is_main: bool,
    print_freq: int,
    batch_logger: TabLogger | None,
    writer,
    autocast: Callable[[], object],
    on_iteration: Callable[[int], None] | None = None,
) -> EpochStats:
    """Train for one epoch exactly as the original's ``train_epoch``.

    Per iteration: ``scheduler.step((epoch - 1) * E + i)`` before the forward; the global RoI count is
    all-reduced; an iteration with no RoI on any rank is skipped (quirk 23, kept); the loss of a rank
    is ``BCE x n_rank / n_total x world_size`` so that DDP's gradient averaging yields the mean over
    every RoI of every rank.

    Args:
        epoch: 1-based epoch number.
        loader: yields collated training batches.
        iters_per_epoch: E, the loader's length.
        model: the (DDP-wrapped) model; called as ``model(batch)``.
        loss_fn: ``(logits [N, C], targets [N, C]) -> scalar`` (the model's ``loss``).
        optimizer, scheduler: the optimiser and the original's per-iteration scheduler.
        device: where clips go.
        world_size: number of processes.
        is_main: rank 0 (progress bar, logs, TensorBoard).
        print_freq: log every this many iterations.
        batch_logger: ``train_batch.log`` writer (rank 0) or None.
        writer: TensorBoard writer (a no-op on other ranks).
        autocast: returns the mixed-precision context for the forward pass.
        on_iteration: called with the iteration index after each optimiser step (tests use it to
            simulate a crash in the middle of an epoch).

    Returns:
        The epoch's statistics. ``loss`` is the all-reduced sum of the scaled rank losses, averaged
        over iterations weighted by RoIs: world_size x the global mean BCE, as the original logs it
        (quirk 8, kept so logs compare with the original's).
    """
    model.train()
    start = time.perf_counter()
    loss_sum = rois_sum = 0.0
    window_loss = window_rois = 0.0
    skipped = 0
    progress = tqdm(loader, total=iters_per_epoch, desc=f"train epoch {epoch}", unit="batch",
                    disable=not is_main, dynamic_ncols=True, leave=False)
    for i, batch in enumerate(progress):
        curr_step = (epoch - 1) * iters_per_epoch + i
        scheduler.step(curr_step)
        with autocast():
            outputs = model(move_batch(batch, device))
        num_rois = int(outputs["num_rois"])
        total_rois = float(all_reduce_sum(torch.tensor([float(num_rois)], device=device)).item())
        if total_rois == 0:
            skipped += 1
            continue
        optimizer.zero_grad()
        if num_rois > 0:
            loss = loss_fn(outputs["logits"].float(), outputs["targets"]) * num_rois / total_rois * world_size
        else:
            loss = _zero_loss(model, device)
        loss.backward()
        optimizer.step()
        reduced = float(all_reduce_sum(loss.detach()).item())
        loss_sum += reduced * total_rois
        rois_sum += total_rois
        window_loss += reduced * total_rois
        window_rois += total_rois
        lr = optimizer.param_groups[0]["lr"]
        if is_main:
            progress.set_postfix(loss=f"{reduced:.4f}", lr=f"{lr:.2e}")
        if (i + 1) % print_freq == 0 and is_main:
            window_avg = window_loss / max(window_rois, 1.0)
            writer.add_scalar("train/loss", window_avg, curr_step + 1)
            writer.add_scalar("lr", lr, curr_step + 1)
            if batch_logger is not None:
                batch_logger.log({"epoch": epoch, "batch": i + 1, "iter": curr_step + 1, "loss": window_avg, "lr": lr})
            logger.info("epoch %d iter %d/%d loss %.4f lr %.6f", epoch, i + 1, iters_per_epoch, window_avg, lr)
            window_loss = window_rois = 0.0
        if on_iteration is not None:
            on_iteration(i)
    progress.close()
    return EpochStats(epoch=epoch, loss=loss_sum / max(rois_sum, 1.0), lr=optimizer.param_groups[0]["lr"],
                      iterations=iters_per_epoch, skipped=skipped, seconds=time.perf_counter() - start)
