"""Backbones: reference layout (meta device), output shapes, slow frames, attention paths, freezing."""
from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import pytest
import torch

from config import BackboneConfig, ConfigError, section
from config.builders import check_kwargs
from models.backbones import BACKBONES, VITS, DualBackbone, build_backbone
from models.backbones.slowfast import SlowFast
from models.backbones.vit import SFMVIT_VIT_KWARGS, VIT_SIZES, VisionTransformer, sinusoid_table
from models.build import shape_only

# Copy of the reference layout of the original model (every state_dict key, shape, dtype).
LAYOUT = Path(__file__).resolve().parent / "data" / "models" / "checkpoint_layout.tsv"

# The released model's SlowFast arguments (configs/*.yaml model.backbone.kwargs).
CW_SLOWFAST = {"alpha": 4, "beta": 0.125, "fuse_only_conv": False, "fuse_kernel_size": 7, "slow_full_span": True}
TINY_SLOWFAST = {**CW_SLOWFAST, "width_mult": 0.25}
TINY_VIT = {"depth": 2, "embed_dim": 96, "num_heads": 4, "img_size": 112, "all_frames": 8, "patch_size": 16}


def _reference_layout(prefix: str) -> list[tuple[str, list[int], str]]:
    rows = [line.rstrip("\n").split("\t") for line in LAYOUT.read_text(encoding="utf-8").splitlines()[1:]]
    return [(key[len(prefix):], json.loads(shape), dtype) for key, shape, dtype in rows if key.startswith(prefix)]


def _layout(module: torch.nn.Module) -> list[tuple[str, list[int], str]]:
    return [(key, list(value.shape), str(value.dtype).removeprefix("torch."))
            for key, value in module.state_dict().items()]


def _tiny_cfg(**overrides: object) -> dict:
    cfg = {"arch": "slowfast50", "learnable": True, "kwargs": dict(TINY_SLOWFAST),
           "subbackbone": {"kwargs": dict(TINY_VIT)}}
    cfg.update(overrides)
    return cfg


def test_slowfast50_layout_equals_the_released_checkpoint() -> None:
    with torch.device("meta"):
        model = BACKBONES["slowfast50"](**CW_SLOWFAST)
    expected = _reference_layout("module.backbone.module.")
    assert len(expected) == 660
    assert _layout(model) == expected  # same keys, order, shapes and dtypes
    assert sum(p.numel() for p in model.parameters()) == 33_644_488
    assert model.out_channels == (2048, 256)


def test_vit_giant_layout_equals_the_released_checkpoint() -> None:
    with torch.device("meta"):
        vit = VITS["vit_giant_patch14_224"](**SFMVIT_VIT_KWARGS)
    expected = _reference_layout("module.backbone.submodule.")
    assert len(expected) == 526
    assert _layout(vit) == expected
    assert sum(p.numel() for p in vit.parameters()) == 1_011_723_472
    assert vit.blocks[0].mlp.fc1.out_features == 6144
    assert (vit.embed_dim, vit.grid_size) == (1408, (16, 16, 16))
    assert vit.pos_embed.shape == (1, 4096, 1408) and vit.pos_embed.device.type == "meta"


@pytest.mark.parametrize("arch,stages", [("slowfast101", (3, 4, 23, 3)), ("slowfast152", (3, 8, 36, 3)),
                                         ("slowfast200", (3, 24, 36, 3))])
def test_deeper_slowfast_stage_depths(arch: str, stages: tuple[int, ...]) -> None:
    with torch.device("meta"):
        model = BACKBONES[arch](**CW_SLOWFAST)
    for index, blocks in enumerate(stages, start=1):
        assert len(getattr(model, f"slow_res{index}")) == blocks
        assert len(getattr(model, f"fast_res{index}")) == blocks
    assert model.out_channels == (2048, 256)


@pytest.mark.parametrize("arch,width,depth,heads,patch", [
    ("vit_small_patch16_224", 384, 12, 6, 16), ("vit_base_patch16_224", 768, 12, 12, 16),
    ("vit_large_patch16_224", 1024, 24, 16, 16), ("vit_huge_patch16_224", 1280, 32, 16, 16)])
def test_vit_sizes(arch: str, width: int, depth: int, heads: int, patch: int) -> None:
    with torch.device("meta"):
        vit = VITS[arch](all_frames=16)
    assert (vit.embed_dim, len(vit.blocks), vit.blocks[0].attn.num_heads) == (width, depth, heads)
    assert vit.patch_embed.proj.kernel_size == (2, patch, patch)
    assert vit.grid_size == (8, 224 // patch, 224 // patch)


def test_slow_frame_indices_keep_the_linspace_quirk() -> None:
    with torch.device("meta"):
        full_span = BACKBONES["slowfast50"](**CW_SLOWFAST)
        strided = BACKBONES["slowfast50"](**{**CW_SLOWFAST, "slow_full_span": False})
    assert full_span.slow_frame_indices(32).tolist() == [0, 4, 8, 13, 17, 22, 26, 31]
    assert full_span.slow_frame_indices(8).tolist() == [0, 7]
    assert strided.slow_frame_indices(32).tolist() == [0, 4, 8, 12, 16, 20, 24, 28]


def test_slowfast_slow_pathway_sees_the_selected_frames() -> None:
    torch.manual_seed(0)
    model = SlowFast([1, 1, 1, 1], **TINY_SLOWFAST).eval()
    clip = torch.randn(1, 3, 8, 32, 32)
    changed = clip.clone()
    changed[:, :, 3] += 5.0  # frame 3 is not among the slow frames [0, 7] ...
    with torch.no_grad():
        slow, _ = model(clip)
        # ... so the slow output changes only through the fast laterals; zeroing them isolates that.
        for index in range(1, 5):
            getattr(model, f"Tconv{index}")[0].weight.zero_()
        slow_a, _ = model(clip)
        slow_b, _ = model(changed)
    assert torch.equal(slow_a, slow_b)
    assert not torch.equal(slow, slow_a)


def test_tiny_slowfast_forward_shapes() -> None:
    torch.manual_seed(0)
    model = BACKBONES["slowfast50"](**TINY_SLOWFAST)
    assert model.out_channels == (512, 64)
    assert model.slow_res1[0].conv1.in_channels == 16 + 2 * 2  # slow stem + lateral (2x fast channels)
    slow, fast = model(torch.randn(2, 3, 8, 112, 112))
    assert slow.shape == (2, 512, 2, 7, 7)
    assert fast.shape == (2, 64, 8, 7, 7)


@pytest.mark.parametrize("kwargs,frames,message", [
    ({"fuse_kernel_size": 6}, None, "fuse_kernel_size"),
    ({"width_mult": 0.05}, None, "width_mult"),
    ({}, 10, "multiple of alpha"),
])
def test_slowfast_rejects_inconsistent_shapes(kwargs: dict, frames: int | None, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model = SlowFast([1, 1, 1, 1], **{**TINY_SLOWFAST, **kwargs})
        model(torch.zeros(1, 3, frames, 32, 32))


@pytest.mark.parametrize("patch,grid", [(16, (4, 7, 7)), (14, (4, 8, 8))])
def test_tiny_vit_forward_shape(patch: int, grid: tuple[int, int, int]) -> None:
    torch.manual_seed(0)
    vit = VITS["vit_giant_patch14_224"](**{**SFMVIT_VIT_KWARGS, **TINY_VIT, "patch_size": patch}).eval()
    out = vit(torch.randn(2, 3, 8, 112, 112))
    assert vit.grid_size == grid
    assert out.shape == (2, 96, *grid)


def test_vit_output_is_the_token_grid_in_thw_order() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(**{**TINY_VIT, "num_classes": 0}).eval()
    clip = torch.randn(1, 3, 8, 112, 112)
    with torch.no_grad():
        tokens = vit.patch_embed(clip) + vit.pos_embed
        for block in vit.blocks:
            tokens = block(tokens)
        out = vit(clip)
    # token n = (t * 7 + h) * 7 + w for the 4x7x7 grid
    assert torch.equal(out[0, :, 2, 3, 5], tokens[0, (2 * 7 + 3) * 7 + 5])


def test_sdpa_and_eager_attention_agree() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(**TINY_VIT).eval()
    for block in vit.blocks:  # non-zero q/v biases so that both paths use them
        torch.nn.init.normal_(block.attn.q_bias, std=0.5)
        torch.nn.init.normal_(block.attn.v_bias, std=0.5)
    clip = torch.randn(2, 3, 8, 112, 112)
    with torch.no_grad():
        sdpa = vit(clip)
        vit.set_attn_impl("eager")
        eager = vit(clip)
    assert vit.blocks[0].attn.attn_impl == "eager"
    torch.testing.assert_close(sdpa, eager, rtol=0, atol=1e-5)


def test_sinusoid_table_golden_values() -> None:
    table = sinusoid_table(3, 6)
    assert table.dtype == torch.float32 and table.shape == (1, 3, 6)
    assert table[0, 1, 0].item() == pytest.approx(math.sin(1.0), abs=1e-7)
    assert table[0, 1, 1].item() == pytest.approx(math.cos(1.0), abs=1e-7)
    assert table[0, 2, 2].item() == pytest.approx(math.sin(2 / 10000 ** (2 / 6)), abs=1e-7)
    assert table[0, 2, 5].item() == pytest.approx(math.cos(2 / 10000 ** (4 / 6)), abs=1e-7)
    assert table[0, 0].tolist() == [0.0, 1.0, 0.0, 1.0, 0.0, 1.0]


def test_pos_embed_is_a_plain_attribute_that_follows_the_device() -> None:
    vit = VisionTransformer(**TINY_VIT)
    assert "pos_embed" not in vit.state_dict()
    assert all("pos_embed" not in name for name, _ in [*vit.named_parameters(), *vit.named_buffers()])
    fresh = sinusoid_table(4 * 7 * 7, 96)
    assert torch.equal(vit.pos_embed, fresh)
    vit.to("meta")
    assert vit.pos_embed.device.type == "meta"
    vit.to_empty(device="cpu")  # rebuilt, not left uninitialised
    assert torch.equal(vit.pos_embed, fresh)
    vit.double()
    assert vit.pos_embed.dtype == torch.float32  # cast in forward, as the original's type_as


@pytest.mark.parametrize("kwargs,message", [
    ({"embed_dim": 100, "num_heads": 3}, "divisible by num_heads"),
    ({"img_size": 120}, "img_size"),
    ({"all_frames": 7}, "all_frames"),
    ({"attn_impl": "flash"}, "attn_impl"),
])
def test_vit_rejects_sizes_without_an_integer_grid(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        VisionTransformer(**{**TINY_VIT, **kwargs})


def test_vit_rejects_a_clip_of_another_size() -> None:
    vit = VisionTransformer(**TINY_VIT)
    with pytest.raises(ValueError, match=r"\[B, C, 8, 112, 112\]"):
        vit(torch.zeros(1, 3, 8, 96, 96))


def test_dual_backbone_forward_and_frozen_vit() -> None:
    torch.manual_seed(0)
    backbone = build_backbone(section(BackboneConfig, _tiny_cfg(), "model.backbone")).train()
    assert isinstance(backbone, DualBackbone)
    assert backbone.out_channels == (512, 64, 96)
    assert {name.split(".")[0] for name in backbone.state_dict()} == {"module", "submodule"}
    slow, fast, vit = backbone(torch.randn(2, 3, 8, 112, 112))
    assert (slow.shape, fast.shape, vit.shape) == ((2, 512, 2, 7, 7), (2, 64, 8, 7, 7), (2, 96, 4, 7, 7))
    (slow.mean() + fast.mean() + vit.mean()).backward()
    assert all(p.grad is None and not p.requires_grad for p in backbone.submodule.parameters())
    assert all(p.grad is not None for p in backbone.module.parameters())
    assert vit.grad_fn is None


def test_learnable_false_freezes_slowfast() -> None:
    backbone = build_backbone(section(BackboneConfig, _tiny_cfg(learnable=False), "model.backbone"))
    assert not any(p.requires_grad for p in backbone.parameters())


def test_vit_mode_follows_training_unless_eval_mode() -> None:
    default = build_backbone(section(BackboneConfig, _tiny_cfg(), "model.backbone"))
    assert not default.submodule.training  # eval after construction, as the original
    default.train()
    assert default.submodule.training  # quirk 6: the frozen ViT trains (drop-path) with the model
    fixed = build_backbone(section(BackboneConfig, _tiny_cfg(subbackbone={"kwargs": dict(TINY_VIT), "eval_mode": True}), "model.backbone"))
    assert fixed.train() is fixed
    assert fixed.module.training and not fixed.submodule.training


@pytest.mark.parametrize("cfg,key", [
    (_tiny_cfg(arch="slowfast51"), "model.backbone.arch"),
    (_tiny_cfg(kwargs={"alpah": 4}), "model.backbone.kwargs.alpah"),
    (_tiny_cfg(subbackbone={"kwargs": {"dept": 2}}), "model.backbone.subbackbone.kwargs.dept"),
    (_tiny_cfg(subbackbone={"arch": "vit_tiny"}), "model.backbone.subbackbone.arch"),
    (_tiny_cfg(pretrain={"state_dict_key": "x"}), "model.backbone.pretrain.path"),
])
def test_backbone_config_errors_name_the_key(cfg: dict, key: str) -> None:
    with pytest.raises(ValueError, match=key.replace(".", r"\.")):
        with torch.device("meta"):  # building is the check (as the run plan builds it)
            build_backbone(shape_only(section(BackboneConfig, cfg, "model.backbone")))


def test_builder_signatures_publish_the_accepted_kwargs() -> None:
    slowfast = inspect.signature(BACKBONES["slowfast101"]).parameters
    assert "layers" not in slowfast and slowfast["width_mult"].default == 1.0 and slowfast["alpha"].default == 8
    giant = inspect.signature(VITS["vit_giant_patch14_224"]).parameters
    assert (giant["patch_size"].default, giant["embed_dim"].default, giant["depth"].default) == (14, 1408, 40)
    assert "attn_impl" in giant and "all_frames" in giant
    assert inspect.signature(VITS["vit_base_patch16_224"]).parameters["embed_dim"].default == 768


@pytest.mark.parametrize("name", sorted(VIT_SIZES))
def test_vit_builders_come_from_the_size_table(name: str) -> None:
    """Each named builder takes its size's defaults, lets a call override them, and the config
    checker rejects an unknown kwarg against VisionTransformer's own argument list."""
    assert set(VITS) == set(VIT_SIZES)
    parameters = inspect.signature(VITS[name]).parameters
    assert list(parameters) == list(inspect.signature(VisionTransformer).parameters)
    assert all(parameters[key].default == value for key, value in VIT_SIZES[name].items())
    patch = VIT_SIZES[name]["patch_size"]
    tiny = VITS[name](img_size=2 * patch, all_frames=4, depth=1, embed_dim=24, num_heads=2, num_classes=0)
    assert (len(tiny.blocks), tiny.embed_dim, tiny.grid_size) == (1, 24, (2, 2, 2))
    assert tiny.patch_embed.proj.kernel_size == (2, patch, patch)
    with pytest.raises(ConfigError, match=r"subbackbone\.kwargs\.dept: unknown key; did you mean 'depth'\?; "
                                               r"accepted: img_size, patch_size, in_chans, .*, attn_impl$"):
        check_kwargs(VITS[name], {"dept": 2}, "model.backbone.subbackbone.kwargs")
