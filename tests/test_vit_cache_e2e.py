"""main.py with the ViT cache (lazy, 2 gloo processes) predicts what it predicts without it (eval-mode ViT both)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from engine.feature_cache import FeatureStore
from formats.eval_csv import read_predict_csv
from tests.engine_fixtures import prepare_tiny_dataset, run_main_py, write_tiny_config

pytestmark = pytest.mark.slow


def _main(config: Path, cwd: Path, nproc: int) -> None:
    done = run_main_py(config, cwd, "--nproc_per_node", str(nproc), "--backend", "gloo")
    assert done.returncode == 0, done.stderr[-3000:]


def _config(path: Path, result: Path, cache: Path | None, mode: str = "lazy", **changes: object) -> Path:
    write_tiny_config(path, result, **changes)
    raw = yaml.safe_load(path.read_text())
    raw["model"]["backbone"]["subbackbone"]["eval_mode"] = True
    if cache is not None:
        raw["vit_cache"] = {"path": str(cache), "mode": mode}
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_lazy_cache_gives_the_same_predictions_and_require_mode_reuses_it(tmp_path: Path) -> None:
    dataset = prepare_tiny_dataset(tmp_path / "cw")
    cache = tmp_path / "cache"
    _main(_config(tmp_path / "plain.yaml", tmp_path / "plain", None), dataset, 2)
    _main(_config(tmp_path / "cached.yaml", tmp_path / "cached", cache), dataset, 2)
    plain = read_predict_csv(tmp_path / "plain" / "predict_epoch2.csv")
    cached = read_predict_csv(tmp_path / "cached" / "predict_epoch2.csv")
    assert plain.video == cached.video and np.array_equal(plain.boxes, cached.boxes)
    assert np.array_equal(plain.class_id, cached.class_id) and len(plain.video) > 0
    # Scores are printed with 3 decimals; the cached path differs from the full one by float rounding only,
    # which can flip the last printed digit (0.087 - 0.086 is 0.0010000000000000009 in floats).
    assert np.abs(plain.score - cached.score).max() <= 0.001 + 1e-9
    log = (tmp_path / "cached" / "log.txt").read_text()
    assert "vit_cache (lazy)" in log and "vit_cache train pass" in log
    store = FeatureStore(cache)
    assert len(store) > 0
    assert {path.name[:7] for path in cache.glob("*.pack")} == {"rank000", "rank001"}

    # Evaluating the cached run's checkpoint needs nothing but the cache: require mode finds every clip.
    evaluate = _config(tmp_path / "eval.yaml", tmp_path / "eval", cache, mode="require", evaluate=True,
                       resume_path=str(tmp_path / "cached" / "ckpt_2.pth.tar"))
    _main(evaluate, dataset, 1)
    assert (tmp_path / "eval" / "predict_epoch2.csv").read_bytes() == \
        (tmp_path / "cached" / "predict_epoch2.csv").read_bytes()
