"""The ViT cache on a tiny synthetic dataset: lazy filling, require mode, and the precompute tool over two ranks."""
from __future__ import annotations

import contextlib
import random
from pathlib import Path

import pytest
import torch
import yaml
from torch.utils.data import DataLoader

from config import Config, load_config
from datasets.ava import AVADataset, collate_batch
from datasets.transforms import build_spatial, build_spatial_views, build_temporal
from engine.feature_cache import FeatureStore
from engine.runner import seed_everything
from engine.plan import make_plan
from engine.vit_cache_loader import VitCacheMissError, open_vit_cache
from models.build import build_model
from models.model import AVAModel
from models.vit_cache import compute_vit_stats
from tests.engine_fixtures import prepare_tiny_dataset, write_tiny_config
from tools import precompute_vit_cache

TOL = {"rtol": 1e-5, "atol": 1e-5}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_tiny_dataset(tmp_path_factory.mktemp("cw"))


def _config(dataset: Path, tmp_path: Path, mode: str) -> Path:
    path = write_tiny_config(tmp_path / "run.yaml", tmp_path / "run", vit_cache={"path": str(tmp_path / "cache"),
                                                                                 "mode": mode})
    raw = yaml.safe_load(path.read_text())
    raw["model"]["backbone"]["subbackbone"]["eval_mode"] = True
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _model(cfg: Config) -> AVAModel:
    spec = make_plan(cfg).model
    seed_everything(cfg.manual_seed)  # as main.py and the precompute tool: the same initial ViT
    return build_model(spec)


def _loader(cfg: Config, split: str) -> tuple[AVADataset, DataLoader]:
    section = cfg.train if split == "train" else cfg.val
    aug = section.augmentation
    views = build_spatial(aug.spatial) if split == "train" else build_spatial_views(aug.spatial)
    data = AVADataset(section.root_path, section.annotation_path, views, build_temporal(aug.temporal),
                      training=split == "train")
    return data, DataLoader(data, batch_size=2, collate_fn=collate_batch)


def _direct_stats(model: AVAModel, clips: torch.Tensor):
    with torch.no_grad():
        return compute_vit_stats(model.backbone.submodule.eval()(clips))


def test_lazy_mode_computes_once_then_reads_back(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(dataset)
    cfg = load_config(_config(dataset, tmp_path, "lazy"))
    model = _model(cfg)
    model.train()
    source = open_vit_cache(make_plan(cfg).vit_cache, model, torch.device("cpu"), 0, contextlib.nullcontext)
    train_data, train_loader = _loader(cfg, "train")
    cached = source.wrap(train_loader, train_data)
    assert len(cached) == len(train_loader)
    random.seed(0)
    first = list(cached)
    assert (source.hits, source.computed) == (0, len(train_data))
    assert len(FeatureStore(tmp_path / "cache")) == len(train_data)  # sealed at the end of the pass
    random.seed(0)  # the same flips: every clip is now a hit
    second = list(cached)
    assert (source.hits, source.computed) == (len(train_data), len(train_data))
    for one, two in zip(first, second):
        direct = _direct_stats(model, one.view.clips)
        torch.testing.assert_close(two.view.vit_stats.mean_map, direct.mean_map, **TOL)
        torch.testing.assert_close(two.view.vit_stats.sq_sums, direct.sq_sums, rtol=1e-6, atol=1e-6)
        assert torch.equal(one.view.vit_stats.mean_map, two.view.vit_stats.mean_map)
    out = model(second[0])  # the model consumes the attached statistics
    assert out.logits.shape[0] == out.num_rois > 0


def test_require_mode_names_the_missing_clip(dataset: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(dataset)
    cfg = load_config(_config(dataset, tmp_path, "require"))
    model = _model(cfg)
    source = open_vit_cache(make_plan(cfg).vit_cache, model, torch.device("cpu"), 0, contextlib.nullcontext)
    val_data, val_loader = _loader(cfg, "val")
    model.eval()
    with pytest.raises(VitCacheMissError, match=r"element 0 \(video .*precompute_vit_cache"):
        next(iter(source.wrap(val_loader, val_data)))


def test_precompute_over_two_ranks_then_require_mode_hits_everything(dataset: Path, tmp_path: Path, monkeypatch,
                                                                     capsys) -> None:
    monkeypatch.chdir(dataset)
    config = _config(dataset, tmp_path, "require")
    for rank in (0, 1):
        code = precompute_vit_cache.main(["--config", str(config), "--rank", str(rank), "--world", "2",
                                          "--workers", "0", "--batch-size", "2", "--device", "cpu"])
        assert code == 0
    printed = capsys.readouterr().out
    assert "rank 0/2:" in printed and "rank 1/2:" in printed
    cfg = load_config(config)
    train_data, train_loader = _loader(cfg, "train")
    val_data, val_loader = _loader(cfg, "val")
    expected = 2 * len(train_data) + len(val_data)  # both flips of every training clip
    store = FeatureStore(tmp_path / "cache")
    assert len(store) == expected
    assert {path.name.split("-")[0] for path in (tmp_path / "cache").glob("*.pack")} == {"rank000", "rank001"}
    # Resumable: a second run finds everything cached and computes nothing.
    assert precompute_vit_cache.main(["--config", str(config), "--workers", "0", "--device", "cpu"]) == 0
    assert f"{expected} already cached, 0 computed" in capsys.readouterr().out
    model = _model(cfg)
    source = open_vit_cache(make_plan(cfg).vit_cache, model, torch.device("cpu"), 0, contextlib.nullcontext)
    model.train()
    for batch in source.wrap(train_loader, train_data):
        torch.testing.assert_close(batch.view.vit_stats.mean_map, _direct_stats(model, batch.view.clips).mean_map,
                                   **TOL)
    model.eval()
    for batch in source.wrap(val_loader, val_data):
        # One VitStats per view, of the view's B clips.
        assert [view.vit_stats.batch_size for view in batch.views] == [len(view.clips) for view in batch.views]
    assert source.computed == 0 and source.hits == len(train_data) + len(val_data)


def test_precompute_refuses_a_train_mode_vit(dataset: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(dataset)
    config = write_tiny_config(tmp_path / "run.yaml", tmp_path / "run")
    code = precompute_vit_cache.main(["--config", str(config), "--cache", str(tmp_path / "c"), "--device", "cpu"])
    assert code == 2
    assert "model.backbone.subbackbone.eval_mode" in capsys.readouterr().err
