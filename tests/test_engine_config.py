"""Config loading: the original YAMLs, every kind of bad config, overrides, builders, paths."""
from __future__ import annotations

import copy
import hashlib
import json
import os
from pathlib import Path

import pytest
import yaml

from config import (
    Config,
    ConfigError,
    apply_overrides,
    check_kwargs,
    from_dict,
    load_config,
    lookup,
    to_dict,
)
from engine.plan import make_plan
from engine.preflight import check_paths

ROOT = Path(__file__).resolve().parents[1]
ORIGINAL_CONFIGS = sorted((ROOT / "configs").glob("*VITSF_ACAR_HR2O_CW*.yaml"))
TRAIN_YAML = ROOT / "configs" / "VITSF_ACAR_HR2O_CW_train.yaml"
EVAL_YAML = ROOT / "configs" / "eval_VITSF_ACAR_HR2O_CW.yaml"
TINY_YAML = ROOT / "tests" / "data" / "engine" / "tiny_cpu.yaml"


# Small stand-ins for builders, with the signatures the checks need.
def _vit(pretrained=False, **kwargs):
    return None


def _acar_head(width, roi_spatial=7, num_classes=60, depth=2, dropout=0.0):
    return None


class _CenterCrop:
    def __init__(self, size, step=1):
        pass


def _raw(path: Path = TRAIN_YAML) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _write(tmp_path: Path, raw: dict, name: str = "bad.yaml") -> Path:
    path = tmp_path / name
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return path


def _error(tmp_path: Path, raw: dict) -> str:
    path = _write(tmp_path, raw)
    with pytest.raises(ConfigError) as info:
        make_plan(load_config(path))
    message = str(info.value)
    assert message.startswith(f"{path}: "), message
    return message


# --- the original configs -------------------------------------------------------------------
# sha256 of the original's three configs at jfightyr/SlowFast-Meet-ViT commit d1a53b9 (its newest):
# ours are byte-identical copies, so a user of the original can diff them against theirs.
ORIGINAL_CONFIG_SHA256 = {
    "VITSF_ACAR_HR2O_CW_train.yaml": "3aef06b49eb0ae190105bf25d423f6348eb74cd28f0c8c17f0f4aa5fe9d4d2d3",
    "VITSF_ACAR_HR2O_CW_train_resume.yaml": "6a8b57405715906797c8578e4f0787f5f49f0b77106157c876e03996744aebd0",
    "eval_VITSF_ACAR_HR2O_CW.yaml": "da00dd2131ddb0f8c752184464347e80603a54433851f00dfa2e9991df9e3a90",
}


def test_original_configs_are_byte_identical_to_the_originals() -> None:
    assert sorted(path.name for path in ORIGINAL_CONFIGS) == sorted(ORIGINAL_CONFIG_SHA256)
    for path in ORIGINAL_CONFIGS:
        assert hashlib.sha256(path.read_bytes()).hexdigest() == ORIGINAL_CONFIG_SHA256[path.name], path.name


@pytest.mark.parametrize("path", ORIGINAL_CONFIGS, ids=lambda p: p.name)
def test_original_configs_load_and_validate(path: Path) -> None:
    cfg = load_config(path)
    make_plan(cfg)
    assert cfg.config_file == str(path)
    assert cfg.model.head.kwargs == {"width": 3712, "roi_spatial": 7, "num_classes": 50, "depth": 2}
    assert cfg.val.eval_mAP is not None and cfg.val.eval_mAP.groundtruth == "AR_ava_format/chaos_test_t_+1.csv"
    assert (cfg.cap_min, cfg.cap_max) == (50, 2200)
    assert cfg.val.with_label is False and cfg.val.augmentation.temporal.kwargs == {"size": 64, "step": 2}
    # Extensions absent from the file take their dataclass defaults.
    assert (cfg.amp, cfg.auto_resume, cfg.deterministic, cfg.val.workers) == ("off", False, False, 1)


def test_original_configs_differ_where_expected() -> None:
    train, evaluate = load_config(TRAIN_YAML), load_config(EVAL_YAML)
    assert train.evaluate is False and train.train is not None and train.resume_path is None
    assert train.train.scheduler.milestone_epochs == (5.6, 5.8)
    assert train.train.optimizer.kwargs == {"momentum": 0.9, "weight_decay": 1e-7, "nesterov": True}
    assert train.model.backbone.pretrain.path == "./pretrained/SLOWFAST_R50_K400.pth.tar"
    assert train.model.backbone.subbackbone.path == "./pretrained/vit_g_ps14_ak_ft_ckpt_7_clean.pth"
    assert train.model.backbone.subbackbone.eval_mode is False  # original quirk 6 by default
    assert evaluate.evaluate is True and evaluate.train is None
    assert evaluate.model.backbone.subbackbone is None and evaluate.model.backbone.learnable is False
    assert evaluate.resume_path == "./checkpoints/SFR50_VITG_ACAR_CWtrain_ckpt_12.pth.tar"


def test_tiny_config_with_extensions() -> None:
    cfg = load_config(TINY_YAML)
    make_plan(cfg)
    assert cfg.amp == "bf16" and cfg.auto_resume is True and cfg.train.workers == 0
    assert cfg.model.backbone.subbackbone.kwargs == {"depth": 1, "embed_dim": 48}
    assert cfg.val.augmentation.spatial[0].kwargs == [{"resize": [64, 64]}, {"resize": [72, 72]}]


def test_real_builder_tables_accept_the_original_configs() -> None:
    for path in ORIGINAL_CONFIGS:
        make_plan(load_config(path))


# --- bad configs: every message names the file and the dotted key ---------------------------
def test_unknown_top_level_key_suggests(tmp_path: Path) -> None:
    raw = _raw()
    raw["evalute"] = raw.pop("evaluate")
    assert "evalute: unknown key; did you mean 'evaluate'?" in _error(tmp_path, raw)


def test_typo_in_nested_key(tmp_path: Path) -> None:
    raw = _raw()
    raw["model"]["backbone"]["learnabel"] = raw["model"]["backbone"].pop("learnable")
    assert "model.backbone.learnabel: unknown key; did you mean 'learnable'?" in _error(tmp_path, raw)
    raw = _raw()
    raw["val"]["eval_mAP"]["grondtruth"] = raw["val"]["eval_mAP"].pop("groundtruth")
    assert "val.eval_mAP.grondtruth: unknown key; did you mean 'groundtruth'?" in _error(tmp_path, raw)


def test_typo_in_kwargs_is_checked_against_the_builder(tmp_path: Path) -> None:
    raw = _raw()
    raw["model"]["head"]["kwargs"]["widht"] = raw["model"]["head"]["kwargs"].pop("width")
    assert "model.head.kwargs.widht: unknown key; did you mean 'width'?" in _error(tmp_path, raw)
    raw = _raw()
    raw["train"]["optimizer"]["kwargs"]["nesterof"] = True
    assert "train.optimizer.kwargs.nesterof: unknown key; did you mean 'nesterov'?" in _error(tmp_path, raw)
    raw = _raw()
    raw["val"]["augmentation"]["spatial"][0]["kwargs"]["resise"] = [1, 1]
    assert "val.augmentation.spatial[0].kwargs.resise: unknown key" in _error(tmp_path, raw)


def test_wrong_types(tmp_path: Path) -> None:
    raw = _raw()
    raw["train"]["batch_size"] = "three"
    assert "train.batch_size: expected an integer, found str 'three'" in _error(tmp_path, raw)
    raw = _raw()
    raw["model"]["freeze_bn"] = 1
    assert "model.freeze_bn: expected a boolean" in _error(tmp_path, raw)
    raw = _raw()
    raw["train"]["batch_size"] = True  # YAML booleans are not integers here
    assert "train.batch_size: expected an integer, found bool True" in _error(tmp_path, raw)
    raw = _raw()
    raw["val"]["augmentation"]["spatial"] = {"type": "Scale"}
    assert "val.augmentation.spatial: expected a list" in _error(tmp_path, raw)
    raw = _raw()
    raw["amp"] = "fp16"
    assert "amp: expected one of 'off', 'bf16'" in _error(tmp_path, raw)
    raw = _raw()
    raw["train"]["optimizer"]["kwargs"]["weight_decay"] = "1e-7x"  # text where the builder takes a number
    assert "train.optimizer.kwargs.weight_decay: expected a number" in _error(tmp_path, raw)


def test_float_fields_accept_exponent_text(tmp_path: Path) -> None:
    raw = _raw()
    raw["train"]["scheduler"]["base_lr"] = "8e-3"
    assert load_config(_write(tmp_path, raw)).train.scheduler.base_lr == pytest.approx(0.008)


def test_config_files_and_overrides_read_exponents_as_floats(tmp_path: Path) -> None:
    text = TRAIN_YAML.read_text(encoding="utf-8").replace("weight_decay: 0.0000001", "weight_decay: 1e-7")
    assert "weight_decay: 1e-7" in text
    path = tmp_path / "exponent.yaml"
    path.write_text(text, encoding="utf-8")
    cfg = load_config(path, ["train.scheduler.min_lr=1e-6", "train.scheduler.type=cosine"])
    make_plan(cfg)
    assert cfg.train.optimizer.kwargs["weight_decay"] == 1e-7
    assert cfg.train.scheduler.min_lr == 1e-6
    assert to_dict(cfg) == to_dict(load_config(TRAIN_YAML, ["train.scheduler.min_lr=0.000001",
                                                            "train.scheduler.type=cosine"]))


def test_missing_required_keys(tmp_path: Path) -> None:
    raw = _raw()
    del raw["model"]["head"]["type"]
    assert "model.head.type: missing required key" in _error(tmp_path, raw)
    raw = _raw()
    del raw["train"]
    assert "train: missing required key (needed unless evaluate: True)" in _error(tmp_path, raw)
    raw = _raw()
    del raw["val"]["augmentation"]["spatial"][2]["kwargs"]["std"]
    assert "val.augmentation.spatial[2].kwargs.std: missing required key" in _error(tmp_path, raw)


def test_unknown_builder_name_lists_choices(tmp_path: Path) -> None:
    raw = _raw()
    raw["model"]["head"]["type"] = "acr"
    message = _error(tmp_path, raw)
    assert "model.head.type: unknown value 'acr'; did you mean 'acar'?; choices: acar, linear" in message
    raw = _raw()
    raw["train"]["optimizer"]["type"] = "sgd"
    assert "train.optimizer.type: unknown optimizer 'sgd'" in _error(tmp_path, raw)
    raw = _raw()
    raw["train"]["scheduler"]["type"] = "linear"
    assert "train.scheduler.type: expected one of 'step', 'cosine'" in _error(tmp_path, raw)


def test_engine_owned_optimizer_arguments_are_rejected(tmp_path: Path) -> None:
    raw = _raw()
    raw["train"]["optimizer"]["kwargs"]["lr"] = 0.1
    assert "train.optimizer.kwargs.lr: is set by the code, not the config" in _error(tmp_path, raw)


def test_model_builder_checks_run_before_spawn_with_the_file(tmp_path: Path) -> None:
    # Once checked only by build_model, inside every worker: now by building it once, in the launcher.
    raw = _raw()
    raw["model"]["head"]["kwargs"]["vit_channels"] = 1408
    assert "model.head.kwargs.vit_channels: is set by the code, not the config" in _error(tmp_path, raw)
    raw = _raw()
    del raw["model"]["head"]["kwargs"]["width"]
    assert "model.head.kwargs.width: missing required key" in _error(tmp_path, raw)
    raw = _raw()
    raw["model"]["backbone"]["subbackbone"]["arch"] = "vit_gaint_patch14_224"
    assert ("model.backbone.subbackbone.arch: unknown value 'vit_gaint_patch14_224'; "
            "did you mean 'vit_giant_patch14_224'?") in _error(tmp_path, raw)


def test_inconsistent_values(tmp_path: Path) -> None:
    raw = _raw()
    raw["train"]["scheduler"]["lr_mults"] = [0.1]
    assert "train.scheduler.lr_mults: needs one factor per milestone" in _error(tmp_path, raw)
    raw = _raw()
    raw["train"]["scheduler"]["type"] = "cosine"
    assert "train.scheduler.min_lr: missing required key for type 'cosine'" in _error(tmp_path, raw)
    raw = _raw()
    raw["train"]["batch_size"] = 0
    assert "train.batch_size: must be >= 1" in _error(tmp_path, raw)
    raw = _raw()
    del raw["cap_max"]
    assert "cap_max: cap_min and cap_max go together" in _error(tmp_path, raw)
    raw = _raw()
    raw["train"]["augmentation"]["spatial"][0]["kwargs"] = [{"resize": [1, 1]}, {"resize": [2, 2]}]
    assert "train.augmentation.spatial[0].kwargs: a list of kwargs (test-time views) is only allowed under val" \
        in _error(tmp_path, raw)


def test_lookup_and_check_kwargs_directly() -> None:
    assert lookup({"a": len}, "a", "x.type", "f.yaml") is len
    with pytest.raises(ConfigError, match=r"^f.yaml: x.type: unknown value 'b'; choices: a$"):
        lookup({"a": len}, "b", "x.type", "f.yaml")
    check_kwargs(_vit, {"anything": 1}, "k", "f.yaml")  # **kwargs accepts everything
    with pytest.raises(ConfigError, match=r"^f.yaml: k.size: missing required key$"):
        check_kwargs(_CenterCrop, {"step": 2}, "k", "f.yaml", check_required=True)
    check_kwargs(_acar_head, {"depth": 1}, "k", "f.yaml")  # model builders: missing args not checked


# --- overrides ------------------------------------------------------------------------------
def test_overrides_apply_before_validation(tmp_path: Path) -> None:
    cfg = load_config(TRAIN_YAML, ["train.batch_size=2", "model.head.kwargs.depth=1", "amp=bf16",
                                   "val.augmentation.spatial[0].kwargs.resize=[112, 112]", "train.workers=0",
                                   "model.backbone.subbackbone.kwargs.depth=2", "resume_path=null"])
    assert cfg.train.batch_size == 2 and cfg.model.head.kwargs["depth"] == 1 and cfg.amp == "bf16"
    assert cfg.val.augmentation.spatial[0].kwargs == {"resize": [112, 112]} and cfg.train.workers == 0
    assert cfg.model.backbone.subbackbone.kwargs == {"depth": 2}
    # A section absent from the file is created with its defaults.
    cfg = load_config(EVAL_YAML, ["model.backbone.subbackbone.eval_mode=true"])
    assert cfg.model.backbone.subbackbone.eval_mode is True and cfg.model.backbone.subbackbone.path is None


def test_overrides_reject_unknown_or_malformed_keys() -> None:
    raw = _raw()
    before = copy.deepcopy(raw)
    with pytest.raises(ConfigError, match=r"^x.yaml: train.batchsize .*unknown key; did you mean 'batch_size'\?"):
        apply_overrides(raw, ["train.batchsize=2"], "x.yaml")
    with pytest.raises(ConfigError, match=r"model.hed .*did you mean 'head'"):
        apply_overrides(raw, ["model.hed.type=acar"], "x.yaml")
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides(raw, ["train.batch_size"], "x.yaml")
    with pytest.raises(ConfigError, match=r"val.augmentation.spatial\[9\]: index out of range"):
        apply_overrides(raw, ["val.augmentation.spatial[9].type=Scale"], "x.yaml")
    with pytest.raises(ConfigError, match="cannot set a key below"):
        apply_overrides(raw, ["train.batch_size.x=1"], "x.yaml")
    assert raw == before  # the input mapping is never modified
    assert apply_overrides(raw, ["train.batch_size=7"], "x.yaml")["train"]["batch_size"] == 7


def test_override_with_a_wrong_type_fails_at_validation(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train.batch_size: expected an integer, found str 'many'"):
        load_config(TRAIN_YAML, ["train.batch_size=many"])


# --- to_dict --------------------------------------------------------------------------------
def _is_subset(small: object, big: object) -> bool:
    if isinstance(small, dict):
        return isinstance(big, dict) and all(k in big and _is_subset(v, big[k]) for k, v in small.items())
    if isinstance(small, list):
        return isinstance(big, list) and len(small) == len(big) and all(map(_is_subset, small, big))
    return small == big


@pytest.mark.parametrize("path", ORIGINAL_CONFIGS + [TINY_YAML], ids=lambda p: p.name)
def test_to_dict_round_trip(path: Path) -> None:
    cfg = load_config(path)
    plain = to_dict(cfg)
    assert from_dict(plain, str(path)) == cfg
    assert _is_subset(_raw(path), plain)  # every key and value of the YAML, same names
    assert json.loads(json.dumps(plain)) == plain  # opts.json-ready
    assert "config_file" not in plain and "pretrain" not in plain  # not YAML / not configured
    plain["model"]["head"]["kwargs"]["width"] = 1  # a copy: the frozen config is untouched
    assert cfg.model.head.kwargs["width"] == 3712 or path == TINY_YAML


def test_config_is_frozen() -> None:
    cfg = load_config(EVAL_YAML)
    with pytest.raises(AttributeError):
        cfg.evaluate = False  # type: ignore[misc]
    assert isinstance(cfg, Config)


# --- check_paths ----------------------------------------------------------------------------
def _dataset_tree(root: Path) -> None:
    for folder in ("frames", "AR_ava_format", "pretrained", "checkpoints"):
        (root / folder).mkdir(parents=True, exist_ok=True)
    for name in ("AR_ava_format/cw_data_train1fps_woXGXJVBCQ.pkl", "AR_ava_format/cw_test_yolov8_on_cw_0.3.pkl",
                 "AR_ava_format/list_action.pbtxt", "AR_ava_format/chaos_test_t_+1.csv",
                 "AR_ava_format/chaos_test_exclude.csv", "pretrained/SLOWFAST_R50_K400.pth.tar",
                 "pretrained/vit_g_ps14_ak_ft_ckpt_7_clean.pth",
                 "checkpoints/SFR50_VITG_ACAR_CWtrain_ckpt_12.pth.tar"):
        (root / name).write_bytes(b"x")


@pytest.mark.parametrize("path", ORIGINAL_CONFIGS, ids=lambda p: p.name)
def test_check_paths_passes_on_a_complete_tree(tmp_path: Path, path: Path) -> None:
    _dataset_tree(tmp_path)
    check_paths(load_config(path), tmp_path)


@pytest.mark.parametrize("missing,key", [
    ("frames", "train.root_path"),
    ("AR_ava_format/cw_data_train1fps_woXGXJVBCQ.pkl", "train.annotation_path"),
    ("AR_ava_format/cw_test_yolov8_on_cw_0.3.pkl", "val.annotation_path"),
    ("AR_ava_format/list_action.pbtxt", "val.eval_mAP.labelmap"),
    ("AR_ava_format/chaos_test_t_+1.csv", "val.eval_mAP.groundtruth"),
    ("AR_ava_format/chaos_test_exclude.csv", "val.eval_mAP.exclusions"),
    ("pretrained/SLOWFAST_R50_K400.pth.tar", "model.backbone.pretrain.path"),
    ("pretrained/vit_g_ps14_ak_ft_ckpt_7_clean.pth", "model.backbone.subbackbone.path"),
])
def test_check_paths_names_key_and_file(tmp_path: Path, missing: str, key: str) -> None:
    _dataset_tree(tmp_path)
    target = tmp_path / missing
    if target.is_dir():
        os.rmdir(target)
    else:
        target.unlink()
    with pytest.raises(ConfigError) as info:
        check_paths(load_config(TRAIN_YAML), tmp_path)
    assert str(info.value).startswith(f"{TRAIN_YAML}: {key}: ")
    assert "not found" in str(info.value) and missing in str(info.value)


def test_check_paths_resume_fallback_and_evaluate_skips_train(tmp_path: Path) -> None:
    _dataset_tree(tmp_path)
    (tmp_path / "AR_ava_format/cw_data_train1fps_woXGXJVBCQ.pkl").unlink()  # train data unused in eval
    cfg = load_config(EVAL_YAML, ["resume_path=ckpt_12.pth.tar"])
    with pytest.raises(ConfigError, match=r"resume_path: checkpoint not found: tried .*ckpt_12.pth.tar and "
                                          r".*experiments/test/ckpt_12.pth.tar"):
        check_paths(cfg, tmp_path)
    (tmp_path / "experiments/test").mkdir(parents=True)
    (tmp_path / "experiments/test/ckpt_12.pth.tar").write_bytes(b"x")
    check_paths(cfg, tmp_path)  # found under result_path, as the original retries


def test_check_paths_relative_to_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _dataset_tree(tmp_path)
    monkeypatch.chdir(tmp_path)
    check_paths(load_config(EVAL_YAML))
    monkeypatch.chdir(tmp_path / "frames")
    with pytest.raises(ConfigError, match="relative paths resolve against the working directory"):
        check_paths(load_config(EVAL_YAML))
