"""The packed frame store: clips bit-identical to the PIL path (flips, crops, views), staleness, errors, CLI."""
from __future__ import annotations

import json
import os
import pickle
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

import datasets.frame_store as frame_store_module
from common.errors import FormatError
from datasets.ava import AVADataset, collate_batch
from datasets.frame_store import FrameStore, StoreResize, main, scan_folder, store_resize_for
from datasets.temporal_transforms import TemporalCenterCrop
from datasets.transforms import build_spatial, build_spatial_views
from formats.annotation_pkl import save_annotation_pkl

WIDTH, HEIGHT = 40, 24
CLASSES = [{"name": f"action{i}", "id": i + 1, "label_type": "PERSON_MOVEMENT"} for i in range(3)]
NORMALIZE = [{"type": "ToTensor", "kwargs": {"norm_value": 255.0}},
             {"type": "Normalize", "kwargs": {"mean": [0.45, 0.45, 0.45], "std": [0.225, 0.225, 0.225]}}]
TRAIN_CHAIN = [{"type": "Scale", "kwargs": {"resize": [24, 16]}}, {"type": "RandomHorizontalFlip"}, *NORMALIZE]


def _write_frames(root: Path, video: str, count: int, seed: int, size: tuple[int, int] = (WIDTH, HEIGHT)) -> None:
    """Noise frames, so that a bilinear resize has real work to do."""
    rng = np.random.default_rng(seed)
    folder = root / video
    folder.mkdir(parents=True, exist_ok=True)
    for number in range(1, count + 1):
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"{video}_{number:06d}.png")


def _element(video: str, time: int, start: int, n_frames: int) -> dict:
    labels = [{"bounding_box": [0.1, 0.2, 0.5, 0.9], "label": [1], "person_id": [0]}]
    return {"video": video, "time": time, "start_frame": start, "n_frames": n_frames,
            "mid_frame": start + n_frames // 2, "format_str": f"{video}_%06d.png", "frame_rate": 25,
            "labels": labels}


@pytest.fixture()
def tiny(tmp_path: Path) -> tuple[Path, Path]:
    root = tmp_path / "frames"
    _write_frames(root, "vidA", 20, seed=1)
    _write_frames(root, "vidB", 6, seed=2)
    elements = [_element("vidA", 1, 1, 20), _element("vidB", 1, 1, 6), _element("vidA", 2, 5, 12)]
    pkl = tmp_path / "ann.pkl"
    save_annotation_pkl(pkl, elements, CLASSES)
    return root, pkl


def _dataset(root: Path, pkl: Path, chain: list[dict], store: FrameStore | Path | None, training: bool = True,
             ) -> AVADataset:
    spatial = build_spatial(chain) if training else build_spatial_views(chain)
    return AVADataset(root, pkl, spatial, TemporalCenterCrop(size=8, step=2), training=training, frame_store=store)


def _items(dataset: AVADataset, seed: int) -> list[dict]:
    items = []
    for index in range(len(dataset)):
        random.seed(seed + index)
        items.append(dataset[index])
    return items


def _assert_same_items(expected: list[dict], got: list[dict]) -> None:
    assert len(expected) == len(got)
    for want, have in zip(expected, got):
        want_clips = want["clip"] if isinstance(want["clip"], list) else [want["clip"]]
        have_clips = have["clip"] if isinstance(have["clip"], list) else [have["clip"]]
        for want_clip, have_clip in zip(want_clips, have_clips, strict=True):
            assert want_clip.dtype == have_clip.dtype and torch.equal(want_clip, have_clip)
        assert want["aug_info"] == have["aug_info"]


@pytest.mark.parametrize("flip", [0.0, 0.5, 1.0])
def test_training_clips_are_bit_identical(tiny: tuple[Path, Path], tmp_path: Path, flip: float) -> None:
    root, pkl = tiny
    chain = [TRAIN_CHAIN[0], {"type": "RandomHorizontalFlip", "kwargs": {"p": flip}}, *NORMALIZE]
    expected = _items(_dataset(root, pkl, chain, None), seed=3)
    stored = _dataset(root, pkl, chain, tmp_path / "store")
    assert stored.store_resize == StoreResize((24, 16))
    got = _items(stored, seed=3)
    _assert_same_items(expected, got)
    if flip == 1.0:
        assert all(item["aug_info"]["flip"] for item in got)
    assert sorted(p.name for p in (tmp_path / "store").iterdir()) == ["vidA", "vidB"]


def test_multi_view_crops_and_short_edge_resize(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    root, pkl = tiny
    chain = [{"type": "Scale", "kwargs": {"resize": 18}},
             {"type": "CornerCrop",
              "kwargs": [{"size": 16, "crop_position": "tl"}, {"size": 16, "crop_position": "c"}]},
             {"type": "RandomHorizontalFlip", "kwargs": [{"p": 0.0}, {"p": 1.0}]}, *NORMALIZE]
    expected = _items(_dataset(root, pkl, chain, None, training=False), seed=0)
    stored = _dataset(root, pkl, chain, tmp_path / "store", training=False)
    assert stored.store_resize == StoreResize(18)
    got = _items(stored, seed=0)
    assert len(got[0]["clip"]) == 4
    _assert_same_items(expected, got)
    # Shorter edge 18 on 40x24 gives int(18 * 40 / 24) = 30 columns.
    assert stored.frame_store.video(root / "vidA", StoreResize(18)).array.shape == (20, 18, 30, 3)


def test_chain_without_leading_scale_stores_decoded_frames(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    root, pkl = tiny
    chain = [{"type": "ScaleJitteringRandomCrop", "kwargs": {"min_scale": 14, "max_scale": 20, "size": 12}},
             {"type": "RandomHorizontalFlip"}, *NORMALIZE]
    expected = _items(_dataset(root, pkl, chain, None), seed=7)
    stored = _dataset(root, pkl, chain, tmp_path / "store")
    assert stored.store_resize is None
    _assert_same_items(expected, _items(stored, seed=7))
    assert (tmp_path / "store" / "vidA" / "decoded.json").is_file()


def test_views_with_different_scales_fall_back_to_decoded_frames() -> None:
    views = build_spatial_views([{"type": "Scale", "kwargs": [{"resize": 16}, {"resize": 20}]}, *NORMALIZE])
    assert store_resize_for(views) is None
    assert store_resize_for(build_spatial_views(NORMALIZE)) is None


def test_store_is_reused_without_decoding(tiny: tuple[Path, Path], tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    root, pkl = tiny
    expected = _items(_dataset(root, pkl, TRAIN_CHAIN, tmp_path / "store"), seed=1)
    index = json.loads((tmp_path / "store" / "vidA" / "24x16_i2.json").read_text())
    assert index["shape"] == [20, 16, 24, 3] and index["source_size"] == [WIDTH, HEIGHT]
    assert [name for name, _, _ in index["frames"]] == [f"vidA_{n:06d}.png" for n in range(1, 21)]

    def no_decoding(path: Path) -> Image.Image:
        raise AssertionError(f"decoded {path} although the store is up to date")

    monkeypatch.setattr(frame_store_module, "decode_frame", no_decoding)
    reader = FrameStore(tmp_path / "store", build=False)
    _assert_same_items(expected, _items(_dataset(root, pkl, TRAIN_CHAIN, reader), seed=1))


def test_changed_frames_rebuild_the_store(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    root, pkl = tiny
    store = tmp_path / "store"
    _items(_dataset(root, pkl, TRAIN_CHAIN, store), seed=0)
    old_data = sorted(p.name for p in (store / "vidB").glob("*.npy"))
    _write_frames(root, "vidB", 6, seed=99)
    frame = root / "vidB" / "vidB_000003.png"
    os.utime(frame, ns=(1, 1))  # a changed mtime alone must be noticed too
    expected = _items(_dataset(root, pkl, TRAIN_CHAIN, None), seed=0)
    with pytest.raises(FileNotFoundError, match="missing or stale.*python -m datasets.frame_store --frames .*"
                                                "--size 24 16 --interpolation bilinear"):
        _items(_dataset(root, pkl, TRAIN_CHAIN, FrameStore(store, build=False)), seed=0)
    _assert_same_items(expected, _items(_dataset(root, pkl, TRAIN_CHAIN, store), seed=0))
    new_data = sorted(p.name for p in (store / "vidB").glob("*.npy"))
    assert len(new_data) == 1 and new_data != old_data  # the stale array was removed


def test_missing_frame_names_the_frame_and_element(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    root, pkl = tiny
    (root / "vidB" / "vidB_000003.png").unlink()
    dataset = _dataset(root, pkl, TRAIN_CHAIN, tmp_path / "store")
    with pytest.raises(FileNotFoundError, match=r"vidB_000003\.png is missing.*element 1 \(video 'vidB'"):
        dataset[1]


def test_frames_of_different_sizes_are_reported(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    root, pkl = tiny
    Image.new("RGB", (WIDTH + 2, HEIGHT)).save(root / "vidB" / "vidB_000006.png")
    dataset = _dataset(root, pkl, TRAIN_CHAIN, tmp_path / "store")
    with pytest.raises(FormatError, match=r"vidB.*frames differ in size.*vidB_000006\.png.*element 1"):
        dataset[1]


def test_empty_folder_is_reported(tmp_path: Path) -> None:
    (tmp_path / "frames" / "empty").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="no frame images"):
        FrameStore(tmp_path / "store").video(tmp_path / "frames" / "empty", None)


def test_dataloader_workers_build_and_read_concurrently(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    root, pkl = tiny
    eval_chain = [TRAIN_CHAIN[0], *NORMALIZE]
    expected = collate_batch(_items(_dataset(root, pkl, eval_chain, None), seed=0))
    dataset = _dataset(root, pkl, eval_chain, tmp_path / "store")
    loader = DataLoader(dataset, batch_size=len(dataset), num_workers=2, collate_fn=collate_batch)
    for _ in range(2):  # first epoch builds (both workers may race on vidA), the second reads
        (batch,) = list(loader)
        assert torch.equal(batch.view.clips, expected.view.clips)
    assert len(list((tmp_path / "store" / "vidA").glob("*.npy"))) == 1


def test_store_pickles_without_its_memory_maps(tiny: tuple[Path, Path], tmp_path: Path) -> None:
    root, _ = tiny
    store = FrameStore(tmp_path / "store")
    store.load(root / "vidB", ["vidB_000001.png"], StoreResize((24, 16)))
    clone = pickle.loads(pickle.dumps(store))
    assert clone.root == store.root and clone._videos == {} and store._videos


def test_cli_builds_a_store_the_dataset_reads(tiny: tuple[Path, Path], tmp_path: Path,
                                              capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    root, pkl = tiny
    assert main(["--frames", str(root), "--store", str(tmp_path / "store"), "--size", "24", "16"]) == 0
    assert "2 video(s), 26 frames, key 24x16_i2" in capsys.readouterr().out
    expected = _items(_dataset(root, pkl, TRAIN_CHAIN, None), seed=5)
    _assert_same_items(expected, _items(_dataset(root, pkl, TRAIN_CHAIN, FrameStore(tmp_path / "store", build=False)),
                                        seed=5))
    assert [name for name, _, _ in scan_folder(root / "vidB")] == [f"vidB_{n:06d}.png" for n in range(1, 7)]
    # The command line's convention (common/cli.py): one line, exit 2; SFMVIT_DEBUG=1 lets the error through.
    capsys.readouterr()
    assert main(["--frames", str(root), "--store", str(tmp_path / "store"), "--videos", "nope"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "nope" in err, err
    monkeypatch.setenv("SFMVIT_DEBUG", "1")
    with pytest.raises(FileNotFoundError, match="nope"):
        main(["--frames", str(root), "--store", str(tmp_path / "store"), "--videos", "nope"])
