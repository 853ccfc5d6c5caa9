"""Optimizers by name and the original's per-iteration ``step`` / ``cosine`` lr schedules with warm-up."""
from __future__ import annotations

import math
from bisect import bisect_right
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import optim

from config import ConfigError, OptimizerConfig, SchedulerConfig, construct, lookup

# ``train.optimizer.type`` -> torch.optim class (the original looked the name up in torch.optim).
OPTIMIZERS: dict[str, type[optim.Optimizer]] = {
    "SGD": optim.SGD,
    "Adam": optim.Adam,
    "AdamW": optim.AdamW,
    "Adamax": optim.Adamax,
    "NAdam": optim.NAdam,
    "RAdam": optim.RAdam,
    "RMSprop": optim.RMSprop,
    "Adagrad": optim.Adagrad,
    "Adadelta": optim.Adadelta,
    "ASGD": optim.ASGD,
    "Rprop": optim.Rprop,
}


def build_optimizer(cfg: OptimizerConfig, parameters: Iterable[torch.nn.Parameter] | Iterable[dict],
                    base_lr: float) -> optim.Optimizer:
    """``OPTIMIZERS[cfg.type](parameters, lr=base_lr, **cfg.kwargs)``, as the original.

    The original passes ALL model parameters (frozen ones included, so the parameter indices of the
    saved optimizer state match its checkpoints); pass ``model.parameters()`` for the same layout.

    Raises:
        ConfigError: unknown optimizer name, a kwargs key the optimizer does not take (``params`` and
            ``lr`` are the code's) or a value it rejects, naming ``train.optimizer.*``.
    """
    optimizer = lookup(OPTIMIZERS, cfg.type, "train.optimizer.type", kind="optimizer")
    return construct(optimizer, cfg.kwargs, "train.optimizer.kwargs", provided={"params": parameters, "lr": base_lr})


@dataclass(frozen=True)
class OptimizerFactory:
    """``train.optimizer`` with its learning rate, ready to build over a model's parameters (picklable)."""

    config: OptimizerConfig
    base_lr: float

    def __call__(self, parameters: Iterable[torch.nn.Parameter] | Iterable[dict]) -> optim.Optimizer:
        """``build_optimizer`` over ``parameters`` (all of the model's, for the original's layout)."""
        return build_optimizer(self.config, parameters, self.base_lr)


@dataclass(frozen=True)
class SchedulerFactory:
    """``train.scheduler`` with the run's epochs; the iterations per epoch come with the data (picklable)."""

    config: SchedulerConfig
    n_epochs: int

    def __call__(self, optimizer: optim.Optimizer, iters_per_epoch: int) -> StepLRScheduler | CosineLRScheduler:
        """``build_scheduler`` for ``optimizer`` at ``iters_per_epoch`` batches per epoch and process."""
        return build_scheduler(self.config, optimizer, iters_per_epoch, self.n_epochs)


class WarmupScheduler:
    """Base of the original's schedulers: linear warm-up, then a schedule given by a subclass.

    The lr at iteration ``t < warmup_steps`` goes linearly from ``base_lr`` (t = 0) towards
    ``warmup_lr`` (the PEAK lr; docs/numerics.md quirk 14). Every lr is computed as a scale relative to
    ``base_lr`` times each group's ``initial_lr``, as the original, so groups with their own lr
    keep their ratio and single-group values match the original to the last bit.
    """

    _state_keys: tuple[str, ...] = ("base_lr", "warmup_steps", "warmup_lr", "base_lrs", "last_iter")
    # Keys that depend on the number of iterations per epoch (replaced by recompute=True loading).
    _schedule_keys: tuple[str, ...] = ("warmup_steps",)

    def __init__(self, optimizer: optim.Optimizer, base_lr: float, warmup_lr: float, warmup_steps: int) -> None:
        if base_lr <= 0:
            raise ValueError(f"base_lr must be > 0 (lrs are scaled by 1 / base_lr), got {base_lr}")
        self.optimizer = optimizer
        self.base_lr = base_lr
        self.warmup_steps = int(warmup_steps)
        self.warmup_lr = warmup_lr
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
        self.base_lrs = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_iter = -1

    def _scale_after_warmup(self, curr_iter: int) -> float:
        raise NotImplementedError

    def lr_scale(self, curr_iter: int) -> float:
        """Factor applied to each group's ``initial_lr`` at iteration ``curr_iter`` (0-based)."""
        if self.warmup_steps > 0 and curr_iter < self.warmup_steps:
            ramp = curr_iter / self.warmup_steps * (self.warmup_lr - self.base_lr)
            return (ramp + self.base_lr) / self.base_lr
        return self._scale_after_warmup(curr_iter)

    def step(self, curr_iter: int) -> None:
        """Set the lr of every parameter group for global iteration ``curr_iter``.

        The training loop calls it BEFORE the forward pass with ``(epoch - 1) * E + i``
        (E = batches per epoch, i = batch index), as the original.
        """
        self.last_iter = int(curr_iter)
        scale = self.lr_scale(self.last_iter)
        for group, base in zip(self.optimizer.param_groups, self.base_lrs):
            group["lr"] = scale * base

    def get_lr(self) -> list[float]:
        """The current lr of every parameter group."""
        return [group["lr"] for group in self.optimizer.param_groups]

    def state_dict(self) -> dict[str, Any]:
        """The attribute dict the original saves under ``'scheduler'`` (docs/numerics.md §12)."""
        return {key: _copy(getattr(self, key)) for key in self._state_keys}

    def load_state_dict(self, state: Mapping[str, Any], recompute: bool = False) -> None:
        """Restore the attributes saved by ``state_dict``.

        Args:
            state: the checkpoint's ``'scheduler'`` entry.
            recompute: False (default) = the original's plain attribute update: the saved
                milestones / warm-up length / T_max come back even if the number of iterations per
                epoch changed since (docs/numerics.md quirk 13). True = the entries computed from the
                number of iterations per epoch (``_schedule_keys``: warmup_steps, milestones or
                T_max) keep their fresh values; everything else is restored.

        Raises:
            ValueError: the state has keys this scheduler type does not have (e.g. a cosine
                state given to a step scheduler).
        """
        unexpected = sorted(set(state) - set(self._state_keys))
        if unexpected:
            raise ValueError(f"{type(self).__name__}: unexpected scheduler state keys {unexpected}; "
                             f"expected {list(self._state_keys)}")
        for key, value in state.items():
            if not (recompute and key in self._schedule_keys):
                setattr(self, key, _copy(value))


def _copy(value: Any) -> Any:
    return list(value) if isinstance(value, (list, tuple)) else value


class StepLRScheduler(WarmupScheduler):
    """Warm-up, then ``warmup_lr`` times the cumulative product of ``lr_mults`` passed so far.

    Args:
        optimizer: its groups' ``initial_lr`` (set from ``lr`` if absent) scale the schedule.
        base_lr: lr at iteration 0.
        warmup_lr: peak lr, reached at ``warmup_steps``.
        warmup_steps: warm-up length in iterations.
        milestones: increasing iteration numbers at which the lr drops.
        lr_mults: one factor per milestone (the config's form); stored cumulatively with a
            leading 1.0, as the original: ``[0.1, 0.1]`` -> ``[1.0, 0.1, 0.010000000000000002]``.
    """

    _state_keys = WarmupScheduler._state_keys + ("milestones", "lr_mults")
    _schedule_keys = ("warmup_steps", "milestones")

    def __init__(self, optimizer: optim.Optimizer, base_lr: float, warmup_lr: float, warmup_steps: int,
                 milestones: Sequence[int], lr_mults: Sequence[float]) -> None:
        super().__init__(optimizer, base_lr, warmup_lr, warmup_steps)
        if len(milestones) != len(lr_mults):
            raise ValueError(f"{len(milestones)} milestones but {len(lr_mults)} lr_mults")
        if list(milestones) != sorted(milestones):
            raise ValueError(f"milestones must be increasing, got {list(milestones)}")
        self.milestones = [int(m) for m in milestones]
        self.lr_mults = [1.0]
        for factor in lr_mults:
            self.lr_mults.append(self.lr_mults[-1] * factor)

    def _scale_after_warmup(self, curr_iter: int) -> float:
        passed = bisect_right(self.milestones, curr_iter)
        return self.warmup_lr * self.lr_mults[passed] / self.base_lr


class CosineLRScheduler(WarmupScheduler):
    """Warm-up, then a half cosine from ``warmup_lr`` at ``warmup_steps`` to ``eta_min`` at ``T_max``.

    Args:
        optimizer, base_lr, warmup_lr, warmup_steps: as ``StepLRScheduler``.
        T_max: total number of iterations of training (n_epochs x iterations per epoch).
        eta_min: final lr (the config's ``min_lr``).
    """

    _state_keys = WarmupScheduler._state_keys + ("T_max", "eta_min")
    _schedule_keys = ("warmup_steps", "T_max")

    def __init__(self, optimizer: optim.Optimizer, base_lr: float, warmup_lr: float, warmup_steps: int,
                 T_max: int, eta_min: float) -> None:  # noqa: N803 (the original's attribute name)
        super().__init__(optimizer, base_lr, warmup_lr, warmup_steps)
        self.T_max = int(T_max)
        self.eta_min = eta_min

    def _scale_after_warmup(self, curr_iter: int) -> float:
        span = self.T_max - self.warmup_steps
        # A warm-up as long as training leaves no cosine part; the original divided by zero.
        ratio = (curr_iter - self.warmup_steps) / span if span > 0 else 1.0
        target = self.eta_min + (self.warmup_lr - self.eta_min) * (1 + math.cos(math.pi * ratio)) / 2
        return target / self.base_lr


def build_scheduler(cfg: SchedulerConfig, optimizer: optim.Optimizer, iters_per_epoch: int,
                    n_epochs: int) -> StepLRScheduler | CosineLRScheduler:
    """The original's ``get_scheduler``: epochs in the config become iterations.

    ``milestones = int(m * E)`` for each (float) milestone epoch m (so 5.6 x 45 = 251.99999999999997 ->
    251: docs/numerics.md quirk 12, kept), ``warmup_steps = int(warmup_epochs * E)``, and for cosine
    ``T_max = n_epochs * E``, with E = ``iters_per_epoch`` (batches per epoch per process).

    Raises:
        ConfigError: naming the ``train.scheduler`` key whose value the schedule cannot use.
    """
    _check_schedule(cfg)
    E = int(iters_per_epoch)  # noqa: N806 (docs/numerics.md §9)
    warmup_steps = int(cfg.warmup_epochs * E)
    if cfg.type == "step":
        assert cfg.milestone_epochs is not None and cfg.lr_mults is not None  # _check_schedule
        return StepLRScheduler(optimizer, cfg.base_lr, cfg.warmup_lr, warmup_steps,
                               milestones=[int(m * E) for m in cfg.milestone_epochs], lr_mults=cfg.lr_mults)
    assert cfg.min_lr is not None  # _check_schedule
    return CosineLRScheduler(optimizer, cfg.base_lr, cfg.warmup_lr, warmup_steps,
                             T_max=int(n_epochs) * E, eta_min=cfg.min_lr)


def _check_schedule(cfg: SchedulerConfig) -> None:
    """The ``train.scheduler`` values a schedule type needs, as ConfigErrors naming the key."""
    key = "train.scheduler"
    # The original scales every lr by 1 / base_lr, so zero is not allowed.
    if cfg.base_lr <= 0:
        raise ConfigError("", f"{key}.base_lr", f"must be > 0, found {cfg.base_lr}")
    if cfg.warmup_epochs < 0:
        raise ConfigError("", f"{key}.warmup_epochs", f"must be >= 0, found {cfg.warmup_epochs}")
    if cfg.type == "cosine":
        if cfg.min_lr is None:
            raise ConfigError("", f"{key}.min_lr", "missing required key for type 'cosine'")
        return
    for name in ("milestone_epochs", "lr_mults"):
        if getattr(cfg, name) is None:
            raise ConfigError("", f"{key}.{name}", "missing required key for type 'step'")
    milestones, mults = list(cfg.milestone_epochs), list(cfg.lr_mults)
    if len(milestones) != len(mults):
        raise ConfigError("", f"{key}.lr_mults", f"needs one factor per milestone: {len(mults)} factors, "
                          f"{len(milestones)} milestone_epochs")
    if milestones != sorted(milestones):
        raise ConfigError("", f"{key}.milestone_epochs", f"must be increasing, found {milestones}")
