"""One-pass capacity sweep: equal to one single-capacity evaluation per K, best K, record lines."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from evaluation import cap_records_text, evaluate_predictions, sweep_capacity, write_cap_records
from evaluation.capacity import class_sweep, sweep_capacities
from evaluation.frame_map import evaluate_at_capacity, prepare
from evaluation.report import SweepSummary
from tests.test_eval_frame_map import _gt, _preds, random_case, reference_map

LABELS = {1: "a", 2: "b", 3: "c", 4: "d"}


@pytest.mark.parametrize("ties", [False, True])
def test_sweep_equals_single_runs_at_every_capacity(ties: bool) -> None:
    for seed in range(40):
        gt_rows, det_rows = random_case(seed, ties, keyframes=10)
        excluded = {("v2", 902)} if seed % 3 == 0 else set()
        data = prepare(LABELS, _gt(gt_rows), _preds(det_rows), excluded)
        k_max = int(data.counts["max_rows_per_keyframe"]) + 2
        k_min = 1 + seed % 3
        curves = sweep_capacities(data, k_min, k_max)
        assert curves.capacities.tolist() == list(range(k_min, k_max + 1))
        for position, capacity in enumerate(curves.capacities):
            single = evaluate_at_capacity(data, int(capacity))
            assert curves.mean_ap[position] == pytest.approx(single.mean_ap, abs=1e-12), (seed, capacity)
            np.testing.assert_allclose(curves.average_precision[position], single.average_precision,
                                       atol=1e-12, equal_nan=True)


def test_sweep_matches_the_loop_reference() -> None:
    for seed in range(6):
        gt_rows, det_rows = random_case(seed, ties=False, keyframes=10)
        result = sweep_capacity(LABELS, _gt(gt_rows), _preds(det_rows), None, (1, 30))
        for capacity in (1, 2, 5, 11, 30):
            _, expected = reference_map(LABELS, gt_rows, det_rows, capacity)
            assert result.sweep.mAP_by_capacity[capacity] == pytest.approx(expected, abs=1e-12)


def test_class_sweep_hand_case() -> None:
    # Score order: TP (kept from K=1), FP (K=3), TP (K=2); 2 GT boxes.
    tp = np.array([True, False, True])
    min_k = np.array([1, 3, 2])
    ap = class_sweep(tp, min_k, num_gt=2, k_min=1, k_max=4)
    np.testing.assert_allclose(ap, [0.5, 1.0, 0.5 + 0.5 * (2 / 3), 0.5 + 0.5 * (2 / 3)])
    assert class_sweep(np.array([False]), np.array([1]), 1, 1, 3).tolist() == [0.0, 0.0, 0.0]


def test_sweep_result_contract() -> None:
    gt_rows, det_rows = random_case(3, ties=True, keyframes=10)
    result = sweep_capacity(LABELS, _gt(gt_rows), _preds(det_rows), None, (2, 12))
    sweep = result.sweep
    assert list(sweep.mAP_by_capacity) == list(range(2, 13))
    values = list(sweep.mAP_by_capacity.values())
    assert sweep.best_mAP == max(values) == sweep.mAP_by_capacity[sweep.best_capacity]
    assert sweep.best_capacity == min(k for k, v in sweep.mAP_by_capacity.items() if v == max(values))
    assert result.mAP == sweep.best_mAP and result.capacity == sweep.best_capacity
    single = evaluate_predictions(LABELS, _gt(gt_rows), _preds(det_rows), None, sweep.best_capacity)
    for cls, ap in single.per_class.items():
        assert (ap is None) == (result.per_class[cls] is None)
        if ap is not None:
            assert result.per_class[cls] == pytest.approx(ap, abs=1e-12)


def test_plateau_picks_the_smallest_capacity() -> None:
    gt_rows = [("A", 1, (0.1, 0.1, 0.4, 0.9), 1)]
    det_rows = [("A", 1, (0.1, 0.1, 0.4, 0.9), 1, 0.9)]
    result = sweep_capacity(LABELS, _gt(gt_rows), _preds(det_rows), None, (5, 9))
    assert result.sweep.best_capacity == 5
    assert set(result.sweep.mAP_by_capacity.values()) == {1.0}


@pytest.mark.parametrize("cap_range", [(0, 5), (5, 4), (-1, 3)])
def test_invalid_range(cap_range: tuple[int, int]) -> None:
    gt_rows, det_rows = random_case(0, ties=False)
    with pytest.raises(ValueError, match="1 <= MIN <= MAX"):
        sweep_capacity(LABELS, _gt(gt_rows), _preds(det_rows), None, cap_range)


def test_cap_records_lines(tmp_path: Path) -> None:
    sweep = SweepSummary(best_capacity=51, best_mAP=0.3, mAP_by_capacity={50: 0.25, 51: 0.3, 52: 0.3})
    assert cap_records_text(sweep) == ("cap: 50, mAP: 0.25\ncap: 51, mAP: 0.3\ncap: 52, mAP: 0.3\n"
                                       "cap:51,max_mAP:0.3\n")
    path = tmp_path / "cap_mAP_records3.txt"
    write_cap_records(path, sweep)
    assert path.read_text() == cap_records_text(sweep)
