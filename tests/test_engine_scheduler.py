"""The original's step / cosine lr schedules: golden values (docs/numerics.md §9), quirks 12-14, state."""
from __future__ import annotations

import math

import pytest
import torch

from config import OptimizerConfig, SchedulerConfig
from engine.scheduler import (
    OPTIMIZERS,
    CosineLRScheduler,
    StepLRScheduler,
    build_optimizer,
    build_scheduler,
)

# The shipped train config's schedule.
STEP = SchedulerConfig(type="step", base_lr=0.008, warmup_lr=0.064, warmup_epochs=1,
                       milestone_epochs=(5.6, 5.8), lr_mults=(0.1, 0.1))


def _sgd(lr: float = 0.008, groups: int = 1) -> torch.optim.SGD:
    params = [{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": lr * (g + 1)} for g in range(groups)]
    return torch.optim.SGD(params, lr=lr, momentum=0.9)


def _lr_at(scheduler: StepLRScheduler | CosineLRScheduler, curr_iter: int) -> float:
    scheduler.step(curr_iter)
    return scheduler.optimizer.param_groups[0]["lr"]


def test_step_schedule_golden_values_e100() -> None:
    scheduler = build_scheduler(STEP, _sgd(), iters_per_epoch=100, n_epochs=12)
    expected = {0: 0.008, 50: 0.036, 99: 0.06344, 100: 0.064, 559: 0.064, 560: 0.0064, 579: 0.0064,
                580: 0.00064, 1199: 0.00064}
    for curr_iter, lr in expected.items():
        assert _lr_at(scheduler, curr_iter) == pytest.approx(lr, rel=1e-12, abs=0), curr_iter
    assert scheduler.milestones == [560, 580] and scheduler.warmup_steps == 100
    assert scheduler.lr_mults == [1.0, 0.1, 0.010000000000000002]


def test_state_dict_is_the_original_attribute_dict() -> None:
    optimizer = _sgd()
    scheduler = build_scheduler(STEP, optimizer, iters_per_epoch=100, n_epochs=12)
    scheduler.step(1234)
    assert scheduler.state_dict() == {
        "base_lr": 0.008, "warmup_steps": 100, "warmup_lr": 0.064, "base_lrs": [0.008], "last_iter": 1234,
        "milestones": [560, 580], "lr_mults": [1.0, 0.1, 0.010000000000000002]}
    assert optimizer.param_groups[0]["initial_lr"] == 0.008
    cosine = build_scheduler(SchedulerConfig(type="cosine", base_lr=0.01, warmup_lr=0.1, warmup_epochs=0,
                                             min_lr=0.0), _sgd(0.01), iters_per_epoch=10, n_epochs=3)
    assert set(cosine.state_dict()) == {"base_lr", "warmup_steps", "warmup_lr", "base_lrs", "last_iter",
                                        "T_max", "eta_min"}
    assert cosine.state_dict()["T_max"] == 30


def test_milestones_truncate_float_epochs_quirk_12() -> None:
    assert 5.6 * 45 < 252  # 251.99999999999997 (an example that rounds: 5.6 x 5 is exactly 28.0)
    scheduler = build_scheduler(STEP, _sgd(), iters_per_epoch=45, n_epochs=12)
    assert scheduler.milestones == [251, 261] and scheduler.warmup_steps == 45
    assert _lr_at(scheduler, 250) == pytest.approx(0.064) and _lr_at(scheduler, 251) == pytest.approx(0.0064)


def test_resume_restores_old_milestones_quirk_13_unless_recompute() -> None:
    saved = build_scheduler(STEP, _sgd(), iters_per_epoch=100, n_epochs=12)
    saved.step(700)
    state = saved.state_dict()
    # Resumed with twice as many processes: 50 iterations per epoch now.
    faithful = build_scheduler(STEP, _sgd(), iters_per_epoch=50, n_epochs=12)
    faithful.load_state_dict(state)
    assert faithful.milestones == [560, 580] and faithful.warmup_steps == 100 and faithful.last_iter == 700
    fixed = build_scheduler(STEP, _sgd(), iters_per_epoch=50, n_epochs=12)
    fixed.load_state_dict(state, recompute=True)
    assert fixed.milestones == [280, 290] and fixed.warmup_steps == 50 and fixed.last_iter == 700
    state["milestones"].append(9)  # the loaded lists are copies
    assert faithful.milestones == [560, 580]


def test_state_of_another_type_is_rejected() -> None:
    step = build_scheduler(STEP, _sgd(), iters_per_epoch=10, n_epochs=2)
    cosine = CosineLRScheduler(_sgd(), 0.008, 0.064, 10, T_max=20, eta_min=0.0)
    with pytest.raises(ValueError, match=r"unexpected scheduler state keys \['T_max', 'eta_min'\]"):
        step.load_state_dict(cosine.state_dict())


def test_cosine_schedule() -> None:
    cfg = SchedulerConfig(type="cosine", base_lr=0.008, warmup_lr=0.064, warmup_epochs=1, min_lr=0.0001)
    scheduler = build_scheduler(cfg, _sgd(), iters_per_epoch=10, n_epochs=5)
    assert _lr_at(scheduler, 0) == pytest.approx(0.008)
    assert _lr_at(scheduler, 5) == pytest.approx(0.036)
    assert _lr_at(scheduler, 10) == pytest.approx(0.064)  # end of warm-up = peak
    mid = 0.0001 + (0.064 - 0.0001) * (1 + math.cos(math.pi * 0.5)) / 2
    assert _lr_at(scheduler, 30) == pytest.approx(mid)  # half-way through 10..50
    assert _lr_at(scheduler, 50) == pytest.approx(0.0001)


def test_groups_keep_their_ratio_and_warmup_zero() -> None:
    optimizer = _sgd(0.01, groups=2)  # group lrs 0.01 and 0.02
    scheduler = StepLRScheduler(optimizer, base_lr=0.01, warmup_lr=0.04, warmup_steps=0,
                                milestones=[3], lr_mults=[0.5])
    scheduler.step(0)
    assert scheduler.get_lr() == pytest.approx([0.04, 0.08])
    scheduler.step(3)
    assert scheduler.get_lr() == pytest.approx([0.02, 0.04])


def test_bad_scheduler_arguments() -> None:
    with pytest.raises(ValueError, match="2 milestones but 1 lr_mults"):
        StepLRScheduler(_sgd(), 0.01, 0.1, 0, milestones=[1, 2], lr_mults=[0.1])
    with pytest.raises(ValueError, match="increasing"):
        StepLRScheduler(_sgd(), 0.01, 0.1, 0, milestones=[5, 2], lr_mults=[0.1, 0.1])
    with pytest.raises(ValueError, match="base_lr must be > 0"):
        StepLRScheduler(_sgd(), 0.0, 0.1, 0, milestones=[], lr_mults=[])


def test_build_optimizer_like_the_original() -> None:
    model = torch.nn.Linear(3, 2)
    optimizer = build_optimizer(OptimizerConfig(type="SGD", kwargs={"momentum": 0.9, "weight_decay": 1e-7,
                                                                    "nesterov": True}), model.parameters(), 0.008)
    assert isinstance(optimizer, torch.optim.SGD)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["momentum"], group["nesterov"], len(group["params"])) == (0.008, 0.9, True, 2)
    with pytest.raises(ValueError, match="unknown optimizer 'Sgd'"):
        build_optimizer(OptimizerConfig(type="Sgd"), model.parameters(), 0.1)
    assert all(issubclass(cls, torch.optim.Optimizer) for cls in OPTIMIZERS.values())
