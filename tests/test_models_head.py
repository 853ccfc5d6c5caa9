"""ACAR/HR2O and linear heads, RoI pooling, and the loss / score activation (docs/numerics.md §5, §7, §9)."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
import torchvision

from models.heads import HEADS, HR2O, ACARHead, HeadWrapper, pool_rois
from models.losses import LOSSES, ava_criterion

# A tiny ACAR configuration: slow 16 + fast 8 + vit 12 channels = width 36.
TINY = {"width": 36, "roi_spatial": 7, "num_classes": 20, "reduce_dim": 32, "hidden_dim": 16, "depth": 2,
        "vit_channels": 12}


def _features(batch: int = 2, seed: int = 0) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return [
        torch.randn(batch, 16, 2, 7, 7, generator=gen),
        torch.randn(batch, 8, 8, 7, 7, generator=gen),
        torch.randn(batch, 12, 4, 9, 9, generator=gen),  # conv_auto (1x3x3, no padding) -> 7x7
    ]


def _tiny_head(seed: int = 0) -> ACARHead:
    torch.manual_seed(seed)
    return HEADS["acar"](**TINY).eval()


ROIS = torch.tensor([[0, 0.1, 0.1, 0.5, 0.9], [0, 0.4, 0.2, 0.9, 0.8], [1, 0.0, 0.3, 0.6, 1.0]])
ROI_IDS = [0, 2, 3]
NO_PAD = [[1.0, 1.0], [1.0, 1.0]]


# --- activation and loss ------------------------------------------------------------------------


def test_activation_softmax_over_the_first_13_and_sigmoid_elsewhere() -> None:
    criterion = LOSSES["ava_criterion"](pose_softmax=True)
    logits = torch.linspace(-3.0, 4.0, 50).reshape(1, 50).repeat(2, 1)
    logits[1] = 0.0
    probs = criterion.activation(logits)
    assert probs.dtype == torch.float32 and probs.shape == (2, 50)
    assert probs[:, :13].sum(dim=1).tolist() == pytest.approx([1.0, 1.0], abs=1e-6)
    assert torch.allclose(probs[0, :13], torch.softmax(logits[0, :13], dim=0))
    assert torch.allclose(probs[0, 13:], torch.sigmoid(logits[0, 13:]))
    # Zero logits: 1/13 for each pose class, 0.5 for every other class.
    assert probs[1, :13].tolist() == pytest.approx([1 / 13] * 13, abs=1e-7)
    assert probs[1, 13:].tolist() == pytest.approx([0.5] * 37, abs=1e-7)
    assert float(probs.min()) >= 0.0 and float(probs.max()) <= 1.0


def test_loss_golden_on_zero_logits() -> None:
    criterion = ava_criterion(pose_softmax=True)
    loss = criterion(torch.zeros(3, 50), torch.zeros(3, 50))
    # mean over N x C of -log(1 - p): 13 x -log(12/13) and 37 x log 2, over 50.
    assert float(loss) == pytest.approx(0.5337400176094789, rel=1e-6)
    targets = torch.zeros(3, 50)
    targets[:, 0] = 1.0
    expected = (-math.log(1 / 13) + 12 * -math.log(12 / 13) + 37 * math.log(2)) / 50
    assert float(criterion(torch.zeros(3, 50), targets)) == pytest.approx(expected, rel=1e-6)


def test_unreduced_loss_averages_to_the_loss() -> None:
    logits = torch.randn(5, 50, generator=torch.Generator().manual_seed(3))
    targets = (torch.rand(5, 50, generator=torch.Generator().manual_seed(4)) > 0.8).float()
    for pose_softmax in (True, False):
        criterion = ava_criterion(pose_softmax=pose_softmax)
        entries = criterion(logits, targets, reduction="none")
        assert entries.shape == (5, 50) and entries.dtype == torch.float32
        assert float(entries.mean()) == pytest.approx(float(criterion(logits, targets)), rel=1e-6)


def test_without_pose_softmax_everything_is_a_sigmoid() -> None:
    criterion = ava_criterion(pose_softmax=False)
    logits = torch.randn(4, 10, generator=torch.Generator().manual_seed(1))
    targets = (torch.rand(4, 10, generator=torch.Generator().manual_seed(2)) > 0.5).float()
    assert torch.equal(criterion.activation(logits), torch.sigmoid(logits))
    expected = F.binary_cross_entropy(torch.sigmoid(logits), targets)
    assert float(criterion(logits, targets)) == pytest.approx(float(expected), rel=1e-5)


def test_num_pose_classes_extension_and_errors() -> None:
    criterion = ava_criterion(pose_softmax=True, num_pose_classes=3)
    probs = criterion.activation(torch.zeros(1, 5))
    assert probs.tolist()[0] == pytest.approx([1 / 3, 1 / 3, 1 / 3, 0.5, 0.5])
    with pytest.raises(ValueError, match="at least 13 classes"):
        ava_criterion(pose_softmax=True).activation(torch.zeros(2, 5))
    with pytest.raises(ValueError, match="differ in shape"):
        ava_criterion(pose_softmax=True)(torch.zeros(2, 50), torch.zeros(3, 50))


def test_loss_is_float32_and_differentiable_under_bf16_autocast() -> None:
    logits = torch.randn(3, 50, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ava_criterion(pose_softmax=True)(logits.to(torch.bfloat16), torch.zeros(3, 50))
    assert loss.dtype == torch.float32
    loss.backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


# --- RoI pooling --------------------------------------------------------------------------------


def test_roi_coordinates_are_scaled_x_by_width_and_y_by_height() -> None:
    height, width = 6, 8
    ramp_x = torch.arange(width, dtype=torch.float32).expand(height, width)
    ramp_y = torch.arange(height, dtype=torch.float32)[:, None].expand(height, width)
    features = torch.stack([ramp_x, ramp_y])[None]  # [1, 2, 6, 8]
    rois = torch.tensor([[0.0, 0.25, 0.5, 0.75, 1.0]])
    original = rois.clone()
    pooled = pool_rois(features, rois, 7)
    # Box -> x 2..6 (x w=8), y 3..6 (x h=6). Bins of 4/7 and 3/7 px, one sample at each bin centre
    # (adaptive sampling ratio 1), bilinear on a ramp = the coordinate; max over bins = last centre.
    assert pooled.tolist()[0] == pytest.approx([2 + 6.5 * 4 / 7, min(3 + 6.5 * 3 / 7, 5.0)], abs=1e-5)
    assert torch.equal(rois, original), "the caller's RoIs must not be scaled in place"
    scaled = original.clone()
    scaled[:, [1, 3]] *= width
    scaled[:, [2, 4]] *= height
    reference = torchvision.ops.roi_align(features, scaled, (7, 7), 1.0, -1, False).amax(dim=(2, 3))
    assert torch.equal(pooled, reference)


def test_roi_pooling_in_bf16_autocast_on_cpu() -> None:
    features = torch.randn(2, 4, 7, 7).to(torch.bfloat16)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        pooled = pool_rois(features, ROIS, 7)
    assert pooled.dtype == torch.bfloat16 and pooled.shape == (3, 4)


# --- HR2O ---------------------------------------------------------------------------------------


def test_hr2o_matches_the_written_formula() -> None:
    torch.manual_seed(0)
    layer = HR2O(hidden_dim=8, kernel_size=3).eval()
    x = torch.randn(3, 8, 5, 5)
    q, k, v = layer.conv_q(x), layer.conv_k(x), layer.conv_v(x)
    att = (q.unsqueeze(1) * k.unsqueeze(0)).sum(2) / math.sqrt(8)  # [i, j, y, x]
    att = att.softmax(dim=1)  # over the actors j
    virt = (att.unsqueeze(2) * v.unsqueeze(0)).sum(1)
    expected = x + layer.conv(F.relu(F.group_norm(virt, 1, layer.norm.weight, layer.norm.bias, 1e-5)))
    assert torch.allclose(layer(x), expected, atol=1e-5)


def test_single_actor_attends_only_to_itself() -> None:
    torch.manual_seed(0)
    layer = HR2O(hidden_dim=8).eval()
    x = torch.randn(1, 8, 4, 4)
    virt = layer.conv_v(x)  # softmax over one actor = 1
    expected = x + layer.conv(F.relu(layer.norm(virt)))
    assert torch.allclose(layer(x), expected, atol=1e-6)


# --- ACAR head ----------------------------------------------------------------------------------


def test_acar_shapes_at_every_stage_for_the_shipped_sizes_on_meta() -> None:
    with torch.device("meta"):
        head = HEADS["acar"](width=3712, roi_spatial=7, num_classes=50, depth=2)
        features = [torch.empty(2, 2048, 8, 14, 14), torch.empty(2, 256, 32, 14, 14),
                    torch.empty(2, 1408, 16, 16, 16)]
        rois = torch.empty(3, 5)
    shapes = _record_shapes(head)
    out = head(features, rois, ROI_IDS, NO_PAD)
    assert out.shape == (3, 50)
    assert shapes["BN_vit"] == [(2, 1408, 16, 16, 16)]
    assert shapes["conv_auto"] == [(2, 1408, 16, 14, 14)]
    assert shapes["conv_reduce"] == [(2, 1024, 14, 14)]
    assert shapes["conv1"] == [(2, 512, 14, 14), (1, 512, 14, 14)]  # per clip: 2 actors, then 1
    assert shapes["conv2"] == [(2, 512, 12, 12), (1, 512, 12, 12)]
    assert shapes["downsample"] == [(2, 512, 6, 6), (1, 512, 6, 6)]
    assert shapes["hr2o.1"] == [(2, 512, 6, 6), (1, 512, 6, 6)]
    assert shapes["gap"] == [(2, 512, 1, 1), (1, 512, 1, 1)]
    assert shapes["fc1"] == [(3, 512)]
    assert shapes["fc2"] == [(3, 50)]


def _record_shapes(module: torch.nn.Module) -> dict[str, list[tuple[int, ...]]]:
    shapes: dict[str, list[tuple[int, ...]]] = {}
    for name, child in module.named_modules():
        if name:
            child.register_forward_hook(
                lambda _m, _i, out, name=name: shapes.setdefault(name, []).append(tuple(out.shape))
            )
    return shapes


def test_acar_tiny_shapes_and_padding_crop() -> None:
    head = _tiny_head()
    shapes = _record_shapes(head)
    out = head(_features(), ROIS, ROI_IDS, [[1.0, 1.0], [1 / 1.25, 1 / 1.6]])
    assert out.shape == (3, 20)
    assert shapes["conv_auto"] == [(2, 12, 4, 7, 7)]
    assert shapes["conv_reduce"] == [(2, 32, 7, 7)]
    # Clip 2 is padded (1.25 wide, 1.6 high): context cropped to ceil(7/1.6) x ceil(7/1.25) = 5 x 6.
    assert shapes["conv1"] == [(2, 16, 7, 7), (1, 16, 5, 6)]
    assert shapes["conv2"] == [(2, 16, 5, 5), (1, 16, 3, 4)]
    assert shapes["downsample"] == [(2, 16, 3, 3), (1, 16, 2, 2)]


def _reference_acar(
    head: ACARHead, features: list[torch.Tensor], rois: torch.Tensor, roi_ids: list[int]
) -> torch.Tensor:
    """The original's operations, in its order, written out step by step (no padding)."""
    slow, fast, vit = features
    vit = head.conv_auto(head.BN_vit(vit))
    h, w = slow.shape[3:]
    planes = [f.mean(dim=2) for f in (slow, fast, vit)]  # temporal mean; equal spatial sizes here
    fused = head.conv_reduce(torch.cat(planes, dim=1))
    scaled = rois.clone()
    scaled[:, 1], scaled[:, 2], scaled[:, 3], scaled[:, 4] = rois[:, 1] * w, rois[:, 2] * h, rois[:, 3] * w, rois[:, 4] * h
    actors = torchvision.ops.roi_align(fused, scaled, (7, 7))
    actors = F.max_pool2d(actors, 7).view(rois.shape[0], -1)
    relations = []
    for clip in range(fused.shape[0]):
        n = roi_ids[clip + 1] - roi_ids[clip]
        context = fused[clip].unsqueeze(0).repeat(n, 1, 1, 1)
        tiled = actors[roi_ids[clip]:roi_ids[clip + 1]][:, :, None, None].expand_as(context)
        x = torch.cat([context, tiled], dim=1)  # context first, then actor
        x = F.relu(head.conv2(F.relu(head.conv1(x))))
        x = F.max_pool2d(x, 3, 2, 1)
        x = head.hr2o(x)
        relations.append(x.mean(dim=(2, 3)))
    out = torch.cat([F.relu(head.fc1(actors)), torch.cat(relations)], dim=1)  # [fc1, relation]
    return head.fc2(out)


def test_acar_equals_the_step_by_step_reference() -> None:
    head = _tiny_head()
    features = _features()
    assert torch.allclose(head(features, ROIS, ROI_IDS, NO_PAD), _reference_acar(head, features, ROIS, ROI_IDS),
                          atol=1e-5)


def test_actors_of_different_clips_do_not_interact() -> None:
    head = _tiny_head()
    features = _features()
    base = head(features, ROIS, ROI_IDS, NO_PAD)
    moved = ROIS.clone()
    moved[2, 1:] = torch.tensor([0.5, 0.0, 1.0, 0.4])  # clip 2's box elsewhere
    out = head(features, moved, ROI_IDS, NO_PAD)
    assert torch.equal(out[:2], base[:2])
    assert not torch.allclose(out[2], base[2])
    # Within a clip they do interact: moving clip 1's second box changes the first box's logits.
    moved = ROIS.clone()
    moved[1, 1:] = torch.tensor([0.0, 0.0, 0.3, 0.3])
    out = head(features, moved, ROI_IDS, NO_PAD)
    assert not torch.allclose(out[0], base[0])
    assert torch.equal(out[2], base[2])


def test_acar_does_not_modify_the_callers_rois_or_features() -> None:
    head = _tiny_head()
    features = _features()
    copies = [f.clone() for f in features]
    rois = ROIS.clone()
    head(features, rois, ROI_IDS, NO_PAD)
    assert torch.equal(rois, ROIS)
    assert all(torch.equal(a, b) for a, b in zip(features, copies))


def test_acar_gradients_reach_every_parameter() -> None:
    head = _tiny_head().train()
    features = [f.requires_grad_() for f in _features()]
    head(features, ROIS, ROI_IDS, NO_PAD).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in head.parameters())
    assert all(f.grad is not None for f in features)


def test_acar_runs_under_bf16_autocast_on_cpu() -> None:
    head = _tiny_head()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = head(_features(), ROIS, ROI_IDS, NO_PAD)
    assert out.shape == (3, 20) and torch.isfinite(out.float()).all()


def test_acar_options_and_bad_downsample() -> None:
    torch.manual_seed(0)
    head = HEADS["acar"](**{**TINY, "downsample": "none", "mlp_1x1": True, "dropout": 0.5, "bias": True}).eval()
    assert head.hr2o[0].conv.kernel_size == (1, 1) and head.fc2.bias is not None
    assert head(_features(), ROIS, ROI_IDS, NO_PAD).shape == (3, 20)
    with pytest.raises(ValueError, match="downsample"):
        HEADS["acar"](**{**TINY, "downsample": "avg"})


def test_acar_state_dict_keys_follow_the_original() -> None:
    keys = list(HeadWrapper(_tiny_head()).state_dict())
    assert keys[:7] == ["module.BN_vit.weight", "module.BN_vit.bias", "module.BN_vit.running_mean",
                        "module.BN_vit.running_var", "module.BN_vit.num_batches_tracked",
                        "module.conv_auto.weight", "module.conv_auto.bias"]
    assert keys[-2:] == ["module.fc1.weight", "module.fc2.weight"]
    assert "module.hr2o.1.norm.bias" in keys and len(keys) == 24


# --- linear head --------------------------------------------------------------------------------


def test_linear_head_pools_each_stream_on_its_own_grid() -> None:
    torch.manual_seed(0)
    head = HEADS["linear"](width=36, num_classes=5).eval()
    features = _features()
    out = head(features, ROIS)
    assert out.shape == (3, 5)
    pooled = torch.cat([pool_rois(f.mean(dim=2), ROIS, 7) for f in features], dim=1)
    assert torch.allclose(out, head.fc(pooled), atol=1e-6)
    assert list(HeadWrapper(head).state_dict()) == ["module.fc.weight"]
