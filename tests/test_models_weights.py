"""Weight loading: pretrained SlowFast / ViT files and full checkpoints, with errors that name the culprit."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from torch import nn

from config import BackboneConfig, section
from models.backbones import build_backbone
from models.backbones.slowfast import SlowFast
from models.backbones.vit import VisionTransformer
from models.weights import (
    WeightsError,
    load_model_checkpoint,
    load_slowfast_pretrain,
    load_state_dict_strict,
    load_vit_checkpoint,
    load_weights_file,
    trusted_checkpoints,
)

SLOWFAST = {"alpha": 4, "beta": 0.125, "fuse_only_conv": False, "fuse_kernel_size": 7, "slow_full_span": True}
TINY_VIT = {"depth": 2, "embed_dim": 96, "num_heads": 4, "img_size": 112, "all_frames": 8, "patch_size": 16,
            "num_classes": 80}


def _slowfast(seed: int, width_mult: float = 0.25) -> SlowFast:
    torch.manual_seed(seed)
    return SlowFast([1, 1, 1, 1], **SLOWFAST, width_mult=width_mult)


def _vit(seed: int, **overrides: object) -> VisionTransformer:
    torch.manual_seed(seed)
    vit = VisionTransformer(**{**TINY_VIT, **overrides})
    with torch.no_grad():  # the head is zero-initialised (init_scale 0); make it distinguishable
        vit.head.weight.normal_()
    return vit


def _assert_same_state(a: nn.Module, b: nn.Module) -> None:
    state_b = b.state_dict()
    for key, value in a.state_dict().items():
        assert torch.equal(value, state_b[key]), key


def _videomae_file(vit: VisionTransformer) -> dict[str, torch.Tensor]:
    """A VideoMAE-v2 style state dict: pooled norm stored as `norm.*`."""
    state = dict(vit.state_dict())
    state["norm.weight"] = state.pop("fc_norm.weight")
    state["norm.bias"] = state.pop("fc_norm.bias")
    return state


def test_load_weights_file_round_trip_and_errors(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    torch.save({"a": torch.arange(3)}, path)
    assert torch.equal(load_weights_file(path)["a"], torch.arange(3))
    legacy = tmp_path / "legacy_format.pth"  # pre-1.6 serialisation: not a zip, read without mmap
    torch.save({"a": torch.arange(3)}, legacy, _use_new_zipfile_serialization=False)
    assert torch.equal(load_weights_file(legacy)["a"], torch.arange(3))
    with pytest.raises(FileNotFoundError, match="absent.pth"):
        load_weights_file(tmp_path / "absent.pth")
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n", encoding="utf-8")
    with pytest.raises(WeightsError, match="notes.pth"):
        load_weights_file(text)


class _TrainArgs:
    """A custom class in a checkpoint: loading it needs full unpickling."""

    def __init__(self, lr: float) -> None:
        self.lr = lr


def test_load_weights_file_falls_back_to_full_unpickling_with_a_warning(tmp_path: Path, caplog) -> None:
    path = tmp_path / "legacy.pth.tar"
    torch.save({"args": _TrainArgs(lr=0.1), "w": torch.ones(2)}, path)
    with pytest.raises(WeightsError, match="trust_checkpoints"):  # full unpickling is opt-in
        load_weights_file(path)
    with caplog.at_level(logging.WARNING, logger="models.weights"), trusted_checkpoints(True):
        obj = load_weights_file(path)
    assert obj["args"].lr == 0.1
    assert "legacy.pth.tar" in caplog.text and "executes code" in caplog.text


def test_slowfast_pretrain_round_trip(tmp_path: Path, caplog) -> None:
    source, target = _slowfast(1), _slowfast(2)
    path = tmp_path / "k400.pth"
    torch.save(source.state_dict(), path)
    with caplog.at_level(logging.INFO, logger="models.weights"):
        report = load_slowfast_pretrain(target, path)
    _assert_same_state(source, target)
    assert report.loaded == len(source.state_dict()) and not report.missing and not report.unexpected
    assert f"loaded {report.loaded} of {report.loaded} keys" in caplog.text


def test_slowfast_pretrain_prefix_options(tmp_path: Path, caplog) -> None:
    source, target = _slowfast(1), _slowfast(2)
    state = {f"module.backbone.{key}": value for key, value in source.state_dict().items()}
    state["fc.weight"] = torch.zeros(400, 2048)  # a Kinetics classifier: deleted by the prefix option
    state["module.backbone.extra.bias"] = torch.zeros(3)  # redundant after renaming: ignored, logged
    path = tmp_path / "nested.pth.tar"
    torch.save({"epoch": 7, "state_dict": state}, path)
    with caplog.at_level(logging.INFO, logger="models.weights"):
        report = load_slowfast_pretrain(target, path, state_dict_key="state_dict", delete_prefix="fc.",
                                        replace_prefix="module.backbone.", replace_to="")
    _assert_same_state(source, target)
    assert report.unexpected == ["extra.bias"]
    assert "1 redundant keys ignored: extra.bias" in caplog.text


def test_slowfast_pretrain_partial_file_keeps_the_rest(tmp_path: Path, caplog) -> None:
    source, target = _slowfast(1), _slowfast(2)
    before = target.slow_conv1.weight.clone()
    state = {key: value for key, value in source.state_dict().items() if not key.startswith("slow_conv1")}
    path = tmp_path / "partial.pth"
    torch.save(state, path)
    with caplog.at_level(logging.WARNING, logger="models.weights"):
        report = load_slowfast_pretrain(target, path)
    assert report.missing == ["slow_conv1.weight"]
    assert torch.equal(target.slow_conv1.weight, before)
    assert torch.equal(target.fast_conv1.weight, source.fast_conv1.weight)
    assert "slow_conv1.weight" in caplog.text


def test_slowfast_pretrain_zero_matching_keys_is_an_error(tmp_path: Path) -> None:
    state = {f"model.{key}": value for key, value in _slowfast(1).state_dict().items()}
    path = tmp_path / "wrong_nesting.pth"
    torch.save(state, path)
    with pytest.raises(WeightsError) as info:
        load_slowfast_pretrain(_slowfast(2), path)
    message = str(info.value)
    assert "wrong_nesting.pth" in message
    assert "model.fast_conv1.weight" in message and "fast_conv1.weight" in message
    assert "'model.'" in message  # hint: a prefix shared by every key


def test_slowfast_pretrain_missing_state_dict_key(tmp_path: Path) -> None:
    path = tmp_path / "flat.pth"
    torch.save(_slowfast(1).state_dict(), path)
    with pytest.raises(WeightsError, match="no entry 'state_dict'.*fast_conv1.weight"):
        load_slowfast_pretrain(_slowfast(2), path, state_dict_key="state_dict")


def test_slowfast_pretrain_shape_mismatch_names_key_and_shapes(tmp_path: Path) -> None:
    path = tmp_path / "wider.pth"
    torch.save(_slowfast(1, width_mult=0.5).state_dict(), path)
    with pytest.raises(WeightsError) as info:
        load_slowfast_pretrain(_slowfast(2), path)
    message = str(info.value)
    assert "wider.pth" in message
    assert "fast_conv1.weight: file [4, 3, 5, 7, 7] vs model [2, 3, 5, 7, 7]" in message


def test_vit_checkpoint_unwraps_and_renames_norm(tmp_path: Path) -> None:
    source, target = _vit(1), _vit(2)
    path = tmp_path / "vit_g_clean.pth"
    torch.save({"model": _videomae_file(source), "epoch": 3}, path)
    load_vit_checkpoint(target, path)
    _assert_same_state(source, target)
    torch.save({"module": _videomae_file(source)}, path)
    load_vit_checkpoint(_vit(3), path)


def test_vit_checkpoint_without_norm_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "no_norm.pth"
    torch.save(dict(_vit(1).state_dict()), path)  # fc_norm.* but no norm.*
    with pytest.raises(WeightsError, match=r"no_norm\.pth.*norm\.weight"):
        load_vit_checkpoint(_vit(2), path)


def test_vit_checkpoint_mismatch_names_file_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "vit_deeper.pth"
    torch.save(_videomae_file(_vit(1, depth=3)), path)
    with pytest.raises(WeightsError) as info:
        load_vit_checkpoint(_vit(2), path)
    message = str(info.value)
    assert "vit_deeper.pth" in message and "0 missing, 13 unexpected" in message
    assert "blocks.2.norm1.weight" in message
    # the position table is fixed, never loaded: a file that has one does not fit (as the original)
    path_pos = tmp_path / "vit_pos.pth"
    torch.save({**_videomae_file(_vit(1)), "pos_embed": torch.zeros(1, 196, 96)}, path_pos)
    with pytest.raises(WeightsError, match=r"vit_pos\.pth.*1 unexpected.*pos_embed"):
        load_vit_checkpoint(_vit(2), path_pos)
    path_wide = tmp_path / "vit_wide.pth"
    torch.save(_videomae_file(_vit(1, embed_dim=128)), path_wide)
    with pytest.raises(WeightsError, match=r"patch_embed\.proj\.weight: file \[128, 3, 2, 16, 16\] vs model "
                                           r"\[96, 3, 2, 16, 16\]"):
        load_vit_checkpoint(_vit(2), path_wide)


class _Wrapped(nn.Module):
    """Stands in for DistributedDataParallel: the model under `.module`."""

    def __init__(self, inner: nn.Module) -> None:
        super().__init__()
        self.module = inner


def test_model_checkpoint_and_strict_loading_with_or_without_ddp_prefix(tmp_path: Path) -> None:
    source = _slowfast(1)
    path = tmp_path / "ckpt_12.pth.tar"
    ddp_state = {f"module.{key}": value for key, value in source.state_dict().items()}
    torch.save({"epoch": 12, "state_dict": ddp_state, "optimizer": {}, "scheduler": {}}, path)
    checkpoint = load_model_checkpoint(path)
    assert checkpoint["epoch"] == 12 and set(checkpoint) == {"epoch", "state_dict", "optimizer", "scheduler"}
    plain, wrapped = _slowfast(2), _Wrapped(_slowfast(3))
    load_state_dict_strict(plain, checkpoint["state_dict"], str(path))
    load_state_dict_strict(wrapped, checkpoint["state_dict"], str(path))
    load_state_dict_strict(_Wrapped(_slowfast(4)), source.state_dict(), "in-memory")
    _assert_same_state(source, plain)
    _assert_same_state(source, wrapped.module)


def test_strict_loading_mismatch_lists_counts_and_keys(tmp_path: Path) -> None:
    state = dict(_slowfast(1).state_dict())
    del state["Tconv4.1.running_var"]
    state["head.module.fc1.weight"] = torch.zeros(2, 2)
    state["fast_bn1.weight"] = torch.zeros(5)
    with pytest.raises(WeightsError) as info:
        load_state_dict_strict(_slowfast(2), state, "ckpt_3.pth.tar")
    message = str(info.value)
    assert message.startswith("ckpt_3.pth.tar: ")
    assert "1 missing, 1 unexpected, 1 with another shape" in message
    assert "Tconv4.1.running_var" in message and "head.module.fc1.weight" in message
    assert "fast_bn1.weight: file [5] vs model [2]" in message


def test_model_checkpoint_without_state_dict_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "weights_only.pth"
    torch.save(_slowfast(1).state_dict(), path)
    with pytest.raises(WeightsError, match=r"weights_only\.pth: not a model checkpoint"):
        load_model_checkpoint(path)


def test_build_backbone_loads_both_pretrained_files(tmp_path: Path) -> None:
    slowfast_file, vit_file = tmp_path / "SLOWFAST_R50_K400.pth.tar", tmp_path / "vit_clean.pth"
    torch.manual_seed(1)
    reference = build_backbone(section(BackboneConfig, {"arch": "slowfast50", "kwargs": {**SLOWFAST, "width_mult": 0.25},
                                                        "subbackbone": {"kwargs": TINY_VIT}}, "model.backbone"))
    torch.save({"state_dict": {f"backbone.{k}": v for k, v in reference.module.state_dict().items()}}, slowfast_file)
    torch.save({"model": _videomae_file(reference.submodule)}, vit_file)
    torch.manual_seed(2)
    loaded = build_backbone(section(BackboneConfig, {
        "arch": "slowfast50", "learnable": True, "kwargs": {**SLOWFAST, "width_mult": 0.25},
        "pretrain": {"path": str(slowfast_file), "state_dict_key": "state_dict", "replace_prefix": "backbone."},
        "subbackbone": {"path": str(vit_file), "kwargs": TINY_VIT},
    }, "model.backbone"))
    _assert_same_state(reference, loaded)
    assert not any(p.requires_grad for p in loaded.submodule.parameters())
