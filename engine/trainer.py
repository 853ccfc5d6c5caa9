"""The run of one process: a ``Trainer`` holding its state, and the hooks that act after each epoch.

The runner (``engine/runner.py``) builds the model, the data and the learner, then hands them to a
``Trainer``. It trains epoch after epoch (``train_epoch``), calling its hooks after each (by default
``engine/hooks.py``: checkpoint, evaluate, write the summary, in that order), or evaluates the
loaded weights once (``evaluate``). Its ``epoch`` and ``step`` always say which weights it holds.
"""
from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from torch.nn.parallel import DistributedDataParallel

from config import Config
from engine import distributed as dist_utils
from engine.accumulation import MicroBatchEpoch, MicroBatchStep
from engine.checkpoint import capture_rng
from engine.context import Learner, RunContext, RunData, global_step
from engine.eval_loop import run_evaluation_pass
from engine.logs import TabLogger
from engine.run_dir import write_summary
from engine.scoring import MapProtocol, score_epoch
from engine.train_loop import EpochStats, train_one_epoch
from engine.virtual_ranks import RankStreams, RngState
from models.model import AVAModel

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """Rank 0's record of a run, written to ``result_path/run_summary.json``."""

    mode: str
    world_size: int
    backend: str
    device: str
    epochs: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    resumed_from: str | None = None
    tensorboard: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class StartPoint:
    """The weights a run starts from: their epoch, their global step and the checkpoint they came from.

    Attributes:
        epoch: the last epoch they were trained for (0: not trained by this project's loop).
        step: the training iterations behind them (``engine.context.global_step``; 0 when unknown).
        checkpoint: the file they were resumed from, or None.
        rank_rng: the checkpoint's generator states of the further ranks this process plays (virtual
            ranks; its own rank's are restored in the globals); None: they start as the globals.
    """

    epoch: int = 0
    step: int = 0
    checkpoint: str | None = None
    rank_rng: tuple[RngState, ...] | None = None


class HookBase:
    """Something done at fixed points of ``Trainer.train``; override the points you need.

    ``Trainer.register_hooks`` sets ``trainer``. Hooks run in the order they were registered.
    """

    trainer: Trainer

    def before_train(self) -> None:
        """Before the first epoch of this run."""

    def after_step(self) -> None:
        """After each optimiser step (``trainer.iteration`` is its 0-based index in the epoch)."""

    def after_epoch(self) -> None:
        """After each epoch (``trainer.epoch`` and ``trainer.step`` are the epoch's end)."""

    def after_train(self) -> None:
        """After the last epoch."""


def wrap_ddp(model: AVAModel, ctx: RunContext) -> DistributedDataParallel:
    """The model in DDP with the original's settings: rank-local buffers, every parameter used."""
    with warnings.catch_warnings():
        # torch 2.14 deprecates broadcast_buffers in favour of forward_sync_buffers, whose False still
        # syncs buffers at init; the original's semantics (rank-local BN_vit statistics) need this one.
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        device = ctx.device
        return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None,
                                       broadcast_buffers=False, find_unused_parameters=False)


class Trainer:
    """One process's run: its model and data, the learner and DDP wrapper while training, its record.

    Args:
        cfg: the run's config.
        ctx: device, ranks, autocast, TensorBoard writer, print frequency.
        model: the plain model, every weight loaded (evaluation runs it; training runs it through ``ddp``).
        data: the splits (``data.train`` is None when the run only evaluates).
        learner: loss, optimiser and schedule, their state loaded (None when the run only evaluates).
        start: the weights' epoch, global step and checkpoint.
        scoring: how predict.csv is scored (the run plan's ``scoring``; None: no mAP).

    Attributes:
        cfg, ctx, model, data, learner, scoring: the arguments; result_path: ``cfg.result_path``.
        ddp: the DDP wrapper of ``model``, made when training starts.
        epoch: the epoch of the current weights (during ``train_epoch``: the epoch being trained).
        iteration: the 0-based index, within ``epoch``, of the last optimiser step.
        step: the global step of the current weights: the training iterations behind them.
        begin_epoch: the first epoch this run trains (earlier ones come from a checkpoint).
        summary: the run's record; rank 0 writes it (``write_summary``).
        hooks: called after each step and epoch of ``train``.
    """

    def __init__(self, cfg: Config, ctx: RunContext, model: AVAModel, data: RunData, learner: Learner | None,
                 start: StartPoint, *, scoring: MapProtocol | None) -> None:
        self.cfg, self.ctx, self.model, self.data, self.learner = cfg, ctx, model, data, learner
        self.scoring = scoring
        self.ddp: DistributedDataParallel | None = None
        self.epoch, self.iteration, self.step = start.epoch, 0, start.step
        self.begin_epoch = start.epoch + 1
        self._rank_rng = start.rank_rng
        self._micro: tuple[MicroBatchStep, MicroBatchEpoch] | None = None
        self.result_path = Path(cfg.result_path)
        dist = ctx.dist
        self.summary = RunSummary(mode="evaluate" if cfg.evaluate else "train", world_size=dist.world_size,
                                  backend=str(dist.backend), device=str(dist.device), resumed_from=start.checkpoint,
                                  tensorboard=str(self.result_path / "tb") if ctx.is_main else None)
        self.hooks: list[HookBase] = []
        self._epoch_log: TabLogger | None = None
        self._batch_log: TabLogger | None = None

    def register_hooks(self, hooks: list[HookBase]) -> None:
        """Append ``hooks`` (run in this order) and point each at this trainer."""
        for hook in hooks:
            hook.trainer = self
        self.hooks.extend(hooks)

    def train(self) -> None:
        """Train epochs ``epoch + 1 .. train.n_epochs``, each followed by the hooks' ``after_epoch``.

        Raises:
            RuntimeError: the run has no training data or learner (it only evaluates).
        """
        if self.learner is None or self.data.train is None:
            raise RuntimeError("this run only evaluates: it has no training data or learner")
        self.ddp = wrap_ddp(self.model, self.ctx)
        self._micro = self._micro_batch_steps()
        if self.ctx.is_main:
            self._epoch_log = TabLogger(self.result_path / "train.log", ["epoch", "loss", "lr"])
            self._batch_log = TabLogger(self.result_path / "train_batch.log", ["epoch", "batch", "iter", "loss", "lr"])
        try:
            for hook in self.hooks:
                hook.before_train()
            while self.epoch < self.cfg.train.n_epochs:
                self.train_epoch()
                for hook in self.hooks:
                    hook.after_epoch()
            for hook in self.hooks:
                hook.after_train()
        finally:
            for log in (self._epoch_log, self._batch_log):
                if log is not None:
                    log.close()

    def train_epoch(self) -> EpochStats:
        """Train the next epoch, then record it (summary, ``train.log``, TensorBoard, the log).

        Its data order and augmentations follow from (seed, epoch) only, so that a resumed epoch
        replays them; its epoch-level scalars go at the global step reached at its end.
        """
        train = self.data.train
        self.epoch += 1
        for share in train.shares:  # every rank's sampler and loader generator: the same seeds on each
            share.sampler.set_epoch(self.epoch)
            share.loader.generator.manual_seed(self.cfg.manual_seed * 100_003 + self.epoch)
        if self._micro is None:
            stats = train_one_epoch(self.ctx, self.ddp, self.learner, train.loader, self.epoch, self._batch_log,
                                    self._after_step)
        else:
            run_step, steps = self._micro
            stats = train_one_epoch(self.ctx, self.ddp, self.learner, steps, self.epoch, self._batch_log,
                                    self._after_step, run_step=run_step)
        self.step = global_step(self.epoch, stats.iterations, stats.iterations)
        self.summary.epochs.append(dict(stats.__dict__))
        if self.ctx.is_main:
            self._epoch_log.log({"epoch": self.epoch, "loss": stats.loss, "lr": stats.lr})
            self.ctx.writer.add_scalar("train/epoch_loss", stats.loss, self.step)
            logger.info("epoch %d/%d: loss %.4f, lr %.6f, %.1f s", self.epoch, self.cfg.train.n_epochs, stats.loss,
                        stats.lr, stats.seconds)
        return stats

    def _micro_batch_steps(self) -> tuple[MicroBatchStep, MicroBatchEpoch] | None:
        """The step over several micro-batches and its epoch, when the layout asks for them (else None)."""
        train = self.data.train
        layout = train.layout
        if layout is None or layout.plain:
            return None
        streams = RankStreams(layout.ranks, self._rank_rng)
        if self.ctx.is_main:
            logger.info("each optimiser step: %d micro-batch(es) per process, ranks %d..%d of %d on process 0 "
                        "(%d process(es)), %d step(s) per epoch", layout.micro_batches, layout.ranks[0],
                        layout.ranks[-1], layout.world_size, layout.processes, train.steps_per_epoch)
        step = MicroBatchStep(self.ctx, self.ddp, self.learner, layout, streams)
        return step, MicroBatchEpoch(layout, [share.loader for share in train.shares])

    def rng_states(self) -> list[RngState]:
        """The generator states of every rank this process plays, in rank order (its own first)."""
        if self._micro is None:
            return [capture_rng()]
        run_step, _ = self._micro
        return run_step.streams.states()

    def _after_step(self, epoch: int, iteration: int) -> None:
        self.iteration = iteration
        self.step = global_step(epoch, iteration + 1, self.data.train.steps_per_epoch)
        for hook in self.hooks:
            hook.after_step()

    def evaluate(self) -> dict | None:
        """Evaluate the current weights on the val split: ``predict_epoch{epoch}.csv``, then its mAP.

        While training, every rank evaluates with rank 0's buffers (the checkpoint's), unless
        ``rank_local_eval`` asks for the original's rank-local BN statistics. Rank 0 scores the file
        and records the figures in the summary; every rank waits for it.

        Returns:
            Rank 0's figures (None on other ranks).
        """
        val = self.data.val
        predict_path = self.result_path / f"predict_epoch{self.epoch}.csv"
        shared = not (self.cfg.evaluate or self.cfg.rank_local_eval)
        own = dist_utils.broadcast_buffers_from_main(self.model) if shared else None
        figures = run_evaluation_pass(self.ctx, self.model, val.loader, predict_path, val.class_ids,
                                      with_label=self.cfg.val.with_label, element_ranks=val.element_ranks)
        dist_utils.restore_buffers(self.model, own)
        if figures is not None:
            figures.update(score_epoch(self.cfg, self.scoring, predict_path, self.epoch, self.ctx.writer, self.step,
                                       figures.get("val_loss"), val.boxes))
            self.summary.evaluations.append({"epoch": self.epoch, **figures})
        dist_utils.barrier()
        return figures

    def write_summary(self) -> None:
        """Rank 0: write ``run_summary.json``, merged with what earlier runs in the folder recorded."""
        if self.ctx.is_main:
            write_summary(self.result_path, self.summary.__dict__, self.begin_epoch)

    def finish(self, start_time: float) -> RunSummary | None:
        """Close TensorBoard and write the final summary; returns it on rank 0 (None elsewhere).

        Args:
            start_time: ``time.perf_counter()`` when the process started the run.
        """
        self.ctx.writer.close()
        self.summary.seconds["total"] = time.perf_counter() - start_time
        self.write_summary()
        return self.summary if self.ctx.is_main else None
