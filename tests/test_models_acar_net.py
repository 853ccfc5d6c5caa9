"""ACAR-Net's AVA models built from its own YAML: layout of the model-zoo files, width rule, pretrain."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from config import ConfigError, LossConfig, ModelConfig, load_config, section
from engine.plan import make_plan
from models.backbones import DualBackbone, SlowFastBackbone
from models.build import ACAR_NET, SFMVIT, ModelSpec, build_model, model_spec, model_variant
from models.weights import WeightsError, load_model_pretrain

ROOT = Path(__file__).resolve().parents[1]
AVA_CONFIGS = ROOT / "configs" / "ava"
LAYOUTS = ROOT / "tests" / "data" / "models"


def _config(name: str) -> dict:
    return yaml.safe_load((AVA_CONFIGS / name).read_text(encoding="utf-8"))


def _spec(model: dict, loss: dict) -> ModelSpec:
    """The model of plain ``model:`` / ``loss:`` mappings, its variant resolved as a run resolves it."""
    return model_spec(section(ModelConfig, model, "model"), section(LossConfig, loss, "loss"))


def _layout(name: str) -> dict[str, tuple[list[int], str]]:
    rows = [line.split("\t") for line in (LAYOUTS / name).read_text(encoding="utf-8").splitlines()[1:]]
    return {key: (json.loads(shape), dtype) for key, shape, dtype in rows}


@pytest.mark.parametrize(("config", "layout", "count"), [
    ("eval_SLOWFAST_R50_ACAR_HR2O.yaml", "AVA_SLOWFAST_R50_ACAR_HR2O_layout.tsv", 677),
    ("eval_SLOWFAST_R101_ACAR_HR2O_DEPTH1.yaml", "AVA_SLOWFAST_R101_ACAR_HR2O_DEPTH1_layout.tsv", 1263),
])
def test_acar_net_eval_configs_build_exactly_the_model_zoo_layout(config: str, layout: str, count: int) -> None:
    cfg = _config(config)
    assert model_variant(section(ModelConfig, cfg["model"], "model")) == ACAR_NET
    with torch.device("meta"):
        model = build_model(_spec(cfg["model"], cfg["loss"]))
    expected = _layout(layout)
    ours = {"module." + key: (list(t.shape), str(t.dtype).removeprefix("torch."))
            for key, t in model.state_dict().items()}
    assert len(expected) == count
    assert [key for key in expected if key not in ours] == []
    assert [key for key in ours if key not in expected] == []
    assert {key: value for key, value in ours.items() if expected[key] != value} == {}
    assert list(ours) == list(expected)  # same order as ACAR-Net's state_dict
    assert isinstance(model.backbone, SlowFastBackbone) and not model.backbone.has_vit
    assert not hasattr(model.head.module, "BN_vit") and not hasattr(model.head.module, "conv_auto")


def test_sfmvit_width_keeps_the_dual_backbone() -> None:
    cfg = yaml.safe_load((ROOT / "configs" / "eval_VITSF_ACAR_HR2O_CW.yaml").read_text(encoding="utf-8"))
    assert model_variant(section(ModelConfig, cfg["model"], "model")) == SFMVIT
    with torch.device("meta"):
        model = build_model(_spec(cfg["model"], cfg["loss"]))
    assert isinstance(model.backbone, DualBackbone) and hasattr(model.head.module, "BN_vit")
    assert model.backbone.has_vit


def test_width_rule_follows_the_backbone_kwargs_not_a_fixed_number() -> None:
    cfg = _config("eval_SLOWFAST_R50_ACAR_HR2O.yaml")
    cfg["model"]["backbone"]["kwargs"]["width_mult"] = 0.25  # slow 512 + fast 64
    cfg["model"]["head"]["kwargs"]["width"] = 576
    assert model_variant(section(ModelConfig, cfg["model"], "model")) == ACAR_NET
    cfg["model"]["head"]["kwargs"]["width"] = 2304
    with pytest.raises(ConfigError, match=r"model\.head\.kwargs\.width: .*slow 512 \+ fast 64 = 576 "
                                               r"\(ACAR-Net, no ViT\) .*vit 1408 = 1984 \(SFMViT\), got 2304"):
        model_variant(section(ModelConfig, cfg["model"], "model"))


def test_slowfast_width_with_a_named_vit_is_an_error() -> None:
    cfg = _config("eval_SLOWFAST_R50_ACAR_HR2O.yaml")
    cfg["model"]["backbone"]["subbackbone"] = {"arch": "vit_small_patch16_224"}
    with pytest.raises(ConfigError, match=r"model\.head\.kwargs\.width: 2304 is the SlowFast channels.*"
                                               r"subbackbone names a ViT"):
        model_variant(section(ModelConfig, cfg["model"], "model"))


def test_bad_width_fails_before_spawn_naming_file_and_key(tmp_path: Path) -> None:
    cfg = _config("eval_SLOWFAST_R50_ACAR_HR2O.yaml")
    cfg["model"]["head"]["kwargs"]["width"] = 2048
    path = tmp_path / "bad_width.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"bad_width\.yaml: model\.head\.kwargs\.width: must equal .* got 2048"):
        make_plan(load_config(path))


def test_vit_cache_is_refused_for_a_model_without_vit(tmp_path: Path) -> None:
    cfg = _config("eval_SLOWFAST_R50_ACAR_HR2O.yaml")
    cfg["vit_cache"] = {"path": str(tmp_path), "mode": "lazy"}
    path = tmp_path / "cache.yaml"
    path.write_text(yaml.safe_dump(cfg), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"cache\.yaml: vit_cache\.mode: 'lazy' caches ViT features.*no ViT stream"):
        make_plan(load_config(path))


def test_acar_net_yaml_files_load_unchanged() -> None:
    for path in sorted(AVA_CONFIGS.glob("*SLOWFAST*.yaml")):
        cfg = load_config(path)
        assert make_plan(cfg).model.variant == ACAR_NET
    cfg = load_config(AVA_CONFIGS / "eval_SLOWFAST_R50_ACAR_HR2O.yaml")
    assert cfg.pretrain.path == "model_zoo/AVA_SLOWFAST_R50_ACAR_HR2O.pth.tar" and cfg.evaluate


def _tiny_acar_model_cfg() -> dict:
    cfg = copy.deepcopy(_config("eval_SLOWFAST_R50_ACAR_HR2O.yaml")["model"])
    cfg["backbone"]["kwargs"]["width_mult"] = 0.25
    cfg["head"]["kwargs"].update(width=576, reduce_dim=64, hidden_dim=32, depth=1)
    return cfg


def test_model_zoo_style_file_loads_through_top_level_pretrain(tmp_path: Path) -> None:
    loss = _config("eval_SLOWFAST_R50_ACAR_HR2O.yaml")["loss"]
    torch.manual_seed(0)
    source = build_model(_spec(_tiny_acar_model_cfg(), loss))
    zoo = tmp_path / "zoo.pth.tar"
    torch.save({"module." + key: value for key, value in source.state_dict().items()}, zoo)
    torch.manual_seed(1)
    target = build_model(_spec(_tiny_acar_model_cfg(), loss))
    report = load_model_pretrain(target, zoo)
    assert (report.loaded, report.missing, report.unexpected) == (len(source.state_dict()), [], [])
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value), key
    # ACAR-Net's optional key handling: state_dict_key, replace_prefix/replace_to, delete_prefix.
    nested = tmp_path / "nested.pth.tar"
    torch.save({"model": {"net." + key: value for key, value in source.state_dict().items()}}, nested)
    report = load_model_pretrain(target, nested, state_dict_key="model", replace_prefix="net.", replace_to="module.")
    assert report.missing == []
    report = load_model_pretrain(target, nested, state_dict_key="model", replace_prefix="net.",
                                 delete_prefix="net.head.")
    assert report.missing and all(key.startswith("head.") for key in report.missing)
    with pytest.raises(WeightsError, match=r"no entry 'weights'"):
        load_model_pretrain(target, nested, state_dict_key="weights")
    with pytest.raises(WeightsError, match=r"none of its .* keys matches the model.*state_dict_key"):
        load_model_pretrain(target, nested)


def test_acar_net_linear_baseline_builds_on_slowfast_alone() -> None:
    cfg = _config("SLOWFAST_R50_baseline.yaml")
    del cfg["model"]["backbone"]["pretrain"]  # the Kinetics file is not needed for the layout
    with torch.device("meta"):
        model = build_model(_spec(cfg["model"], cfg["loss"]))
    head = {key: list(t.shape) for key, t in model.state_dict().items() if key.startswith("head.")}
    assert head == {"head.module.fc.weight": [60, 2304]} and isinstance(model.backbone, SlowFastBackbone)


def test_r101_val_transforms_follow_its_config() -> None:
    """Scale 256 (short side), ToTensor with norm_value 1, per-channel mean/std, on a 453x340 AVA frame."""
    from PIL import Image

    from datasets.transforms import build_spatial_views

    chain = build_spatial_views(_config("eval_SLOWFAST_R101_ACAR_HR2O_DEPTH1.yaml")["val"]["augmentation"]["spatial"])
    assert len(chain) == 1
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (340, 453, 3), dtype=np.uint8)) for _ in range(2)]
    clip, aug = chain[0](frames)
    mean = np.array([110.63666788, 103.16065604, 96.29023126])
    std = np.array([38.7568578, 37.88248729, 40.02898126])
    # Independent computation: PIL bilinear to 341x256 (short side 256, int(256 * 453 / 340) = 341).
    expected = np.stack([(np.asarray(f.resize((341, 256), Image.BILINEAR), dtype=np.float32) - mean) / std
                         for f in frames])  # [T, H, W, C]
    assert list(clip.shape) == [3, 2, 256, 341]
    np.testing.assert_allclose(clip.permute(1, 2, 3, 0).numpy(), expected, rtol=0, atol=1e-5)
    assert aug["crop_box"] == [0.0, 0.0, 1.0, 1.0] and not aug["flip"]
