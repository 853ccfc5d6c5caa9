"""``val.with_label``: the validation loss of the evaluation pass, per box and over the val set."""
from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from config import ConfigError, LossConfig, ModelConfig, load_config, section
from engine.context import RunContext
from engine.eval_loop import BoxScores, mean_box_loss, predict_boxes
from engine.plan import make_plan
from models.build import build_model, model_spec
from models.model import AVAModel
from structures.batch import ClipView, EvalBatch, Keyframes
from tests.engine_fixtures import write_tiny_config

ROOT = Path(__file__).resolve().parents[1]
TINY = yaml.safe_load((ROOT / "configs" / "tiny_cpu_synthetic.yaml").read_text())
LABELS = [[([0.1, 0.1, 0.5, 0.9], [1, 20]), ([0.4, 0.2, 0.9, 0.8], [3])],
          [([0.2, 0.3, 0.6, 0.7], [14, 15, 40])],
          [([0.0, 0.1, 0.7, 1.0], [2, 30]), ([0.3, 0.3, 0.35, 0.35], [0])]]


@pytest.fixture(scope="module")
def model() -> AVAModel:
    cfg = copy.deepcopy(TINY["model"])
    cfg["backbone"]["subbackbone"]["kwargs"].update(img_size=64, all_frames=8)
    cfg["head"]["kwargs"].update(reduce_dim=64, hidden_dim=32)
    torch.manual_seed(0)
    return build_model(model_spec(section(ModelConfig, cfg, "model"), section(LossConfig, TINY["loss"], "loss"))).eval()


def _eval_batch(elements: list[int]) -> EvalBatch:
    """Two views (plain and flipped) of the given elements of LABELS, as the val collate makes them."""
    # One fixed clip per element, whatever batch it is in.
    clips = torch.stack([torch.randn(3, 8, 64, 64, generator=torch.Generator().manual_seed(7 + e)) for e in elements])
    views = [ClipView(view, [{"crop_box": [0.0, 0.0, 1.0, 1.0], "flip": flip, "pad_ratio": [1.0, 1.0]}
                             for _ in elements])
             for view, flip in ((clips, False), (clips.flip(-1), True))]
    labels = [[{"bounding_box": box, "label": ids, "person_id": [0]} for box, ids in LABELS[e]] for e in elements]
    return EvalBatch(views, Keyframes(labels, [f"v{e}" for e in elements], [str(900 + e) for e in elements], elements))


def _predict(model: AVAModel, batches: list[EvalBatch]) -> list[BoxScores]:
    boxes = predict_boxes(RunContext.local(torch.device("cpu")), model, batches, with_label=True)
    return sorted(boxes, key=lambda b: (b.element_index, b.box_index))


def _bce(scores: np.ndarray, label_ids: list[int]) -> float:
    """binary_cross_entropy by hand: logs clamped at -100, as torch does, mean over classes."""
    target = np.zeros(scores.shape, dtype=np.float64)
    target[label_ids] = 1.0
    p = scores.astype(np.float64)
    log_p = np.maximum(np.log(np.maximum(p, 0.0), where=p > 0, out=np.full_like(p, -np.inf)), -100.0)
    log_q = np.maximum(np.log(np.maximum(1 - p, 0.0), where=p < 1, out=np.full_like(p, -np.inf)), -100.0)
    return float(np.mean(-(target * log_p + (1 - target) * log_q)))


def test_each_box_gets_the_criterion_of_its_view_averaged_scores(model: AVAModel) -> None:
    boxes = _predict(model, [_eval_batch([0, 1]), _eval_batch([2])])
    assert [(b.element_index, b.box_index) for b in boxes] == [(0, 0), (0, 1), (1, 0), (2, 0), (2, 1)]
    for item in boxes:
        expected = _bce(item.scores, LABELS[item.element_index][item.box_index][1])
        assert item.loss == pytest.approx(expected, rel=1e-5, abs=1e-6)
    # The set's loss is the training criterion's mean over all boxes and classes.
    assert mean_box_loss(boxes) == pytest.approx(np.mean([b.loss for b in boxes]), rel=1e-12)
    assert mean_box_loss(boxes) > 0.05


def test_the_loss_does_not_depend_on_batching(model: AVAModel) -> None:
    together = _predict(model, [_eval_batch([0, 1, 2])])
    apart = _predict(model, [_eval_batch([0]), _eval_batch([2]), _eval_batch([1])])
    assert [(b.element_index, b.box_index) for b in together] == [(b.element_index, b.box_index) for b in apart]
    assert [b.loss for b in together] == pytest.approx([b.loss for b in apart], rel=1e-5, abs=1e-7)
    assert mean_box_loss(together) == pytest.approx(mean_box_loss(apart), rel=1e-5)


def test_without_labels_no_loss_is_computed(model: AVAModel) -> None:
    boxes = predict_boxes(RunContext.local(torch.device("cpu")), model, [_eval_batch([0])])
    assert all(b.loss is None for b in boxes)
    assert math.isnan(mean_box_loss(boxes))


def test_with_label_needs_multi_hot_targets(tmp_path: Path) -> None:
    config = write_tiny_config(tmp_path / "x.yaml", tmp_path / "out")
    raw = yaml.safe_load(config.read_text())
    raw["val"]["with_label"] = True
    raw["model"]["neck"]["kwargs"]["multi_class"] = False
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    with pytest.raises(ConfigError, match=r"x.yaml: val.with_label: the validation loss needs multi-hot targets"):
        make_plan(load_config(config))
