"""The ViT cache's on-disk store and keys: round trip, shard sealing, several writers, damaged shards, stale keys."""
from __future__ import annotations

import copy
import json
import logging
import os
from pathlib import Path

import pytest
import torch
import yaml

from config import ConfigError, from_dict
from engine.feature_cache import FeatureStore, new_writer_name
from engine.vit_cache_loader import (
    clip_key,
    describe_spatial_chain,
    flip_outcomes,
    frame_signature,
    plan_vit_cache,
    vit_identity,
    with_forced_flip,
)
from datasets.transforms import build_spatial
from models.backbones.vit import VisionTransformer
from models.build import SFMVIT
from structures.vit_stats import VitStats

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "configs" / "tiny_cpu_synthetic.yaml").read_text())


def _stats(seed: int, channels: int = 5, side: int = 3) -> VitStats:
    generator = torch.Generator().manual_seed(seed)
    return VitStats(torch.randn(1, channels, side, side, generator=generator),
                    torch.randn(1, channels, generator=generator, dtype=torch.float64) * 1e3,
                    torch.rand(1, channels, generator=generator, dtype=torch.float64) * 1e6, 8 * side * side)


def _same(a: VitStats, b: VitStats) -> bool:
    return (torch.equal(a.mean_map, b.mean_map) and torch.equal(a.sums, b.sums)
            and torch.equal(a.sq_sums, b.sq_sums) and a.count == b.count)


def test_round_trip_is_bit_exact_and_visible_only_once_sealed(tmp_path: Path) -> None:
    writer = FeatureStore(tmp_path, "rank000-a", seal_every=100)
    for seed in range(3):
        writer.put(f"k{seed}", _stats(seed))
    assert len(FeatureStore(tmp_path)) == 0  # still in the .partial file
    assert list(tmp_path.glob("*.partial"))
    index = writer.seal()
    assert index is not None and index.name.endswith(".idx.json") and not list(tmp_path.glob("*.partial"))
    reader = FeatureStore(tmp_path)
    assert sorted(reader.keys()) == ["k0", "k1", "k2"]
    for seed in range(3):
        assert _same(reader.get(f"k{seed}"), _stats(seed))
    assert reader.get("absent") is None
    # Every pack byte is a record: C*H*W float32 + 2*C float64 per clip (the documented size).
    assert sum(p.stat().st_size for p in tmp_path.glob("*.pack")) == 3 * (5 * 9 * 4 + 2 * 5 * 8)


def test_shards_seal_every_n_records_and_layouts_never_mix(tmp_path: Path) -> None:
    writer = FeatureStore(tmp_path, "w", seal_every=2)
    for seed in range(5):
        writer.put(f"k{seed}", _stats(seed))
    assert len(list(tmp_path.glob("*.idx.json"))) == 2 and len(writer) == 4
    writer.put("other", _stats(9, channels=7))  # another layout starts a new shard
    writer.close()
    indices = [json.loads(p.read_text()) for p in sorted(tmp_path.glob("*.idx.json"))]
    assert [i["shape"] for i in indices] == [[5, 3, 3], [5, 3, 3], [5, 3, 3], [7, 3, 3]]
    assert _same(FeatureStore(tmp_path).get("other"), _stats(9, channels=7))


def test_two_writers_share_a_folder_and_readers_merge_their_indices(tmp_path: Path) -> None:
    first, second = new_writer_name(0), new_writer_name(1)
    assert first != second and first.startswith("rank000-")
    store_a, store_b = FeatureStore(tmp_path, first), FeatureStore(tmp_path, second)
    store_a.put("a", _stats(1))
    store_b.put("b", _stats(2))
    store_b.put("a", _stats(1))  # both ranks cached the same clip: harmless
    store_a.seal()
    store_b.seal()
    assert "b" not in store_a
    assert store_a.refresh() == 1 and set(store_a.keys()) == {"a", "b"}
    merged = FeatureStore(tmp_path)
    assert _same(merged.get("a"), _stats(1)) and _same(merged.get("b"), _stats(2))
    # A restarted writer with the same name never overwrites a sealed shard.
    again = FeatureStore(tmp_path, first)
    again.put("c", _stats(3))
    again.close()
    assert len(list(tmp_path.glob(f"{first}-*.pack"))) == 2 and len(FeatureStore(tmp_path)) == 3


def test_half_written_and_damaged_shards_are_never_trusted(tmp_path: Path, caplog) -> None:
    good = FeatureStore(tmp_path, "good")
    good.put("ok", _stats(0))
    good.close()
    # A writer killed before sealing leaves a .partial; one killed between rename and index a bare pack.
    (tmp_path / "dead-00000.pack.partial").write_bytes(b"\0" * 100)
    (tmp_path / "dead-00001.pack").write_bytes(b"\0" * 100)
    truncated = FeatureStore(tmp_path, "trunc")
    truncated.put("cut", _stats(1))
    truncated.close()
    pack = tmp_path / "trunc-00000.pack"
    pack.write_bytes(pack.read_bytes()[:50])
    (tmp_path / "junk-00000.idx.json").write_text("{not json")
    with caplog.at_level(logging.WARNING):
        reader = FeatureStore(tmp_path)
    assert reader.keys() == ["ok"]
    assert "trunc-00000.pack" in caplog.text and "junk-00000.idx.json" in caplog.text
    # A flipped byte inside a record: a miss (to be recomputed), never wrong numbers.
    ok_pack = tmp_path / "good-00000.pack"
    data = bytearray(ok_pack.read_bytes())
    data[17] ^= 0xFF
    ok_pack.write_bytes(bytes(data))
    with caplog.at_level(logging.WARNING):
        assert FeatureStore(tmp_path).get("ok") is None
    assert "checksum mismatch" in caplog.text


def test_read_only_store_refuses_writes(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="read-only"):
        FeatureStore(tmp_path).put("k", _stats(0))
    with pytest.raises(ValueError, match="writer name"):
        FeatureStore(tmp_path, "a/b")


# --- keys ---------------------------------------------------------------------------------------


def _frames(tmp_path: Path, count: int = 3) -> list[Path]:
    paths = []
    for i in range(count):
        path = tmp_path / f"f_{i:06d}.png"
        path.write_bytes(bytes([i]) * 10)
        paths.append(path)
    return paths


def _chain(flip: bool = True, resize: int = 64):
    spatial = [{"type": "Scale", "kwargs": {"resize": [resize, resize]}}]
    spatial += [{"type": "RandomHorizontalFlip"}] if flip else []
    spatial += [{"type": "ToTensor", "kwargs": {"norm_value": 255.0}},
                {"type": "Normalize", "kwargs": {"mean": [0.45] * 3, "std": [0.225] * 3}}]
    return build_spatial(spatial)


def _tiny_vit() -> VisionTransformer:
    torch.manual_seed(0)
    return VisionTransformer(img_size=32, patch_size=16, embed_dim=16, depth=1, num_heads=2, all_frames=4)


def test_a_changed_weight_frame_or_transform_is_a_miss_never_a_wrong_hit(tmp_path: Path) -> None:
    frames = _frames(tmp_path)
    vit = _tiny_vit()
    vit_id = vit_identity(vit, torch.device("cpu"), "off")
    base = dict(frames=frame_signature(frames), transform=describe_spatial_chain(_chain()), flip=False,
                pad_ratio=[1.0, 1.0], vit_id=vit_id)
    store = FeatureStore(tmp_path / "cache", "w")
    store.put(clip_key(**base), _stats(0))
    store.seal()
    assert clip_key(**base) in store
    changed_vit = copy.deepcopy(vit)
    with torch.no_grad():
        changed_vit.patch_embed.proj.bias[0] += 1e-7
    variants = {
        "weights": {"vit_id": vit_identity(changed_vit, torch.device("cpu"), "off")},
        "amp": {"vit_id": vit_identity(vit, torch.device("cpu"), "bf16")},
        "transform": {"transform": describe_spatial_chain(_chain(resize=48))},
        "flip": {"flip": True},
        "padding": {"pad_ratio": [1.0, 1.25]},
        "frame order": {"frames": frame_signature(frames[::-1])},
    }
    for name, change in variants.items():
        assert clip_key(**{**base, **change}) not in store, name
    os.utime(frames[1], ns=(0, 12345))  # a re-extracted frame: same path, new mtime
    assert clip_key(**{**base, "frames": frame_signature(frames)}) not in store
    # The flip's probability is not part of the key: only the outcome matters.
    assert describe_spatial_chain(_chain()) == describe_spatial_chain(with_forced_flip(_chain(), True))


def test_flip_outcomes_and_forced_flips() -> None:
    assert flip_outcomes(_chain()) == [False, True] and flip_outcomes(_chain(flip=False)) == [False]
    frames = [__import__("PIL.Image", fromlist=["Image"]).new("RGB", (8, 4), (10, 20, 30))]
    frames[0].putpixel((0, 0), (255, 0, 0))
    flipped, info = with_forced_flip(_chain(resize=8), True)(frames)
    plain, plain_info = with_forced_flip(_chain(resize=8), False)(frames)
    assert info["flip"] and not plain_info["flip"]
    torch.testing.assert_close(flipped, plain.flip(-1))


# --- config -------------------------------------------------------------------------------------


def _config(**changes) -> dict:
    raw = copy.deepcopy(TINY)
    raw["vit_cache"] = {"path": "cache", "mode": "lazy"}
    raw["model"]["backbone"]["subbackbone"]["eval_mode"] = True
    for dotted, value in changes.items():
        node = raw
        *parents, last = dotted.split(".")
        for part in parents:
            node = node[int(part)] if part.isdigit() else node[part]
        node[int(last) if last.isdigit() else last] = value
    return raw


def _check(raw: dict) -> None:
    plan_vit_cache(from_dict(raw, "x.yaml"), SFMVIT)


def test_config_checks_name_the_culprit_keys() -> None:
    _check(_config())
    _check(_config(**{"vit_cache.mode": "off", "model.backbone.subbackbone.eval_mode": False}))
    with pytest.raises(ConfigError, match=r"x\.yaml: vit_cache\.mode: .*model\.backbone\.subbackbone\.eval_mode"):
        _check(_config(**{"model.backbone.subbackbone.eval_mode": False}))
    evaluate_only = _config(**{"model.backbone.subbackbone.eval_mode": False, "evaluate": True})
    _check(evaluate_only)  # evaluation always runs the ViT in eval mode
    with pytest.raises(ConfigError, match=r"model\.head\.type"):
        _check(_config(**{"model.head.type": "linear"}))
    with pytest.raises(ConfigError, match=r"train\.augmentation\.temporal\.type: .*TemporalRandomCrop"):
        _check(_config(**{"train.augmentation.temporal.type": "TemporalRandomCrop"}))
    jitter = {"type": "ScaleJitteringRandomCrop", "kwargs": {"min_scale": 64, "max_scale": 80, "size": 64}}
    with pytest.raises(ConfigError, match=r"train\.augmentation\.spatial\[1\]\.type"):
        _check(_config(**{"train.augmentation.spatial.1": jitter}))
    corner = {"type": "CornerCrop", "kwargs": [{"size": 100, "crop_position": "c"}, {"size": 100}]}
    with pytest.raises(ConfigError, match=r"val\.augmentation\.spatial\[1\]\.kwargs\.crop_position"):
        _check(_config(**{"val.augmentation.spatial.1": corner}))
    raw = _config()
    raw["train"]["augmentation"]["spatial"].insert(0, {"type": "RandomHorizontalFlip"})
    with pytest.raises(ConfigError, match="at most one RandomHorizontalFlip"):
        _check(raw)


def test_vit_cache_section_is_optional_and_validated() -> None:
    assert from_dict(TINY, "x.yaml").vit_cache is None
    with pytest.raises(ConfigError, match=r"vit_cache\.mode: expected one of"):
        from_dict(_config(**{"vit_cache.mode": "sometimes"}), "x.yaml")
    with pytest.raises(ConfigError, match=r"vit_cache\.path: missing required key"):
        from_dict({**TINY, "vit_cache": {"mode": "lazy"}}, "x.yaml")
