"""The loops' conventions: one TensorBoard axis (the global step), tqdm-safe logging, and logging set-up
that leaves other handlers alone."""
from __future__ import annotations

import io
import logging
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.distributed as dist
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from torch import nn
from tqdm.contrib.logging import _TqdmLoggingHandler

from common.cli import OWNED_HANDLER
from datasets.sampler import RankSliceSampler
from engine.context import EvalData, Learner, RunContext, RunData, TrainData, global_step
from engine.distributed import DistInfo
from engine.hooks import default_hooks
from engine.logs import batch_progress, create_tensorboard_writer, setup_logging
from engine.scheduler import StepLRScheduler
from engine.train_loop import train_one_epoch
from engine.trainer import StartPoint, Trainer
from models.model import TrainOutput
from structures.batch import ClipView, Keyframes, TrainBatch

ROOT = Path(__file__).resolve().parents[1]


class _TinyModel(nn.Module):
    """Stands in for the DDP-wrapped AVAModel: one linear layer over each clip's 4 features, one RoI per clip."""

    def __init__(self, on_forward=None) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.on_forward = on_forward

    def forward(self, batch: TrainBatch) -> TrainOutput:
        if self.on_forward is not None:
            self.on_forward()
        # Multi-hot targets over 3 classes from each clip's one box.
        targets = torch.zeros(len(batch.keyframes), 3)
        for row, labels in enumerate(batch.keyframes.labels):
            targets[row, labels[0]["label"]] = 1.0
        return TrainOutput(self.linear(batch.view.clips), targets)


def _batch(clips: torch.Tensor, positive: list[bool]) -> TrainBatch:
    """Clips ``[B, 4]``, one box each, whose targets are all ones (``positive[b]``) or all zeros."""
    count = clips.shape[0]
    labels = [[{"bounding_box": [0.0, 0.0, 1.0, 1.0], "label": [0, 1, 2] if yes else [], "person_id": [0]}]
              for yes in positive]
    aug = [{"crop_box": [0.0, 0.0, 1.0, 1.0], "flip": False, "pad_ratio": [1.0, 1.0]}] * count
    return TrainBatch(ClipView(clips, aug), Keyframes(labels, ["v"] * count, ["0"] * count, list(range(count))))


def _batches(count: int) -> list[TrainBatch]:
    generator = torch.Generator().manual_seed(0)
    return [_batch(torch.randn(2, 4, generator=generator), [i % 2 == 1] * 2) for i in range(count)]


def _learner(model: nn.Module) -> Learner:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    return Learner(nn.functional.binary_cross_entropy_with_logits, optimizer,
                   StepLRScheduler(optimizer, base_lr=0.1, warmup_lr=0.1, warmup_steps=0, milestones=[], lr_mults=[]))


def _scalars(tb: Path) -> dict[str, list[int]]:
    events = EventAccumulator(str(tb))
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_global_step_is_the_iterations_done() -> None:
    assert global_step(1, 0, 5) == 0
    assert global_step(3, 2, 5) == 12
    assert global_step(2, 5, 5) == 10  # the end of epoch 2


def test_training_scalars_are_written_at_the_global_step(tmp_path: Path) -> None:
    writer = create_tensorboard_writer(tmp_path, is_main=True)
    ctx = RunContext(DistInfo(), writer=writer, print_freq=2)
    model = _TinyModel()
    learner = _learner(model)
    loader = _batches(5)
    for epoch in (1, 2):
        stats = train_one_epoch(ctx, model, learner, loader, epoch)
        assert stats.iterations == 5 and stats.skipped == 0
    writer.close()
    scalars = _scalars(tmp_path / "tb")
    # print_freq 2 over 5 iterations: after iterations 2 and 4 of each epoch, counted across epochs.
    assert scalars["train/loss"] == [2, 4, 7, 9]
    assert scalars["lr"] == [2, 4, 7, 9]
    assert learner.scheduler.last_iter == global_step(2, 4, 5)


def test_on_iteration_gets_the_epoch_and_the_iteration() -> None:
    seen = []
    model = _TinyModel()
    train_one_epoch(RunContext(DistInfo()), model, _learner(model), _batches(3), 4,
                    on_iteration=lambda epoch, i: seen.append((epoch, i)))
    assert seen == [(4, 0), (4, 1), (4, 2)]


def _console_handlers() -> list[logging.Handler]:
    return [h for h in logging.getLogger().handlers
            if isinstance(h, logging.StreamHandler) and h.stream in (sys.stdout, sys.stderr)]


def test_logging_inside_the_training_loop_goes_through_tqdm(tmp_path: Path) -> None:
    setup_logging(tmp_path, is_main=True)
    inside: list[list[type]] = []

    def record() -> None:
        inside.append([type(h) for h in _console_handlers()])

    try:
        model = _TinyModel(record)
        train_one_epoch(RunContext(DistInfo()), model, _learner(model), _batches(2), 1)
        after = [type(h) for h in _console_handlers()]
    finally:
        _remove_own_handlers()
    # During the bar the console handler is tqdm's (tqdm.write keeps the bar); afterwards ours again.
    assert inside == [[_TqdmLoggingHandler]] * 2
    assert after == [logging.StreamHandler]


def test_batch_progress_redirects_console_logging_and_restores_it(tmp_path: Path) -> None:
    setup_logging(tmp_path, is_main=True)
    try:
        before = list(logging.getLogger().handlers)
        with batch_progress([1, 2], "x", enabled=False) as bar:
            assert list(bar) == [1, 2]
            assert [type(h) for h in _console_handlers()] == [_TqdmLoggingHandler]
        assert logging.getLogger().handlers == before
    finally:
        _remove_own_handlers()


def _remove_own_handlers() -> None:
    root = logging.getLogger()
    for handler in [h for h in root.handlers if getattr(h, OWNED_HANDLER, False)]:
        root.removeHandler(handler)
        handler.close()


def test_setup_logging_keeps_handlers_it_did_not_install(tmp_path: Path,
                                                         caplog: pytest.LogCaptureFixture) -> None:
    root = logging.getLogger()
    level = root.level
    user = logging.StreamHandler(io.StringIO())
    root.addHandler(user)
    try:
        setup_logging(tmp_path / "a", is_main=True)
        first = [h for h in root.handlers if getattr(h, OWNED_HANDLER, False)]
        setup_logging(tmp_path / "b", is_main=True)  # a second run in the same process
        second = [h for h in root.handlers if getattr(h, OWNED_HANDLER, False)]
        assert user in root.handlers and caplog.handler in root.handlers
        assert len(first) == len(second) == 2 and not set(first) & set(second)
        assert all(h not in root.handlers for h in first)
        logging.getLogger("engine.test").info("reaches every handler")
        assert "reaches every handler" in user.stream.getvalue()
        assert "reaches every handler" in caplog.text
        assert "reaches every handler" in (tmp_path / "b" / "log.txt").read_text()
        assert "reaches every handler" not in (tmp_path / "a" / "log.txt").read_text()
    finally:
        root.removeHandler(user)
        _remove_own_handlers()
        root.setLevel(level)


# What main.py does in one process: the command line's logging setup, then the worker's, in the same
# process (common.cli.run_main, engine.launch.run, engine.runner._run). Run in a fresh interpreter:
# pytest's own handlers on the root logger would hide a second console handler.
_ONE_PROCESS_LAYOUT = """
import logging
from common.cli import setup_logging as setup_cli
from engine.logs import setup_logging as setup_run
setup_cli()
logging.getLogger("tests.cli").info("launcher line")
setup_cli()
setup_run({result!r}, is_main=True)
logging.getLogger("tests.run").info("worker line")
setup_run({result!r}, is_main=True)
logging.getLogger("tests.run").info("second run line")
"""


def test_every_line_is_printed_once_when_the_worker_runs_in_the_launchers_process(tmp_path: Path) -> None:
    code = _ONE_PROCESS_LAYOUT.format(result=str(tmp_path / "run"))
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    for message in ("launcher line", "worker line", "second run line"):
        assert sum(message in line for line in lines) == 1, done.stderr
    log = (tmp_path / "run" / "log.txt").read_text()
    assert log.count("worker line") == 1 and log.count("second run line") == 1


class _Rows(torch.utils.data.Dataset):
    """Single clips of 4 features, each with its target (the first clip of each of ``_batches``)."""

    def __init__(self, count: int) -> None:
        self.rows = _batches(count)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, bool]:
        batch = self.rows[index]
        return batch.view.clips[0], bool(batch.keyframes.labels[0][0]["label"])


def _collate(rows: list[tuple[torch.Tensor, bool]]) -> TrainBatch:
    return _batch(torch.stack([clip for clip, _ in rows]), [positive for _, positive in rows])


class _RecordingTrainer(Trainer):
    """A Trainer whose evaluation only records the epoch and step of the weights it would evaluate."""

    evaluated: list[tuple[int, int]]

    def evaluate(self) -> None:
        self.evaluated.append((self.epoch, self.step))


def test_epoch_scalars_and_evaluations_are_at_the_step_reached_at_the_end_of_the_epoch(tmp_path: Path) -> None:
    dist.init_process_group("gloo", init_method=f"file://{tmp_path / 'pg'}", rank=0, world_size=1)
    try:
        dataset = _Rows(6)
        sampler = RankSliceSampler(len(dataset), 1, 0, round_down=True)
        loader = torch.utils.data.DataLoader(dataset, batch_size=2, sampler=sampler, drop_last=True,
                                             collate_fn=_collate, generator=torch.Generator())
        cfg = SimpleNamespace(result_path=str(tmp_path / "run"), manual_seed=1, evaluate=False,
                              train=SimpleNamespace(n_epochs=2, save_freq=2, val_freq=1))
        writer = create_tensorboard_writer(tmp_path / "run", is_main=True)
        evaluated: list[tuple[int, int]] = []
        model = _TinyModel()
        data = RunData(TrainData(dataset, sampler, loader), EvalData(dataset, []))
        trainer = _RecordingTrainer(cfg, RunContext(DistInfo(), writer=writer, print_freq=3), model, data,
                                    _learner(model), StartPoint(), scoring=None)
        trainer.evaluated = evaluated
        trainer.register_hooks(default_hooks(cfg.train))
        trainer.train()
        writer.close()
    finally:
        dist.destroy_process_group()
    # 3 iterations per epoch: epoch e ends at global step 3e, where its loss and evaluation go.
    assert evaluated == [(1, 3), (2, 6)]
    steps = _scalars(tmp_path / "run" / "tb")
    assert steps["train/epoch_loss"] == [3, 6]
    assert steps["train/loss"] == steps["lr"] == [3, 6]
    assert (tmp_path / "run" / "ckpt_2.pth.tar").is_file()
