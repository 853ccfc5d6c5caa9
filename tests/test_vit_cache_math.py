"""Exactness of the cached ViT branch: a training step and an evaluation with and without the cache agree."""
from __future__ import annotations

import copy
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from torch import nn

from config import LossConfig, ModelConfig, section
from models.build import ModelSpec, build_model, model_spec
from models.model import AVAModel
from models.vit_cache import adapt_cached_vit, compute_vit_stats, vit_fingerprint
from structures.batch import ClipView, EvalBatch, Keyframes, TrainBatch
from structures.vit_stats import VitStats

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "configs" / "tiny_cpu_synthetic.yaml").read_text())
TOL = {"rtol": 1e-5, "atol": 1e-5}


def _model_cfg(eval_mode: bool = True) -> dict:
    """The shipped tiny CPU model at the tests' size (64x64, 8 frames), ViT in eval mode."""
    cfg = copy.deepcopy(TINY["model"])
    cfg["backbone"]["subbackbone"]["kwargs"].update(img_size=64, all_frames=8)
    cfg["backbone"]["subbackbone"]["eval_mode"] = eval_mode
    cfg["head"]["kwargs"].update(reduce_dim=64, hidden_dim=32)
    return cfg


def _spec() -> ModelSpec:
    return model_spec(section(ModelConfig, _model_cfg(), "model"), section(LossConfig, TINY["loss"], "loss"))


@pytest.fixture(scope="module")
def model() -> AVAModel:
    torch.manual_seed(0)
    built = build_model(_spec())
    # Non-trivial BN_vit affine and running statistics, so that every term of the formula matters.
    norm = built.head.module.BN_vit
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.3, 0.3)
        norm.running_mean.uniform_(-0.2, 0.2)
        norm.running_var.uniform_(0.5, 2.0)
    return built


def _box(box: list[float], labels: list[int]) -> dict:
    return {"bounding_box": box, "label": labels, "person_id": [0]}


def _batch(flips: list[bool], seed: int = 0) -> TrainBatch:
    count = len(flips)
    clips = torch.randn(count, 3, 8, 64, 64, generator=torch.Generator().manual_seed(seed))
    labels = [[_box([0.1, 0.1, 0.5, 0.9], [1, 20]), _box([0.4, 0.2, 0.9, 0.8], [3])],
              [_box([0.2, 0.3, 0.6, 0.7], [14])], [_box([0.0, 0.1, 0.7, 1.0], [2, 30])]][:count]
    aug = [{"crop_box": [0.0, 0.0, 1.0, 1.0], "flip": flip, "pad_ratio": [1.0, 1.0]} for flip in flips]
    return TrainBatch(ClipView(clips, aug), Keyframes(labels, [f"v{i}" for i in range(count)],
                                                      [str(900 + i) for i in range(count)], list(range(count))))


def _stats_of(model: AVAModel, clips: torch.Tensor) -> VitStats:
    with torch.no_grad():
        return compute_vit_stats(model.backbone.submodule(clips))


def _train_step(model: AVAModel, batch: TrainBatch) -> tuple[float, dict[str, torch.Tensor]]:
    model.train()
    model.zero_grad(set_to_none=True)
    # The neck's box jitter draws from numpy: the same draws for both runs.
    np.random.seed(3)
    torch.manual_seed(3)
    out = model(batch)
    loss = model.loss(out.logits, out.targets)
    loss.backward()
    grads = {name: p.grad.clone() for name, p in model.named_parameters() if p.requires_grad}
    return float(loss.detach()), grads


def test_training_step_loss_gradients_and_bn_running_stats_match(model: AVAModel) -> None:
    batch = _batch([False, True, False])
    plain, cached = copy.deepcopy(model), copy.deepcopy(model)
    loss_plain, grads_plain = _train_step(plain, batch)
    cached_view = batch.view.with_vit_stats(_stats_of(cached, batch.view.clips))
    loss_cached, grads_cached = _train_step(cached, TrainBatch(cached_view, batch.keyframes))
    assert loss_cached == pytest.approx(loss_plain, rel=1e-5, abs=1e-5)
    assert grads_plain.keys() == grads_cached.keys()
    assert not any(name.startswith("backbone.submodule") for name in grads_plain)
    for name, grad in grads_plain.items():
        torch.testing.assert_close(grads_cached[name], grad, **TOL, msg=lambda m, n=name: f"{n}: {m}")
    norm_plain, norm_cached = plain.head.module.BN_vit, cached.head.module.BN_vit
    torch.testing.assert_close(norm_cached.running_mean, norm_plain.running_mean, **TOL)
    torch.testing.assert_close(norm_cached.running_var, norm_plain.running_var, **TOL)
    assert int(norm_cached.num_batches_tracked) == int(norm_plain.num_batches_tracked) == 1
    # The statistics really moved (the comparison above is not between two untouched buffers).
    assert not torch.allclose(norm_plain.running_mean, model.head.module.BN_vit.running_mean)


def test_evaluation_scores_match_over_two_views(model: AVAModel) -> None:
    single = _batch([False, False], seed=1)
    flipped = ClipView(torch.flip(single.view.clips, dims=[-1]),
                       [{**info, "flip": True} for info in single.view.aug_info])
    views = [single.view, flipped]
    model.eval()
    plain = model.predict(EvalBatch(views, single.keyframes))
    cached = model.predict(EvalBatch([view.with_vit_stats(_stats_of(model, view.clips)) for view in views],
                                     single.keyframes))
    assert cached.element_index == plain.element_index and cached.box_index == plain.box_index
    torch.testing.assert_close(model.activation(cached.logits), model.activation(plain.logits), **TOL)
    torch.testing.assert_close(cached.logits, plain.logits, **TOL)


def test_cached_branch_equals_the_full_branch_with_momentum_none() -> None:
    torch.manual_seed(1)
    norm, conv = nn.BatchNorm3d(6, momentum=None), nn.Conv3d(6, 5, (1, 3, 3))
    features = torch.randn(3, 6, 4, 7, 7) * 3 + 1
    twin = copy.deepcopy(norm)
    for step in range(2):
        full = conv(norm(features * (step + 1))).mean(dim=2, keepdim=True)
        cached = adapt_cached_vit(twin, conv, compute_vit_stats(features * (step + 1)))
        torch.testing.assert_close(cached, full, **TOL)
    torch.testing.assert_close(twin.running_var, norm.running_var, **TOL)
    norm.eval(), twin.eval()
    torch.testing.assert_close(adapt_cached_vit(twin, conv, compute_vit_stats(features)),
                               conv(norm(features)).mean(dim=2, keepdim=True), **TOL)


def test_statistics_are_a_fraction_of_the_feature_and_concatenate() -> None:
    features = torch.randn(2, 4, 8, 3, 3, dtype=torch.float32)
    stats = compute_vit_stats(features)
    assert stats.count == 8 * 3 * 3 and stats.sums.dtype == torch.float64
    torch.testing.assert_close(stats.sq_sums[1, 2], (features[1, 2].double() ** 2).sum())
    both = VitStats.cat([stats.select(1), stats.select(0)])
    torch.testing.assert_close(both.mean_map, stats.mean_map.flip(0))
    with pytest.raises(ValueError, match="grid sizes"):
        VitStats.cat([stats, compute_vit_stats(torch.randn(1, 4, 2, 3, 3))])


def test_fingerprint_changes_with_any_weight_and_layout() -> None:
    torch.manual_seed(0)
    vit = build_model(_spec()).backbone.submodule
    first = vit_fingerprint(vit)
    assert vit_fingerprint(vit) == first
    with torch.no_grad():
        vit.blocks[1].mlp.fc2.bias[3] += 1e-6
    assert vit_fingerprint(vit) != first
    vit.set_attn_impl("eager")
    assert len({first, vit_fingerprint(vit)}) == 2
