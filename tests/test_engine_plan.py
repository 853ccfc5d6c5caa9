"""The run plan: built once from a config, every builder error at one site, the variant resolved once."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from config import ConfigError, from_dict, load_config
from datasets.transforms import Compose
from engine.plan import RunPlan, make_plan
from engine.scheduler import CosineLRScheduler
from engine.scoring import SFMVIT_SWEEP
from models import build
from models.build import ACAR_NET, SFMVIT, build_model

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = sorted((ROOT / "configs").rglob("*.yaml"))
TINY = ROOT / "configs" / "tiny_cpu_synthetic.yaml"
CW_EVAL = ROOT / "configs" / "eval_VITSF_ACAR_HR2O_CW.yaml"
AVA_EVAL = ROOT / "configs" / "ava" / "eval_SLOWFAST_R50_ACAR_HR2O.yaml"


def _raw(path: Path = TINY) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _plan(raw: dict, name: str = "x.yaml") -> RunPlan:
    return make_plan(from_dict(raw, name))


def _error(raw: dict) -> str:
    with pytest.raises(ConfigError) as info:
        _plan(raw)
    message = str(info.value)
    assert message.startswith("x.yaml: "), message  # the one site names the file
    return message


def test_every_shipped_config_plans_with_its_variant() -> None:
    assert len(SHIPPED) == 10  # the original three, ACAR-Net's five, two tiny CPU configs
    for path in SHIPPED:
        plan = make_plan(load_config(path))
        expected = ACAR_NET if path.parent.name == "ava" else SFMVIT
        assert plan.model.variant == expected, path.name
        assert (plan.train is None) == plan.cfg.evaluate, path.name
        assert plan.val.views and all(isinstance(view, Compose) for view in plan.val.views)


def test_a_training_plan_holds_what_the_worker_builds() -> None:
    plan = make_plan(load_config(TINY))
    assert plan.train is not None and isinstance(plan.train.spatial, Compose)
    assert plan.train.temporal([1, 2, 3, 4, 5, 6, 7, 8]) == plan.train.temporal([1, 2, 3, 4, 5, 6, 7, 8])
    optimizer = plan.train.optimizer(torch.nn.Linear(2, 1).parameters())
    assert isinstance(optimizer, torch.optim.AdamW)
    assert optimizer.param_groups[0]["lr"] == plan.cfg.train.scheduler.base_lr == 0.0002
    scheduler = plan.train.scheduler(optimizer, iters_per_epoch=10)
    assert isinstance(scheduler, CosineLRScheduler) and scheduler.T_max == 16 * 10
    assert plan.scoring is not None and plan.scoring.rule == SFMVIT_SWEEP
    assert plan.vit_cache is None


def test_the_plan_pickles_for_spawned_workers_and_builds_the_same_clips() -> None:
    plan = make_plan(load_config(TINY))
    copy = pickle.loads(pickle.dumps(plan))
    assert copy.cfg == plan.cfg and copy.model == plan.model and copy.scoring == plan.scoring
    rng = np.random.default_rng(0)
    frames = [Image.fromarray(rng.integers(0, 256, (180, 320, 3), dtype=np.uint8)) for _ in range(4)]
    for ours, theirs in zip(plan.val.views, copy.val.views):
        assert torch.equal(ours(frames)[0], theirs(frames)[0])


def test_a_declared_variant_is_not_inferred(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_inference(*args: object, **kwargs: object) -> None:
        raise AssertionError("the variant was inferred although the config declares it")

    monkeypatch.setattr(build, "backbone_channels", no_inference)
    raw = _raw(CW_EVAL)
    raw["model"]["variant"] = "sfmvit"
    assert _plan(raw).model.variant == SFMVIT
    raw = _raw(AVA_EVAL)
    raw["model"]["variant"] = "acar_net"
    assert _plan(raw).model.variant == ACAR_NET


def test_the_worker_builds_the_plan_s_variant_without_inferring_it(monkeypatch: pytest.MonkeyPatch) -> None:
    plan = make_plan(load_config(TINY))
    monkeypatch.setattr(build, "model_variant", lambda *a, **k: pytest.fail("inferred again in the worker"))
    monkeypatch.setattr(build, "backbone_channels", lambda *a, **k: pytest.fail("inferred again in the worker"))
    with torch.device("meta"):
        model = build_model(plan.model.without_weight_files())
    assert model.backbone.has_vit and model.backbone.submodule is not None


def test_a_declared_variant_that_contradicts_the_width_names_the_key() -> None:
    raw = _raw(AVA_EVAL)  # width 2304: SlowFast alone
    raw["model"]["variant"] = "sfmvit"
    assert "model.variant: 'sfmvit' contradicts model.head.kwargs.width 2304" in _error(raw)
    raw = _raw(CW_EVAL)  # width 3712: SlowFast + ViT-g
    raw["model"]["variant"] = "acar_net"
    assert ("model.head.kwargs.width: must equal the backbone's output channels slow 2048 + fast 256 = 2304 "
            "of model.variant 'acar_net', got 3712") in _error(raw)
    raw = _raw(TINY)
    raw["model"]["variant"] = "acar_net"
    assert "model.variant: 'acar_net' has no ViT stream, but model.backbone.subbackbone names a ViT" in _error(raw)
    raw["model"]["variant"] = "vit"
    with pytest.raises(ConfigError, match=r"x\.yaml: model\.variant: expected one of 'acar_net', 'sfmvit'"):
        from_dict(raw, "x.yaml")


def test_the_original_yamls_stay_without_a_variant_key() -> None:
    for path in SHIPPED:
        assert "variant" not in _raw(path)["model"], path.name
        assert load_config(path).model.variant is None


@pytest.mark.parametrize(("dotted", "value", "expected"), [
    # Values only the builder judges: before the plan, these failed in every worker (optimizer,
    # scheduler) or were checked by a second checker beside the builder (schedule, with_label).
    ("train.optimizer.kwargs.weight_decay", -1, "train.optimizer.kwargs: AdamW: Invalid weight_decay value: -1"),
    ("train.scheduler.min_lr", None, "train.scheduler.min_lr: missing required key for type 'cosine'"),
    ("train.scheduler.warmup_epochs", -1, "train.scheduler.warmup_epochs: must be >= 0"),
    ("train.augmentation.temporal.kwargs.size", 0, "train.augmentation.temporal.kwargs: TemporalCenterCrop: size"),
    ("val.augmentation.spatial.2.kwargs.std", [0.5, 0.0, 0.5], "val.augmentation.spatial[2].kwargs: Normalize: std"),
    ("model.head.kwargs.dropout", [0.3], "model.head.kwargs.dropout: [0.3] is not a float like its default"),
    ("model.neck.kwargs.multi_class", False, "val.with_label: the validation loss needs multi-hot targets"),
])
def test_builder_errors_leave_the_plan_naming_file_and_key(dotted: str, value: object, expected: str) -> None:
    raw = _raw()
    raw["val"]["with_label"] = dotted == "model.neck.kwargs.multi_class"
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value
    assert expected in _error(raw)


def test_an_evaluation_plan_builds_no_training_part() -> None:
    raw = _raw()
    raw["evaluate"] = True
    raw["train"]["optimizer"]["type"] = "NoSuchOptimizer"  # unused by an evaluation: not built, not judged
    plan = _plan(raw)
    assert plan.train is None and plan.cfg.evaluate
