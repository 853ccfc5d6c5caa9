"""EvaluationResult JSON, the text summary and the plot writer."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from evaluation import (
    EvaluationResult,
    SweepSummary,
    evaluate_predictions,
    format_summary,
    save_plot,
    sweep_capacity,
    write_json,
)
from evaluation.plot import draw_evaluation
from tests.test_eval_frame_map import _gt, _preds

NAMES = {1: "stand", 2: "walk", 3: "run"}


def _result(**overrides) -> EvaluationResult:
    fields = dict(mAP=0.5, capacity=50, per_class={1: 0.75, 2: 0.25, 3: None}, class_names=NAMES,
                  counts={"gt_rows": 3}, timings={"evaluate": 0.01})
    fields.update(overrides)
    return EvaluationResult(**fields)


def test_json_types_and_keys(tmp_path: Path) -> None:
    path = tmp_path / "r.json"
    write_json(path, _result())
    payload = json.loads(path.read_text())
    assert payload["mAP"] == 0.5 and payload["capacity"] == 50
    assert payload["per_class"] == {"1": 0.75, "2": 0.25, "3": None}
    assert "sweep" not in payload and payload["counts"] == {"gt_rows": 3}
    sweep = SweepSummary(best_capacity=2, best_mAP=0.5, mAP_by_capacity={1: 0.25, 2: 0.5})
    payload = _result(sweep=sweep).to_json()
    assert payload["sweep"] == {"best_capacity": 2, "best_mAP": 0.5, "mAP_by_capacity": {"1": 0.25, "2": 0.5}}


def test_nan_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="non-finite"):
        write_json(tmp_path / "r.json", _result(mAP=float("nan")))
    assert not (tmp_path / "r.json").exists()


def test_summary_names_best_and_worst_classes() -> None:
    text = format_summary(_result(), top=1)
    assert "50.00%" in text and "top 1: 1 stand 75.0%" in text and "bottom 1: 2 walk 25.0%" in text
    assert "classes with ground truth: 2 of 3" in text


def test_all_rows_filtered_gives_zeros(tmp_path: Path) -> None:
    gt = _gt([("A", 1, (0.1, 0.1, 0.4, 0.9), 1)])
    preds = _preds([("A", 1, (0.1, 0.1, 0.4, 0.9), 7, 0.9)])
    single = evaluate_predictions(NAMES, gt, preds)
    assert single.mAP == 0.0 and single.per_class == {1: 0.0, 2: None, 3: None}
    swept = sweep_capacity(NAMES, gt, preds, None, (1, 3))
    assert swept.sweep.mAP_by_capacity == {1: 0.0, 2: 0.0, 3: 0.0} and swept.sweep.best_capacity == 1
    save_plot(tmp_path / "single.png", single)
    save_plot(tmp_path / "sweep.png", swept)
    assert (tmp_path / "single.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["single.png", "sweep.png"]


def test_plot_says_what_it_shows_and_class_names_are_legible() -> None:
    names = {cid: f"class number {cid} with a long name" for cid in range(1, 51)}
    per_class = {cid: cid / 100 for cid in names}
    sweep = SweepSummary(best_capacity=3, best_mAP=0.5, mAP_by_capacity={1: 0.25, 2: 0.4, 3: 0.5})
    result = _result(per_class=per_class, class_names=names, sweep=sweep, capacity=3, ties="stable")
    figure = draw_evaluation(result, title="predict.csv: detector boxes of p.pkl (merged file)")
    assert figure.get_suptitle() == "predict.csv: detector boxes of p.pkl (merged file)"
    sweep_axis, bars = figure.axes
    assert sweep_axis.get_title() == "frame-mAP@0.5 vs capacity K = 1..3 (stable ties)"
    labels = bars.get_yticklabels()
    # Horizontal names, one per class, best class first, at a size readable at 100 dpi.
    assert len(labels) == 50 and labels[0].get_text() == "class number 50 with a long name (50)"
    assert all(label.get_rotation() == 0 and label.get_fontsize() >= 8 for label in labels)
    # Each bar gets at least the height of its label's line (9 pt = 0.125 in).
    height_in = figure.get_size_inches()[1] * bars.get_position().height
    assert height_in / 50 >= 9 / 72
