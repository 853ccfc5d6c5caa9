"""The typed batches: what the DataLoader does to them (worker pickling, pinning) and moving them to a device."""
from __future__ import annotations

import pickle

import pytest
import torch
from torch.utils.data._utils.pin_memory import pin_memory as dataloader_pin_memory

from structures.batch import ClipView, EvalBatch, Keyframes, TrainBatch
from structures.vit_stats import VitStats

AUG = {"crop_box": [0.0, 0.0, 1.0, 1.0], "flip": False, "pad_ratio": [1.0, 1.0]}


def _keyframes() -> Keyframes:
    labels = [[{"bounding_box": [0.1, 0.2, 0.5, 0.9], "label": [3], "person_id": [1]}], []]
    return Keyframes(labels, ["vidA", "vidB"], ["902", "17"], [4, 5])


def _view(value: float, stats: bool = False) -> ClipView:
    vit = VitStats(torch.ones(2, 3, 2, 2), torch.ones(2, 3, dtype=torch.float64),
                   torch.ones(2, 3, dtype=torch.float64), 8) if stats else None
    return ClipView(torch.full((2, 3, 4, 8, 8), value), [AUG, {**AUG, "flip": True}], vit)


def test_batches_survive_pickling_as_dataloader_workers_send_them() -> None:
    for batch in (TrainBatch(_view(1.0), _keyframes()), EvalBatch([_view(1.0), _view(2.0)], _keyframes())):
        back = pickle.loads(pickle.dumps(batch))
        assert type(back) is type(batch) and back.keyframes == batch.keyframes
        views = [back.view] if isinstance(back, TrainBatch) else back.views
        originals = [batch.view] if isinstance(batch, TrainBatch) else batch.views
        assert all(torch.equal(a.clips, b.clips) and a.aug_info == b.aug_info for a, b in zip(views, originals))


def test_the_dataloader_pins_every_view_through_the_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pinning needs an accelerator; a stand-in that copies shows which tensors the DataLoader pins.
    pinned: list[torch.Tensor] = []

    def fake_pin(tensor: torch.Tensor, *args, **kwargs) -> torch.Tensor:
        pinned.append(tensor)
        return tensor.clone()

    monkeypatch.setattr(torch.Tensor, "pin_memory", fake_pin)
    train = TrainBatch(_view(1.0), _keyframes())
    out = dataloader_pin_memory(train)
    assert isinstance(out, TrainBatch) and out.keyframes == train.keyframes and out.view.aug_info == train.view.aug_info
    assert out.view.clips is not train.view.clips and torch.equal(out.view.clips, train.view.clips)
    evaluation = EvalBatch([_view(1.0), _view(2.0)], _keyframes())
    out = dataloader_pin_memory(evaluation)
    assert isinstance(out, EvalBatch) and [view.clips[0, 0, 0, 0, 0].item() for view in out.views] == [1.0, 2.0]
    assert len(pinned) == 3


def test_to_moves_the_clips_and_the_cached_statistics() -> None:
    batch = EvalBatch([_view(1.0, stats=True), _view(2.0)], _keyframes())
    moved = batch.to(torch.device("meta"))
    assert [view.clips.device.type for view in moved.views] == ["meta", "meta"]
    assert moved.views[0].vit_stats.mean_map.device.type == "meta" and moved.views[1].vit_stats is None
    assert moved.keyframes is batch.keyframes and batch.views[0].clips.device.type == "cpu"
    train = TrainBatch(_view(1.0, stats=True), _keyframes()).to(torch.device("meta"))
    assert train.view.clips.device.type == "meta" and train.view.vit_stats.sq_sums.dtype == torch.float64
