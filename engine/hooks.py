"""What a training run does after its epochs besides training: checkpoint, evaluate, write the summary.

``default_hooks`` lists them in the order they run, the original's: the checkpoint of an epoch
before its evaluation, and the summary after both, so that it holds the epoch's evaluation too.
"""
from __future__ import annotations

from config import TrainConfig
from engine import distributed as dist_utils
from engine.checkpoint import checkpoint_path, save_checkpoint
from engine.context import IterationHook
from engine.trainer import HookBase


def _due(epoch: int, freq: int, n_epochs: int) -> bool:
    """Every ``freq`` epochs, and after the last one (the original's rule for saving and validating)."""
    return epoch % freq == 0 or epoch == n_epochs


class CheckpointHook(HookBase):
    """Saves ``ckpt_{epoch}.pth.tar`` every ``save_freq`` epochs and after the last, with every rank's RNG state.

    The summary is written first: a run resumed from this checkpoint must find the epoch recorded.
    """

    def __init__(self, save_freq: int, n_epochs: int) -> None:
        self.save_freq, self.n_epochs = save_freq, n_epochs

    def after_epoch(self) -> None:
        trainer = self.trainer
        if not _due(trainer.epoch, self.save_freq, self.n_epochs):
            return
        # Each rank's generators, so that a resume continues every rank's random stream; a process
        # playing several ranks (virtual ranks) gives each one's, so the list has W entries either way.
        gathered = dist_utils.gather_objects_to_main(trainer.rng_states())
        rng_states = None if gathered is None else [state for states in gathered for state in states]
        if trainer.ctx.is_main:
            trainer.write_summary()
            learner = trainer.learner
            path = save_checkpoint(checkpoint_path(trainer.result_path, trainer.epoch), trainer.epoch, trainer.ddp,
                                   learner.optimizer, learner.scheduler, extra={"rng_per_rank": rng_states})
            trainer.summary.checkpoints.append(str(path))
        dist_utils.barrier()


class EvalHook(HookBase):
    """Evaluates the epoch's weights every ``val_freq`` epochs and after the last (``Trainer.evaluate``)."""

    def __init__(self, val_freq: int, n_epochs: int) -> None:
        self.val_freq, self.n_epochs = val_freq, n_epochs

    def after_epoch(self) -> None:
        if _due(self.trainer.epoch, self.val_freq, self.n_epochs):
            self.trainer.evaluate()


class SummaryHook(HookBase):
    """Writes the run summary after every epoch, so that a killed run leaves its record for the resume."""

    def after_epoch(self) -> None:
        self.trainer.write_summary()


class IterationCallback(HookBase):
    """Calls ``callback(epoch, iteration)`` after each optimiser step (tests simulate a crash with it)."""

    def __init__(self, callback: IterationHook) -> None:
        self.callback = callback

    def after_step(self) -> None:
        self.callback(self.trainer.epoch, self.trainer.iteration)


def default_hooks(train: TrainConfig, on_iteration: IterationHook | None = None) -> list[HookBase]:
    """The hooks of a training run, in order: checkpoint, evaluation, summary (then ``on_iteration``'s).

    Args:
        train: the config's ``train`` section (``save_freq``, ``val_freq``, ``n_epochs``).
        on_iteration: called with ``(epoch, iteration)`` after each optimiser step, if given.
    """
    hooks: list[HookBase] = [CheckpointHook(train.save_freq, train.n_epochs), EvalHook(train.val_freq, train.n_epochs),
                             SummaryHook()]
    if on_iteration is not None:
        hooks.append(IterationCallback(on_iteration))
    return hooks
