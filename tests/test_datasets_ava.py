"""AVADataset on a tiny pkl + PNG frames in tmp_path: sampled files, clip layout, errors, collate."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from datasets.ava import AVADataset, collate_batch, pad_and_stack
from datasets.temporal_transforms import TemporalCenterCrop
from datasets.transforms import build_spatial, build_spatial_views
from formats.annotation_pkl import save_annotation_pkl
from structures.batch import EvalBatch, TrainBatch

WIDTH, HEIGHT = 16, 12
CLASSES = [{"name": f"action{i}", "id": i + 1, "label_type": "PERSON_MOVEMENT"} for i in range(3)]
TO_TENSOR = [{"type": "ToTensor", "kwargs": {"norm_value": 255.0}}]


def _write_frames(root: Path, video: str, count: int) -> None:
    """Frame k: red = k, green = column, blue = 7 (so each frame and column is recognisable)."""
    folder = root / video
    folder.mkdir(parents=True)
    for number in range(1, count + 1):
        pixels = np.zeros((HEIGHT, WIDTH, 3), dtype=np.uint8)
        pixels[..., 0] = number
        pixels[..., 1] = np.arange(WIDTH, dtype=np.uint8)[None, :]
        pixels[..., 2] = 7
        Image.fromarray(pixels).save(folder / f"{video}_{number:06d}.png")


def _element(video: str, time: int, start: int, n_frames: int, boxes: int = 1) -> dict:
    labels = [{"bounding_box": [0.1 * b, 0.2, 0.5, 0.9], "label": [b % 3], "person_id": [b]} for b in range(boxes)]
    return {
        "video": video, "time": time, "start_frame": start, "n_frames": n_frames, "mid_frame": start + n_frames // 2,
        "format_str": f"{video}_%06d.png", "frame_rate": 25, "labels": labels,
    }


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "frames"
    _write_frames(root, "vidA", 80)
    _write_frames(root, "vidB", 12)
    elements = [
        _element("vidA", 2, 1, 75, boxes=2),
        _element("vidB", 1, 1, 10),
        _element("vidB", 1, 1, 10),  # a repeated keyframe, as in the released pkls: kept as given
    ]
    pkl = tmp_path / "ann.pkl"
    save_annotation_pkl(pkl, elements, CLASSES)
    return root, pkl


def _train_dataset(root: Path, pkl: Path, spatial: list[dict] | None = None) -> AVADataset:
    chain = build_spatial(spatial or TO_TENSOR)
    return AVADataset(root, pkl, chain, TemporalCenterCrop(size=64, step=2), training=True)


def test_item_layout_and_frame_order(tiny: tuple[Path, Path]) -> None:
    root, pkl = tiny
    dataset = _train_dataset(root, pkl)
    assert len(dataset) == 3
    item = dataset[0]
    assert item["clip"].shape == (3, 32, HEIGHT, WIDTH) and item["clip"].dtype == torch.float32
    # start 1, n 75: centre window 6..69, every second frame.
    red = (item["clip"][0, :, 0, 0] * 255).round().to(torch.int64).tolist()
    assert red == list(range(6, 70, 2))
    assert torch.equal((item["clip"][1, 0, 0] * 255).round(), torch.arange(WIDTH, dtype=torch.float32))
    assert item["labels"] is dataset.elements[0]["labels"]
    assert item["filename"] == "vidA" and item["mid_time"] == "2" and item["element_index"] == 0
    assert item["aug_info"] == {"crop_box": [0.0, 0.0, 1.0, 1.0], "flip": False, "pad_ratio": [1.0, 1.0]}


def test_only_the_sampled_frames_are_opened(tiny: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    root, pkl = tiny
    dataset = _train_dataset(root, pkl)
    opened: list[str] = []
    real_open = Image.open

    def counting_open(path: object, *args: object, **kwargs: object) -> Image.Image:
        opened.append(Path(path).name)
        return real_open(path, *args, **kwargs)

    monkeypatch.setattr(Image, "open", counting_open)
    item = dataset[1]
    # start 1, n 10: window 1..10 looped to 64, every second -> frames 1,3,5,7,9 repeated; each read once.
    assert sorted(opened) == [f"vidB_{k:06d}.png" for k in (1, 3, 5, 7, 9)]
    red = (item["clip"][0, :, 0, 0] * 255).round().to(torch.int64).tolist()
    assert red == ([1, 3, 5, 7, 9] * 7)[:32]
    opened.clear()
    dataset[0]
    assert sorted(opened) == [f"vidA_{k:06d}.png" for k in range(6, 70, 2)]
    assert [p.name for p in dataset.frame_paths(0)][:2] == ["vidA_000006.png", "vidA_000008.png"]


def test_clip_equals_the_original_pil_pipeline(tiny: tuple[Path, Path]) -> None:
    root, pkl = tiny
    spatial = [{"type": "Scale", "kwargs": {"resize": [10, 10]}}, *TO_TENSOR,
               {"type": "Normalize", "kwargs": {"mean": [0.45] * 3, "std": [0.225] * 3}}]
    clip = _train_dataset(root, pkl, spatial)[0]["clip"]
    frames = []
    for number in range(6, 70, 2):
        image = Image.open(root / "vidA" / f"vidA_{number:06d}.png").convert("RGB").resize((10, 10), Image.BILINEAR)
        tensor = torch.tensor(np.array(image)).permute(2, 0, 1).contiguous().float().div(255.0)
        for channel in tensor:
            channel.sub_(0.45).div_(0.225)
        frames.append(tensor)
    assert torch.equal(clip, torch.stack(frames, 0).permute(1, 0, 2, 3))


def test_missing_frame_names_the_file_and_element(tiny: tuple[Path, Path]) -> None:
    root, pkl = tiny
    (root / "vidB" / "vidB_000005.png").unlink()
    dataset = _train_dataset(root, pkl)
    with pytest.raises(FileNotFoundError) as excinfo:
        dataset[2]
    message = str(excinfo.value)
    assert "vidB_000005.png" in message and "element 2" in message and "'vidB'" in message and "time 1" in message


def test_undecodable_frame_is_a_format_error(tiny: tuple[Path, Path]) -> None:
    from common.errors import FormatError

    root, pkl = tiny
    (root / "vidB" / "vidB_000003.png").write_bytes(b"not a png")
    with pytest.raises(FormatError, match=r"vidB_000003\.png.*element 1"):
        _train_dataset(root, pkl)[1]


def test_training_collate_stacks_clips(tiny: tuple[Path, Path]) -> None:
    root, pkl = tiny
    dataset = _train_dataset(root, pkl, [{"type": "Scale", "kwargs": {"resize": [8, 8]}}, *TO_TENSOR])
    batch = collate_batch([dataset[2], dataset[0]])
    assert isinstance(batch, TrainBatch)
    keyframes = batch.keyframes
    assert batch.view.clips.shape == (2, 3, 32, 8, 8)
    assert torch.equal(batch.view.clips[1], dataset[0]["clip"])
    assert keyframes.filenames == ["vidB", "vidA"] and keyframes.mid_times == ["1", "2"]
    assert keyframes.element_index == [2, 0]
    assert keyframes.labels[1] == dataset.elements[0]["labels"] and len(keyframes.labels[1]) == 2
    assert [info["pad_ratio"] for info in batch.view.aug_info] == [[1.0, 1.0], [1.0, 1.0]]


def test_evaluation_items_and_collate_per_view(tiny: tuple[Path, Path]) -> None:
    root, pkl = tiny
    views = build_spatial_views([
        {"type": "Scale", "kwargs": [{"resize": [8, 8]}, {"resize": [8, 8]}]},
        {"type": "RandomHorizontalFlip", "kwargs": [{"p": 0.0}, {"p": 1.0}]},
        *TO_TENSOR,
    ])
    dataset = AVADataset(root, pkl, views, TemporalCenterCrop(64, 2), training=False)
    item = dataset[1]
    assert isinstance(item["clip"], list) and len(item["clip"]) == 4
    assert [info["flip"] for info in item["aug_info"]] == [False, False, True, True]
    assert torch.equal(item["clip"][2], item["clip"][0].flip(-1))
    batch = collate_batch([dataset[0], dataset[1], dataset[2]])
    assert isinstance(batch, EvalBatch)
    assert len(batch.views) == 4 and all(view.clips.shape == (3, 3, 32, 8, 8) for view in batch.views)
    assert all(len(view.aug_info) == 3 for view in batch.views)
    assert batch.views[3].aug_info[0]["flip"] is True and batch.keyframes.element_index == [0, 1, 2]
    with pytest.raises(ValueError, match="one spatial chain"):
        AVADataset(root, pkl, views, TemporalCenterCrop(64, 2), training=True)


def test_pad_and_stack_pads_to_the_largest_size() -> None:
    small, large = torch.ones(3, 2, 4, 6), torch.ones(3, 2, 8, 5)
    stacked, ratios = pad_and_stack([small, large])
    assert stacked.shape == (2, 3, 2, 8, 6)
    assert ratios == [[1.0, 2.0], [6 / 5, 1.0]]
    assert stacked[0, :, :, 4:].abs().sum() == 0 and stacked[1, :, :, :, 5:].abs().sum() == 0
    assert torch.equal(stacked[0, :, :, :4, :6], small)


def test_dataloader_with_sampler_and_collate(tiny: tuple[Path, Path]) -> None:
    from datasets.sampler import RankSliceSampler

    root, pkl = tiny
    dataset = _train_dataset(root, pkl, [{"type": "Scale", "kwargs": {"resize": [4, 4]}}, *TO_TENSOR])
    sampler = RankSliceSampler(len(dataset), num_replicas=1, rank=0, round_down=False)
    loader = torch.utils.data.DataLoader(dataset, batch_size=2, sampler=sampler, collate_fn=collate_batch)
    seen = [index for batch in loader for index in batch.keyframes.element_index]
    assert seen == torch.randperm(3, generator=torch.Generator().manual_seed(0)).tolist()
