"""Virtual ranks and accumulation in one process: the layout and its errors, the random streams, the kept
buffers, and the arithmetic of a step over several micro-batches (end-to-end runs: test_virtual_ranks_e2e.py)."""
from __future__ import annotations

import random
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from config import ConfigError, from_dict
from engine.accumulation import MicroBatchEpoch, MicroBatchStep
from engine.context import Learner, RunContext
from engine.distributed import DistInfo
from engine.plan import make_plan
from engine.preflight import check_training_batches
from engine.scheduler import StepLRScheduler
from engine.virtual_ranks import RankLayout, RankStreams, kept_buffers, rank_layout
from models.model import TrainOutput
from structures.batch import ClipView, Keyframes, TrainBatch

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "configs" / "tiny_cpu_synthetic.yaml"


def _tiny(**train: object) -> object:
    raw = yaml.safe_load(TINY.read_text())
    raw["train"].update(train)
    rank_local_eval = raw["train"].pop("rank_local_eval", None)
    if rank_local_eval is not None:
        raw["rank_local_eval"] = rank_local_eval
    return from_dict(raw, "tiny.yaml")


def test_each_process_plays_a_contiguous_block_of_ranks() -> None:
    layout = RankLayout(world_size=4, processes=2, rank=1, accumulate=3)
    assert list(layout.ranks) == [2, 3] and layout.per_process == 2
    assert layout.micro_batches == 6 and layout.gradient_scale == 0.5 and not layout.plain
    assert RankLayout(2, 2, 0).plain and list(RankLayout(2, 2, 1).ranks) == [1]
    assert list(rank_layout(_tiny(virtual_world_size=4), 1).ranks) == [0, 1, 2, 3]
    assert rank_layout(_tiny(), 3, 2) == RankLayout(3, 3, 2, 1)  # absent: the real world size


@pytest.mark.parametrize(("train", "processes", "problem"), [
    ({"virtual_world_size": 3}, 2, "3 ranks cannot be shared evenly by 2 processes"),
    ({"virtual_world_size": 1}, 2, "1 ranks cannot be played by 2 processes"),
    ({"virtual_world_size": 4, "rank_local_eval": True}, 2,
     "4 ranks on 2 processes cannot evaluate with rank_local_eval"),
])
def test_a_layout_that_cannot_run_is_a_config_error_of_the_plan(train: dict, processes: int, problem: str) -> None:
    with pytest.raises(ConfigError, match=r"^tiny\.yaml: train\.virtual_world_size: " + problem):
        make_plan(_tiny(**train), world_size=processes)


def test_virtual_ranks_equal_to_the_processes_keep_rank_local_eval() -> None:
    assert make_plan(_tiny(virtual_world_size=2, rank_local_eval=True), world_size=2).train is not None


@pytest.mark.parametrize(("key", "value"), [("virtual_world_size", 0), ("accumulate", 0)])
def test_counts_below_one_are_schema_errors(key: str, value: int) -> None:
    with pytest.raises(ConfigError, match=rf"^tiny\.yaml: train\.{key}: must be >= 1, found {value}$"):
        _tiny(**{key: value})


def test_main_refuses_a_world_size_the_processes_cannot_play_before_spawning() -> None:
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--config", str(TINY), "--nproc_per_node", "2",
                           "--backend", "gloo", "--set", "train.virtual_world_size=3"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr[-2000:]
    assert done.stderr.count("error: ") == 1 and "Traceback" not in done.stderr
    assert "tiny_cpu_synthetic.yaml: train.virtual_world_size: 3 ranks cannot be shared evenly by 2" in done.stderr


def test_preflight_counts_batches_per_virtual_rank_and_steps_per_accumulation() -> None:
    with pytest.raises(ConfigError, match=r"train\.batch_size: 4 per rank x 8 rank\(s\) \(train\.virtual_world_size\) "
                                          r"needs at least 32 training elements"):
        check_training_batches(_tiny(virtual_world_size=8), train_elements=20, world_size=2)
    with pytest.raises(ConfigError, match=r"train\.accumulate: 3 batches per optimiser step, but each of the 2 "
                                          r"rank\(s\) gets 2 batch\(es\) of 4"):
        check_training_batches(_tiny(accumulate=3), train_elements=17, world_size=2)
    check_training_batches(_tiny(accumulate=2, virtual_world_size=2), train_elements=16, world_size=1)


def _draws() -> tuple[torch.Tensor, float, float]:
    return torch.rand(3), float(np.random.rand()), random.random()


def _seed() -> None:
    torch.manual_seed(5)
    np.random.seed(5)
    random.seed(5)


def test_each_played_rank_draws_its_own_stream_from_the_common_start() -> None:
    _seed()
    streams = RankStreams(range(2))
    with streams.playing(1):
        first_of_1 = _draws()
    second_of_0 = (_draws(), _draws())[1]  # rank 0's own stream lives in the globals
    with streams.playing(1):
        second_of_1 = _draws()
    after = _draws()
    _seed()
    reference = [_draws() for _ in range(3)]
    for got, want in ((first_of_1, reference[0]), (second_of_1, reference[1]), (second_of_0, reference[1]),
                      (after, reference[2])):
        assert torch.equal(got[0], want[0]) and got[1:] == want[1:]
    assert len(streams.states()) == 2


def test_kept_buffers_drop_another_ranks_running_statistics_but_not_its_batch_statistics() -> None:
    norm = nn.BatchNorm1d(3).train()
    batch = torch.randn(4, 3) * 5 + 2
    before = [buffer.clone() for buffer in norm.buffers()]
    with kept_buffers(norm):
        out_kept = norm(batch)
    assert all(torch.equal(a, b) for a, b in zip(before, norm.buffers()))
    with kept_buffers(norm, keep=False):
        out_own = norm(batch)
    assert torch.equal(out_kept, out_own) and not torch.equal(before[0], norm.running_mean)


@dataclass(frozen=True)
class _Rois:
    keep: list[int]

    @property
    def num_rois(self) -> int:
        return len(self.keep)


class _RoiModel(nn.Module):
    """One RoI per clip that has a box label; logits from a linear layer over the clip's 4 features."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.linear = nn.Linear(4, 3)

    def training_rois(self, batch: TrainBatch) -> _Rois:
        return _Rois([b for b, labels in enumerate(batch.keyframes.labels) if labels[0]["label"]])

    def forward(self, batch: TrainBatch, rois: _Rois | None = None) -> TrainOutput:
        rois = rois or self.training_rois(batch)
        clips = batch.view.clips[rois.keep]
        return TrainOutput(self.linear(clips), torch.ones(len(rois.keep), 3))


def _batch(seed: int, positive: list[bool]) -> TrainBatch:
    clips = torch.randn(len(positive), 4, generator=torch.Generator().manual_seed(seed))
    labels = [[{"bounding_box": [0.0, 0.0, 1.0, 1.0], "label": [1] if yes else [], "person_id": [0]}]
              for yes in positive]
    aug = [{"crop_box": [0.0, 0.0, 1.0, 1.0], "flip": False, "pad_ratio": [1.0, 1.0]}] * len(positive)
    return TrainBatch(ClipView(clips, aug), Keyframes(labels, ["v"] * len(positive), ["0"] * len(positive),
                                                      list(range(len(positive)))))


def _learner(model: nn.Module) -> Learner:
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    scheduler = StepLRScheduler(optimizer, base_lr=0.5, warmup_lr=0.5, warmup_steps=0, milestones=[], lr_mults=[])
    return Learner(nn.functional.binary_cross_entropy_with_logits, optimizer, scheduler)


def _step(layout: RankLayout, per_rank: list[list[TrainBatch]]) -> tuple[_RoiModel, object]:
    model = _RoiModel()
    step = MicroBatchStep(RunContext(DistInfo()), model, _learner(model), layout, RankStreams(layout.ranks))
    epoch = MicroBatchEpoch(layout, per_rank)
    assert len(epoch) == 1
    return model, step(next(iter(epoch)), 0)


def test_a_step_over_micro_batches_takes_the_mean_over_every_roi_of_every_rank() -> None:
    # Rank 0: 3 RoIs; rank 1: 1 RoI. DDP's mean over the W ranks of BCE x n_rank / n_total x W is the
    # BCE over all 4 RoIs: what one batch of all of them gives.
    rank0, rank1 = _batch(1, [True, True, True]), _batch(2, [False, True])
    model, result = _step(RankLayout(2, 1, 0), [[rank0], [rank1]])
    reference = _RoiModel()
    clips = torch.cat([rank0.view.clips, rank1.view.clips[1:]])
    loss = nn.functional.binary_cross_entropy_with_logits(reference.linear(clips), torch.ones(4, 3))
    loss.backward()
    with torch.no_grad():
        for param in reference.parameters():
            param -= 0.5 * param.grad
    assert result.rois == 4 and result.loss == pytest.approx(2 * loss.item(), rel=1e-6)  # W x the mean (quirk 8)
    for got, want in zip(model.parameters(), reference.parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_plain_accumulation_is_the_same_step_from_one_rank() -> None:
    rank0, rank1 = _batch(1, [True, True, True]), _batch(2, [False, True])
    virtual, by_rank = _step(RankLayout(2, 1, 0), [[rank0], [rank1]])
    accumulated, result = _step(RankLayout(1, 1, 0, accumulate=2), [[rank0, rank1]])
    assert result.rois == 4
    for got, want in zip(accumulated.parameters(), virtual.parameters()):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)
    assert result.loss == pytest.approx(by_rank.loss / 2, rel=1e-6)  # the real world size (1) x the mean


def test_a_step_without_any_roi_is_skipped_and_learns_nothing() -> None:
    model, result = _step(RankLayout(2, 1, 0), [[_batch(1, [False])], [_batch(2, [False, False])]])
    assert result is None
    untouched = _RoiModel()
    assert all(torch.equal(a, b) for a, b in zip(model.parameters(), untouched.parameters()))


class _Elements(torch.utils.data.Dataset):
    """Stands in for the AVA dataset: only its length matters to the sampler and the loader."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        pass

    def __len__(self) -> int:
        return 15_027  # the published training pkl (cw_data_train1fps_woXGXJVBCQ.pkl)


def test_one_process_playing_3_ranks_has_the_published_runs_1669_iterations_per_epoch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # The released log of the 42.28% run: 1,669 iterations per epoch = floor(floor(15027 / 3) / 3).
    import engine.runner as runner

    monkeypatch.setattr(runner, "AVADataset", _Elements)
    cfg = _tiny(virtual_world_size=3, batch_size=3)
    layout = rank_layout(cfg, 1)
    data = runner._train_data(make_plan(cfg, world_size=1), DistInfo(), layout)
    assert data.steps_per_epoch == 1669 and len(data.shares) == 3
    slices = [set(share.sampler.indices()) for share in data.shares]
    assert [len(s) for s in slices] == [5009] * 3 and not (slices[0] & slices[1] or slices[1] & slices[2])
    assert [(share.sampler.rank, share.sampler.num_replicas) for share in data.shares] == [(0, 3), (1, 3), (2, 3)]
