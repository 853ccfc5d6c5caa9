"""The assembled model: build from config, checkpoint layout, multi-view evaluation, freezing, gradients."""
from __future__ import annotations

import copy
import json
import logging
from pathlib import Path

import pytest
import torch
import yaml
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from config import BackboneConfig, ConfigError, LossConfig, ModelConfig, check_kwargs, section
from models.backbones import BACKBONES
from models.build import backbone_channels, build_model, model_spec
from models.heads import HeadWrapper
from models.losses import ava_criterion
from models.model import AVAModel
from models.necks import BasicNeck
from models.weights import load_model_checkpoint, load_state_dict_strict
from structures.batch import ClipView, EvalBatch, Keyframes, TrainBatch

ROOT = Path(__file__).resolve().parents[1]
EVAL_CONFIG = ROOT / "configs" / "eval_VITSF_ACAR_HR2O_CW.yaml"
LAYOUT = ROOT / "tests" / "data" / "models" / "checkpoint_layout.tsv"


def _eval_config() -> dict:
    return yaml.safe_load(EVAL_CONFIG.read_text(encoding="utf-8"))


def _tiny_model_cfg(learnable: bool = True, eval_mode: bool = False) -> dict:
    """The eval config shrunk: SlowFast x0.25 (slow 512 + fast 64) and a 2-block ViT of width 64."""
    model_cfg = copy.deepcopy(_eval_config()["model"])
    model_cfg["backbone"]["learnable"] = learnable
    model_cfg["backbone"]["kwargs"]["width_mult"] = 0.25
    model_cfg["backbone"]["subbackbone"] = {
        "kwargs": {"depth": 2, "embed_dim": 64, "num_heads": 2, "img_size": 112, "all_frames": 8, "patch_size": 16},
        "eval_mode": eval_mode,
    }
    model_cfg["head"]["kwargs"].update(width=640, reduce_dim=64, hidden_dim=32)
    return model_cfg


def _build(model_cfg: dict, loss_cfg: dict) -> AVAModel:
    """``build_model`` on the typed sections of plain ``model:`` / ``loss:`` mappings."""
    return build_model(model_spec(section(ModelConfig, model_cfg, "model"), section(LossConfig, loss_cfg, "loss")))


def _check(model_cfg: dict, loss_cfg: dict) -> None:
    """The pre-spawn check of builder names and kwargs (the run plan's: building on the meta device)."""
    spec = model_spec(section(ModelConfig, model_cfg, "model"), section(LossConfig, loss_cfg, "loss"))
    with torch.device("meta"):
        build_model(spec.without_weight_files())


def _labels() -> list[list[dict]]:
    return [
        [{"bounding_box": [0.1, 0.1, 0.5, 0.9], "label": [1, 20], "person_id": [0]},
         {"bounding_box": [0.4, 0.2, 0.9, 0.8], "label": [3], "person_id": [1]}],
        [{"bounding_box": [0.2, 0.3, 0.6, 0.7], "label": [14], "person_id": [0]}],
    ]


def _aug(crop=(0.0, 0.0, 1.0, 1.0), flip=False) -> dict:
    return {"crop_box": list(crop), "flip": flip, "pad_ratio": [1.0, 1.0]}


@pytest.fixture(scope="module")
def tiny_model() -> AVAModel:
    torch.manual_seed(0)
    return _build(_tiny_model_cfg(), _eval_config()["loss"])


def _tiny_batch(seed: int = 0) -> TrainBatch:
    clips = torch.randn(2, 3, 8, 112, 112, generator=torch.Generator().manual_seed(seed))
    return TrainBatch(ClipView(clips, [_aug(), _aug()]), Keyframes(_labels(), ["a", "b"], ["902", "17"], [4, 5]))


# --- layout -------------------------------------------------------------------------------------


def test_eval_config_builds_exactly_the_released_checkpoint_layout() -> None:
    config = _eval_config()
    with torch.device("meta"):
        model = _build(config["model"], config["loss"])
    state = model.state_dict()
    rows = [line.split("\t") for line in LAYOUT.read_text(encoding="utf-8").splitlines()[1:]]
    expected = {key: (json.loads(shape), dtype) for key, shape, dtype in rows}
    ours = {"module." + key: (list(t.shape), str(t.dtype).removeprefix("torch.")) for key, t in state.items()}
    assert len(rows) == 1210
    missing = [key for key in expected if key not in ours]
    unexpected = [key for key in ours if key not in expected]
    assert (missing, unexpected) == ([], [])
    assert list(ours) == [row[0] for row in rows], "state_dict order differs from the original's"
    assert [key for key in expected if ours[key] != expected[key]] == []
    assert sum(p.numel() for p in model.parameters()) == 1_089_875_224
    assert len(list(model.parameters())) == 877


@pytest.mark.slow
def test_depth2_checkpoint_in_the_original_format_loads_strictly_and_evaluates(tmp_path: Path) -> None:
    config = _eval_config()
    config["model"]["backbone"]["subbackbone"] = {"kwargs": {"depth": 2}}
    torch.manual_seed(0)
    model = _build(config["model"], config["loss"])
    path = tmp_path / "ckpt_3.pth.tar"
    state = {"module." + key: value for key, value in model.state_dict().items()}
    torch.save({"epoch": 3, "state_dict": state, "optimizer": {}, "scheduler": {}}, path)
    del state

    torch.manual_seed(1)
    fresh = _build(config["model"], config["loss"])
    checkpoint = load_model_checkpoint(path)
    assert checkpoint["epoch"] == 3
    load_state_dict_strict(fresh, checkpoint["state_dict"], str(path))
    assert all(torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), model.state_dict().values()))

    fresh.eval()
    clips = torch.randn(1, 3, 32, 224, 224, generator=torch.Generator().manual_seed(0))
    labels = [[{"bounding_box": [0.1, 0.2, 0.4, 0.9], "label": [0], "person_id": [0]},
               {"bounding_box": [0.5, 0.1, 0.9, 0.95], "label": [0], "person_id": [0]}]]
    out = fresh.predict(EvalBatch([ClipView(clips, [_aug()])], Keyframes(labels, ["v"], ["902"], [0])))
    assert out.logits.shape == (2, 50) and torch.isfinite(out.logits).all()
    scores = fresh.activation(out.logits)
    assert scores[:, :13].sum(dim=1).tolist() == pytest.approx([1.0, 1.0], abs=1e-5)


# --- build and config checks --------------------------------------------------------------------


def test_head_width_must_match_the_backbone_channels() -> None:
    config = _eval_config()
    config["model"]["head"]["kwargs"]["width"] = 3000
    with pytest.raises(ConfigError, match=r"model\.head\.kwargs\.width: .*2048 \+ fast 256 \+ vit 1408 = 3712"):
        with torch.device("meta"):
            _build(config["model"], config["loss"])
    assert backbone_channels(section(BackboneConfig, _tiny_model_cfg()["backbone"], "model.backbone")) == (512, 64, 64)


def test_unknown_names_are_errors_naming_the_key() -> None:
    config = _eval_config()
    bad = copy.deepcopy(config)
    bad["model"]["head"]["type"] = "acr"
    with pytest.raises(ConfigError, match=r"model\.head\.type: unknown value 'acr'; did you mean 'acar'\?"):
        _check(bad["model"], bad["loss"])
    bad = copy.deepcopy(config)
    bad["model"]["head"]["kwargs"]["roi_spatal"] = 7
    with pytest.raises(ConfigError, match=r"model\.head\.kwargs\.roi_spatal: unknown key; did you mean 'roi_spatial'"):
        _check(bad["model"], bad["loss"])
    bad = copy.deepcopy(config)
    bad["model"]["head"]["kwargs"]["vit_channels"] = 1408
    with pytest.raises(ConfigError, match=r"model\.head\.kwargs\.vit_channels: is set by the code, not the config"):
        _check(bad["model"], bad["loss"])
    bad = copy.deepcopy(config)
    bad["model"]["neck"]["kwargs"]["jitter"] = {}
    with pytest.raises(ConfigError, match=r"model\.neck\.kwargs\.jitter: .*accepted: aug_threshold, bbox_jitter"):
        _check(bad["model"], bad["loss"])
    bad = copy.deepcopy(config)
    bad["loss"] = {"type": "ava_criterion", "kwargs": {"pose_softmaxx": True}}
    with pytest.raises(ConfigError, match=r"loss\.kwargs\.pose_softmaxx"):
        _check(bad["model"], bad["loss"])
    bad = copy.deepcopy(config)
    del bad["model"]["head"]["kwargs"]["width"]
    with pytest.raises(ConfigError, match=r"model\.head\.kwargs\.width: missing required key"):
        _check(bad["model"], bad["loss"])


def test_check_kwargs_follows_pass_through_builders_to_their_class() -> None:
    check_kwargs(BACKBONES["slowfast50"], {"alpha": 4, "width_mult": 0.5}, "model.backbone.kwargs")
    with pytest.raises(ConfigError, match=r"model\.backbone\.kwargs\.alfa: unknown key"):
        check_kwargs(BACKBONES["slowfast50"], {"alfa": 4}, "model.backbone.kwargs")
    with pytest.raises(ConfigError, match="expected a mapping"):
        check_kwargs(ava_criterion, [1, 2], "loss.kwargs")


def test_neck_and_head_class_counts_must_agree() -> None:
    config = _eval_config()
    config["model"]["head"]["kwargs"]["num_classes"] = 60
    with pytest.raises(ConfigError, match=r"model\.head\.kwargs\.num_classes: the head predicts 60 .* is 50"):
        with torch.device("meta"):
            _build(config["model"], config["loss"])


def test_linear_head_config_builds() -> None:
    config = _eval_config()
    config["model"]["head"] = {"type": "linear", "kwargs": {"width": 3712, "num_classes": 50}}
    with torch.device("meta"):
        model = _build(config["model"], config["loss"])
    assert [key for key in model.state_dict() if key.startswith("head.")] == ["head.module.fc.weight"]


# --- multi-view evaluation with a fake backbone and head ----------------------------------------


class _PassThrough(nn.Module):
    """Backbone stand-in: the clip is the only feature; counts its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.bn = nn.BatchNorm3d(3)
        self.calls = 0

    def forward(self, clips: torch.Tensor) -> list[torch.Tensor]:
        self.calls += 1
        return [clips]


class _Echo(nn.Module):
    """Head stand-in: logits = [clip value, x1, x2] of each RoI."""

    num_classes = 3

    def forward(self, features, rois, roi_ids, sizes_before_padding) -> torch.Tensor:
        clip_value = features[0][rois[:, 0].long(), 0, 0, 0, 0]
        return torch.stack([clip_value, rois[:, 1], rois[:, 3]], dim=1)


def _fake_model() -> AVAModel:
    return AVAModel(_PassThrough(), BasicNeck(num_classes=3), HeadWrapper(_Echo()), ava_criterion()).eval()


def _fake_batch(labels: list[list[dict]], views: list[tuple[float, dict]]) -> EvalBatch:
    count = len(labels)
    return EvalBatch([ClipView(torch.full((count, 3, 1, 1, 1), value), [aug] * count) for value, aug in views],
                     Keyframes(labels, [f"v{i}" for i in range(count)], [str(i) for i in range(count)],
                               [7 + 2 * i for i in range(count)]))


def _box(box: list[float]) -> dict:
    return {"bounding_box": box, "label": [0], "person_id": [0]}


def test_logits_are_averaged_over_the_views_where_the_box_survived() -> None:
    labels = [[_box([0.1, 0.1, 0.4, 0.9]), _box([0.6, 0.2, 0.9, 0.8])], [_box([0.0, 0.0, 1.0, 1.0])]]
    views = [(1.0, _aug()), (3.0, _aug(crop=(0.5, 0.0, 1.0, 1.0))), (5.0, _aug(flip=True))]
    out = _fake_model().predict(_fake_batch(labels, views))
    # Box 1 lies left of view 2's crop: mean of views 1 and 3 only -> clip value (1 + 5) / 2.
    expected = [[3.0, (0.1 + 0.6) / 2, (0.4 + 0.9) / 2],
                [3.0, (0.6 + 0.2 + 0.1) / 3, (0.9 + 0.8 + 0.4) / 3],
                [3.0, 0.0, 1.0]]
    assert out.logits.dtype == torch.float32
    assert out.logits.tolist() == [pytest.approx(row, abs=1e-6) for row in expected]
    assert out.filenames == ["v0", "v0", "v1"]
    assert out.mid_times == ["0", "0", "1"]
    assert out.bboxes == [[0.1, 0.1, 0.4, 0.9], [0.6, 0.2, 0.9, 0.8], [0.0, 0.0, 1.0, 1.0]]
    assert out.element_index == [7, 7, 9]
    assert out.box_index == [0, 1, 0]


def test_zero_area_box_is_dropped_and_the_rest_stays_aligned() -> None:
    # Quirk 4 fixed: the original raised IndexError (or misaligned) when such a box came first.
    labels = [[_box([0.3, 0.3, 0.3, 0.6]), _box([0.2, 0.2, 0.7, 0.9])], [_box([0.5, 0.5, 0.8, 0.8])]]
    views = [(2.0, _aug()), (4.0, _aug(flip=True))]
    out = _fake_model().predict(_fake_batch(labels, views))
    assert out.box_index == [1, 0] and out.element_index == [7, 9]
    assert out.logits.tolist() == [pytest.approx([3.0, 0.25, 0.75]), pytest.approx([3.0, 0.35, 0.65])]


def test_evaluation_without_any_box_returns_empty_outputs() -> None:
    model = _fake_model()
    out = model.predict(_fake_batch([[], []], [(1.0, _aug()), (2.0, _aug())]))
    assert out.logits.shape == (0, 3)
    assert out.filenames == out.mid_times == out.bboxes == out.element_index == out.box_index == []
    assert model.backbone.calls == 0


def test_training_forward_with_and_without_boxes() -> None:
    model = _fake_model().train()
    view = ClipView(torch.ones(1, 3, 1, 1, 1), [_aug()])
    out = model(TrainBatch(view, Keyframes([[_box([0.2, 0.2, 0.6, 0.6])]], ["v"], ["1"], [0])))
    assert out.num_rois == 1 and out.logits.shape == (1, 3) and out.targets.tolist() == [[1.0, 0.0, 0.0]]
    empty = model(TrainBatch(view, Keyframes([[]], ["v"], ["1"], [0])))
    assert empty.num_rois == 0 and empty.logits.shape == (0, 3) and empty.targets.shape == (0, 3)


# --- tiny real model: modes, gradients ----------------------------------------------------------


def test_train_returns_self_and_freezes_only_backbone_batchnorms(tiny_model: AVAModel) -> None:
    assert tiny_model.train() is tiny_model
    backbone_bns = [m for m in tiny_model.backbone.modules() if "BatchNorm" in type(m).__name__]
    assert len(backbone_bns) == 110
    assert not any(m.training for m in backbone_bns)
    assert tiny_model.backbone.module.training  # convs etc. still train
    assert tiny_model.head.module.BN_vit.training  # quirk 7, kept
    assert tiny_model.backbone.submodule.training  # quirk 6, kept: ViT drop-path active
    assert tiny_model.eval() is tiny_model and not any(m.training for m in tiny_model.modules())


def test_freeze_bn_selects_the_batchnorms_by_type_as_the_old_name_rule_did(tiny_model: AVAModel) -> None:
    by_type = [name for name, m in tiny_model.backbone.named_modules() if isinstance(m, _BatchNorm)]
    by_name = [name for name, m in tiny_model.backbone.named_modules() if "BatchNorm" in type(m).__name__]
    assert by_type == by_name and len(by_type) > 50  # every SlowFast BatchNorm3d, nothing else
    assert tiny_model.freeze_bn
    tiny_model.train()
    frozen = [name for name, m in tiny_model.backbone.named_modules() if not m.training]
    # The ViT is eval at construction and frozen, but trains with the model (quirk 6).
    assert frozen == by_type


def test_vit_eval_mode_option_keeps_the_vit_in_eval() -> None:
    torch.manual_seed(0)
    model = _build(_tiny_model_cfg(eval_mode=True), _eval_config()["loss"]).train()
    assert not any(m.training for m in model.backbone.submodule.modules())
    assert model.head.module.training


def test_tiny_forward_backward_gradients_only_where_learnable(tiny_model: AVAModel) -> None:
    tiny_model.train()
    tiny_model.zero_grad(set_to_none=True)
    bn = tiny_model.backbone.module.slow_bn1
    bn_stats = bn.running_mean.clone()
    vit_bn_stats = tiny_model.head.module.BN_vit.running_mean.clone()
    out = tiny_model(_tiny_batch())
    assert out.num_rois == 3 and out.logits.shape == (3, 50) and out.targets.shape == (3, 50)
    loss = tiny_model.loss(out.logits, out.targets)
    loss.backward()
    assert torch.isfinite(loss)
    vit = tiny_model.backbone.submodule
    assert all(not p.requires_grad and p.grad is None for p in vit.parameters())
    assert all(p.grad is not None for p in tiny_model.backbone.module.parameters())
    assert all(p.grad is not None for p in tiny_model.head.parameters())
    assert torch.equal(bn.running_mean, bn_stats), "frozen backbone BN statistics moved"
    assert not torch.equal(tiny_model.head.module.BN_vit.running_mean, vit_bn_stats)


def test_frozen_slowfast_gets_no_gradient() -> None:
    torch.manual_seed(0)
    model = _build(_tiny_model_cfg(learnable=False), _eval_config()["loss"]).train()
    out = model(_tiny_batch())
    model.loss(out.logits, out.targets).backward()
    assert all(p.grad is None for p in model.backbone.parameters())
    assert all(p.grad is not None for p in model.head.parameters())


def test_tiny_evaluation_with_two_views(tiny_model: AVAModel) -> None:
    tiny_model.eval()
    batch = _tiny_batch()
    single = tiny_model.predict(EvalBatch([batch.view], batch.keyframes))
    double = tiny_model.predict(EvalBatch([batch.view] * 2, batch.keyframes))
    assert single.logits.shape == (3, 50)
    assert torch.allclose(single.logits, double.logits, atol=1e-5)
    assert single.box_index == [0, 1, 0] and single.element_index == [4, 4, 5]
    assert single.mid_times == ["902", "902", "17"]


def test_only_the_model_a_run_uses_logs_its_line(caplog: pytest.LogCaptureFixture, tmp_path: Path) -> None:
    # The run plan builds the same backbone and model on the meta device (twice when it infers the
    # variant); a run's log must describe its model once, not once per check.
    from config import load_config
    from engine.plan import make_plan
    from tests.engine_fixtures import write_tiny_config

    cfg = load_config(write_tiny_config(tmp_path / "tiny.yaml", tmp_path / "run"))
    caplog.set_level(logging.DEBUG, logger="models")
    plan = make_plan(cfg)
    assert not [record for record in caplog.records if record.levelno >= logging.INFO], caplog.text
    caplog.clear()
    build_model(plan.model)
    lines = [record.getMessage() for record in caplog.records if record.levelno >= logging.INFO]
    assert len(lines) == 1, lines
    assert lines[0].startswith("model: backbone slowfast50 (slow, fast channels (512, 256)) + frozen "
                               "vit_small_patch16_224 (2 blocks, width 96")
