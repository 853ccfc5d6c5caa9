"""Checkpoints: original layout with module. keys, atomic saves that survive a crash, RNG, resume paths."""
from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import torch

from config import SchedulerConfig
from engine import checkpoint as ckpt
from engine.scheduler import build_scheduler


def _parts(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer, object]:
    torch.manual_seed(seed)
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.008, momentum=0.9)
    model(torch.randn(5, 4)).sum().backward()
    optimizer.step()
    cfg = SchedulerConfig(type="step", base_lr=0.008, warmup_lr=0.064, warmup_epochs=1,
                          milestone_epochs=(5.6, 5.8), lr_mults=(0.1, 0.1))
    scheduler = build_scheduler(cfg, optimizer, iters_per_epoch=10, n_epochs=12)
    scheduler.step(17)
    return model, optimizer, scheduler


def _load(path: Path) -> dict:
    # models.weights.load_model_checkpoint is the engine's loader; the test reads the file directly.
    return torch.load(path, map_location="cpu", weights_only=True)


def test_round_trip_keys_and_module_prefix(tmp_path: Path) -> None:
    model, optimizer, scheduler = _parts()
    path = ckpt.save_checkpoint(ckpt.checkpoint_path(tmp_path, 3), 3, model, optimizer, scheduler,
                                extra={"global_iter": 30})
    assert path == tmp_path / "ckpt_3.pth.tar"
    states = _load(path)  # weights_only=True works: nothing but plain types and tensors
    assert list(states) == ["epoch", "state_dict", "optimizer", "scheduler", "rng", "extra"]
    assert states["epoch"] == 3 and states["extra"] == {"global_iter": 30}
    assert sorted(states["state_dict"]) == sorted("module." + k for k in model.state_dict())
    for key, value in model.state_dict().items():
        assert torch.equal(states["state_dict"]["module." + key], value)
    assert states["scheduler"] == scheduler.state_dict() and states["scheduler"]["last_iter"] == 17
    fresh = torch.optim.SGD(torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).parameters(), lr=1.0)
    fresh.load_state_dict(states["optimizer"])
    assert fresh.param_groups[0]["initial_lr"] == 0.008


def test_ddp_model_keeps_its_prefix(tmp_path: Path) -> None:
    model, _, _ = _parts()
    wrapped = torch.nn.DataParallel(model)  # same 'module.' naming as DDP, no process group needed
    state = ckpt.prefixed_state_dict(wrapped)
    assert sorted(state) == sorted(wrapped.state_dict()) and all(k.startswith("module.") for k in state)
    assert not any(k.startswith("module.module.") for k in state)


def test_empty_optimizer_and_scheduler_for_eval_files(tmp_path: Path) -> None:
    model, _, _ = _parts()
    states = _load(ckpt.save_checkpoint(tmp_path / "m.pth.tar", 12, model, None, None))
    assert states["optimizer"] == {} and states["scheduler"] == {} and states["extra"] == {}


def test_crash_during_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, optimizer, scheduler = _parts()
    path = ckpt.checkpoint_path(tmp_path, 1)
    ckpt.save_checkpoint(path, 1, model, optimizer, scheduler)
    good = path.read_bytes()

    def dying_save(obj: object, handle, *args, **kwargs) -> None:
        handle.write(b"PK\x03\x04 half a checkpoint")
        raise KeyboardInterrupt("killed while saving")

    monkeypatch.setattr(torch, "save", dying_save)
    with torch.no_grad():
        model[0].weight.add_(1.0)
    with pytest.raises(KeyboardInterrupt):
        ckpt.save_checkpoint(path, 2, model, optimizer, scheduler)
    assert path.read_bytes() == good  # the previous file, byte for byte
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt_1.pth.tar"]  # no temp file left
    monkeypatch.undo()
    assert _load(path)["epoch"] == 1


def test_find_latest_checkpoint_ignores_temporaries(tmp_path: Path) -> None:
    assert ckpt.find_latest_checkpoint(tmp_path / "absent") is None
    assert ckpt.find_latest_checkpoint(tmp_path) is None
    for name in ("ckpt_2.pth.tar", "ckpt_10.pth.tar", ".ckpt_11.pth.tar.a1b2.tmp", "ckpt_12.pth.tar.bak",
                 "ckpt_x.pth.tar", "predict_epoch99.csv"):
        (tmp_path / name).write_bytes(b"x")
    (tmp_path / "ckpt_13.pth.tar").mkdir()  # not a file
    assert ckpt.find_latest_checkpoint(tmp_path) == tmp_path / "ckpt_10.pth.tar"  # numeric, not lexical


def test_resolve_resume_path_original_fallback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "ckpt_4.pth.tar").write_bytes(b"x")
    (tmp_path / "given.pth.tar").write_bytes(b"x")
    assert ckpt.resolve_resume_path("given.pth.tar", "runs", tmp_path) == tmp_path / "given.pth.tar"
    assert ckpt.resolve_resume_path("ckpt_4.pth.tar", "runs", tmp_path) == tmp_path / "runs" / "ckpt_4.pth.tar"
    absolute = tmp_path / "given.pth.tar"
    assert ckpt.resolve_resume_path(absolute, "elsewhere") == absolute
    monkeypatch.chdir(tmp_path)
    assert ckpt.resolve_resume_path("ckpt_4.pth.tar", "runs") == Path("runs/ckpt_4.pth.tar")
    with pytest.raises(FileNotFoundError, match=r"tried ckpt_5.pth.tar and runs/ckpt_5.pth.tar"):
        ckpt.resolve_resume_path("ckpt_5.pth.tar", "runs")


def test_rng_round_trip_through_a_checkpoint(tmp_path: Path) -> None:
    random.seed(1)
    np.random.seed(2)
    torch.manual_seed(3)
    np.random.normal()  # leaves a cached Gaussian in NumPy's state
    model, optimizer, scheduler = _parts(seed=4)
    torch.manual_seed(3)
    path = ckpt.save_checkpoint(tmp_path / "c.pth.tar", 1, model, optimizer, scheduler)
    expected = (random.random(), np.random.normal(), np.random.rand(3).tolist(), torch.rand(3))
    random.seed(99)
    np.random.seed(99)
    torch.manual_seed(99)
    ckpt.restore_rng(_load(path)["rng"])
    got = (random.random(), np.random.normal(), np.random.rand(3).tolist(), torch.rand(3))
    assert got[:3] == expected[:3] and torch.equal(got[3], expected[3])


def test_load_checkpoint_goes_through_models_weights(tmp_path: Path) -> None:
    pytest.importorskip("models.weights")
    import models.weights

    if not hasattr(models.weights, "load_model_checkpoint"):
        pytest.skip("models.weights.load_model_checkpoint not written yet")
    model, optimizer, scheduler = _parts()
    path = ckpt.save_checkpoint(tmp_path / "ckpt_7.pth.tar", 7, model, optimizer, scheduler)
    states = ckpt.load_checkpoint(path)
    assert states["epoch"] == 7 and sorted(states["state_dict"]) == sorted(_load(path)["state_dict"])
