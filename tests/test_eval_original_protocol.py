"""The default tie protocol reproduces the original evaluator exactly; the tie band bounds every order of ties.

Golden values: ``tests/data/eval/original_protocol/golden`` holds two per-row files scored by the original
SFMViT evaluator under numpy 1.21.6 (its pinned version) and 2.4.6; ``argsort_numpy_1_21_6.npz`` holds
numpy 1.21.6's own argsort orders (made by ``make_argsort_golden.py`` beside it).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from evaluation import evaluate_predictions, run_evaluation, sweep_capacity
from evaluation.original.numpy_argsort import _heapsort_indices, numpy_1_21_argsort
from evaluation.original.reference import evaluate_like_original
from formats.eval_csv import GroundTruth, Predictions, write_ground_truth_csv, write_predict_csv
from formats.pbtxt import write_label_map

DATA = Path(__file__).parent / "data" / "eval" / "original_protocol"
GOLDEN = json.loads((DATA / "golden" / "golden.json").read_text())
CASES = ("per_row_det", "per_row_gt")
TOLERANCE = 1e-9

sys.path.insert(0, str(DATA))
from make_argsort_golden import argsort_cases  # noqa: E402


def _files(case: str) -> tuple[Path, Path, Path]:
    folder = DATA / "golden" / case
    return folder / "labelmap.pbtxt", folder / "gt.csv", folder / "predict.csv"


def _golden(case: str, numpy_version: str = "1.21.6") -> dict[int, float]:
    return {int(k): v for k, v in GOLDEN[case][f"mAP_original_numpy_{numpy_version}"].items()}


# ----------------------------------------------------------------------------- numpy 1.21.6's argsort


def test_introsort_gives_numpy_1_21_6_order_on_every_golden_case() -> None:
    expected = np.load(DATA / "argsort_numpy_1_21_6.npz")
    differs_from_installed_numpy = 0
    for index, values in enumerate(argsort_cases()):
        want = expected[f"default_{index}"]
        np.testing.assert_array_equal(numpy_1_21_argsort(values), want, err_msg=f"case {index}")
        differs_from_installed_numpy += not np.array_equal(np.argsort(values), want)
    # The point of the exercise: today's numpy orders many of these ties differently.
    assert differs_from_installed_numpy > 0


def test_heapsort_fallback_gives_numpy_1_21_6_heapsort_order() -> None:
    expected = np.load(DATA / "argsort_numpy_1_21_6.npz")
    for index, values in enumerate(argsort_cases()):
        order = np.arange(len(values))
        _heapsort_indices(values, order, 0, len(values))
        np.testing.assert_array_equal(order, expected[f"heapsort_{index}"], err_msg=f"case {index}")


# ----------------------------------------------------------------------------- golden mAP


@pytest.mark.parametrize("case", CASES)
def test_single_runs_equal_the_original_under_numpy_1_21_6(case: str) -> None:
    for capacity, want in _golden(case).items():
        result = run_evaluation(*_files(case), capacity=capacity)
        assert abs(result.mAP - want) <= TOLERANCE, (case, capacity, result.mAP, want)
        assert result.ties == "original"


@pytest.mark.parametrize("case", CASES)
def test_per_class_ap_at_unlimited_capacity_equals_the_original(case: str) -> None:
    result = run_evaluation(*_files(case), capacity=0)
    want = GOLDEN[case]["per_class_original_numpy_1.21.6_at_capacity_0"]
    for cid, ap in want.items():
        got = result.per_class[int(cid)]
        assert (got is None) == (ap is None), cid
        if ap is not None:
            assert abs(got - ap) <= TOLERANCE, (cid, got, ap)


def test_sweep_equals_single_runs_and_the_golden_values() -> None:
    case = "per_row_gt"
    swept = run_evaluation(*_files(case), cap_range=(1, 2500))
    curve = swept.sweep.mAP_by_capacity
    for capacity, want in _golden(case).items():
        if capacity >= 1:
            assert abs(curve[capacity] - want) <= TOLERANCE, capacity
    for capacity in (2, 3, 33, 899, 900, 901, 1249, 1250):
        assert curve[capacity] == run_evaluation(*_files(case), capacity=capacity).mAP
    assert swept.mAP == max(curve.values()) and swept.capacity == min(k for k, v in curve.items() if v == swept.mAP)


def test_sweep_on_the_detector_case_contains_the_golden_values() -> None:
    case = "per_row_det"
    swept = run_evaluation(*_files(case), cap_range=(45, 105))
    for capacity in (50, 100):
        assert abs(swept.sweep.mAP_by_capacity[capacity] - _golden(case)[capacity]) <= TOLERANCE


# numpy picks its argsort kernel by CPU at run time (x86-simd-sort on AVX2, another on AVX-512), and the
# kernels order equal keys differently. The 2.4.6 golden values were made on the AVX2 kernel: on an
# AVX-512 machine the check runs in a child process with numpy's AVX-512 dispatch switched off.
_AVX512_OFF = {"NPY_DISABLE_CPU_FEATURES": "X86_V4 AVX512_ICL AVX512_SPR"}


def _numpy_features() -> dict[str, bool]:
    from numpy._core._multiarray_umath import __cpu_features__
    return __cpu_features__


def _check_loop_reference_under_numpy_2_4_6() -> None:
    assert np.__version__ == "2.4.6"
    for case in CASES:
        for capacity in (0, 7, 50, 1599):
            mean, _ = evaluate_like_original(*_files(case), capacity=capacity, argsort=np.argsort)
            assert abs(mean - _golden(case, "2.4.6")[capacity]) <= TOLERANCE, (case, capacity)


@pytest.mark.slow
def test_loop_reference_with_installed_numpy_equals_the_original_under_numpy_2_4_6() -> None:
    # An independent check of the pipeline: the loop mirror of the original, with numpy's own argsort,
    # gives the original's numbers under numpy 2.4.6 (the version this project pins) on its AVX2 kernel.
    features = _numpy_features()
    if not features.get("X86_V3"):
        pytest.skip("the numpy 2.4.6 golden values were made with numpy's AVX2 argsort; this CPU has no AVX2")
    if not features.get("X86_V4"):
        _check_loop_reference_under_numpy_2_4_6()
        return
    code = ("import sys; sys.path.insert(0, 'tests'); sys.path.insert(0, '.'); "
            "from numpy._core._multiarray_umath import __cpu_features__ as f; assert not f['X86_V4']; "
            "import test_eval_original_protocol as t; t._check_loop_reference_under_numpy_2_4_6()")
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", code], cwd=root, env={**os.environ, **_AVX512_OFF},
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]


def test_stable_rule_reports_more_than_the_original_on_per_row_files() -> None:
    original = run_evaluation(*_files("per_row_det"), capacity=0)
    stable = run_evaluation(*_files("per_row_det"), capacity=0, ties="stable")
    assert stable.mAP == pytest.approx(0.303, abs=5e-4) and original.mAP == pytest.approx(0.1621, abs=1e-4)
    for result in (original, stable):
        assert result.tie_band.low <= result.mAP <= result.tie_band.high


# ----------------------------------------------------------------------------- random cases vs the loop mirror


def _write_case(folder: Path, seed: int) -> tuple[Path, Path, Path]:
    """A small per-row style case: duplicated rows, 1-decimal scores (many ties), invalid boxes, GT ties."""
    rng = np.random.default_rng(seed)
    gt_rows, det_rows = [], []
    for key in range(6):
        video, second = f"v{key % 2}", 900 + key
        people = rng.uniform(0, 0.5, (int(rng.integers(1, 4)), 2))
        boxes = np.round(np.concatenate([people, people + rng.uniform(0.2, 0.5, people.shape)], axis=1), 2)
        copies = int(rng.integers(1, 4))
        for person, box in enumerate(boxes):
            for cls in rng.choice(4, size=int(rng.integers(1, 3)), replace=False) + 1:
                gt_rows.append((video, second, box, int(cls), person))
        for _ in range(copies):
            for box in np.concatenate([boxes, np.round(rng.uniform(0, 1, (1, 4)), 2)]):
                for cls in range(1, 5):
                    det_rows.append((video, second, box, cls, float(np.round(rng.random(), 1))))
    write_label_map(folder / "map.pbtxt", {1: "a", 2: "b", 3: "c", 4: "d"})
    write_ground_truth_csv(folder / "gt.csv", GroundTruth(
        video=[r[0] for r in gt_rows], time=[r[1] for r in gt_rows], boxes=np.array([r[2] for r in gt_rows]),
        class_id=[r[3] for r in gt_rows], person_id=[r[4] for r in gt_rows]))
    order = rng.permutation(len(det_rows))
    write_predict_csv(folder / "predict.csv", Predictions(
        video=[det_rows[i][0] for i in order], time=[det_rows[i][1] for i in order],
        boxes=np.array([det_rows[i][2] for i in order]), class_id=[det_rows[i][3] for i in order],
        score=[det_rows[i][4] for i in order]))
    return folder / "map.pbtxt", folder / "gt.csv", folder / "predict.csv"


def test_fast_path_equals_the_loop_mirror_of_the_original_on_random_cases(tmp_path: Path) -> None:
    for seed in range(12):
        files = _write_case(tmp_path, seed)
        swept = run_evaluation(*files, cap_range=(1, 40))
        for capacity in (0, 1, 2, 5, 9, 17, 40):
            want, want_per_class = evaluate_like_original(*files, capacity=capacity)
            got = run_evaluation(*files, capacity=capacity)
            assert abs(got.mAP - want) <= TOLERANCE, (seed, capacity)
            for cid, ap in want_per_class.items():
                assert abs(got.per_class[cid] - ap) <= TOLERANCE
            if capacity >= 1:
                assert swept.sweep.mAP_by_capacity[capacity] == got.mAP
            assert got.tie_band.low - TOLERANCE <= got.mAP <= got.tie_band.high + TOLERANCE


def test_ground_truth_order_is_the_heap_order_not_the_file_order() -> None:
    # Two GT boxes at IoU exactly 0.6 from the first detection. The original keeps GT rows on a heap of
    # (person id, class, y1, x1, ...) tuples: the box with the smaller x1 comes first whatever the file order.
    left, right, middle = (0.0, 0.0, 0.5, 1.0), (0.25, 0.0, 0.75, 1.0), (0.125, 0.0, 0.625, 1.0)
    labels = {1: "a"}
    for gt_boxes in ([left, right], [right, left]):
        gt = GroundTruth(video=["A", "A"], time=[1, 1], boxes=np.array(gt_boxes), class_id=[1, 1], person_id=[1, 1])
        preds = Predictions(video=["A", "A"], time=[1, 1], boxes=np.array([middle, left]), class_id=[1, 1],
                            score=[0.9, 0.8])
        # middle takes `left` (first in heap order), so the second detection (left) is a false positive.
        assert evaluate_predictions(labels, gt, preds, capacity=0).per_class[1] == pytest.approx(0.5)


# ----------------------------------------------------------------------------- the tie band, exact bounds


def _band_case(scores: list[float], positives: list[bool]) -> tuple[GroundTruth, Predictions]:
    """One detection per keyframe; a true positive where ``positives`` says so; 2 extra unmatched GT."""
    count = len(scores)
    person, elsewhere = (0.1, 0.1, 0.4, 0.9), (0.6, 0.1, 0.9, 0.9)
    gt = GroundTruth(video=["v"] * (count + 2), time=list(range(count)) + [count, count + 1],
                     boxes=np.array([person] * (count + 2)), class_id=[1] * (count + 2),
                     person_id=list(range(count + 2)))
    preds = Predictions(video=["v"] * count, time=list(range(count)),
                        boxes=np.array([person if hit else elsewhere for hit in positives]),
                        class_id=[1] * count, score=scores)
    return gt, preds


@pytest.mark.parametrize("ties", ["original", "stable"])
def test_tie_band_bounds_are_exact_on_a_hand_case(ties: str) -> None:
    # Scores 0.9 (TP), then a tie group of four at 0.5 holding two TPs, then 0.1 (TP); 8 GT boxes.
    gt, preds = _band_case([0.9, 0.5, 0.5, 0.5, 0.5, 0.1], [True, False, True, False, True, True])
    num_gt = 8
    # TPs first in the group: ranks 1(TP) 2(TP) 3(TP) 4 5 6(TP) -> precision at recalls 1..4/6: 1, 1, 1, 4/6.
    high = (1 + 1 + 1 + 4 / 6) / num_gt
    # TPs last: 1(TP) 2 3 4(TP) 5(TP) 6(TP): precisions 1, 2/4, 3/5, 4/6, envelope 1, 4/6, 4/6, 4/6.
    low = (1 + 4 / 6 + 4 / 6 + 4 / 6) / num_gt
    result = evaluate_predictions({1: "a"}, gt, preds, capacity=0, ties=ties)
    assert result.tie_band.low == pytest.approx(low, abs=1e-12)
    assert result.tie_band.high == pytest.approx(high, abs=1e-12)
    assert low <= result.mAP <= high


@pytest.mark.parametrize("ties", ["original", "stable"])
def test_tie_band_collapses_without_ties_and_is_swept(ties: str) -> None:
    gt, preds = _band_case([0.9, 0.8, 0.7, 0.6], [True, False, True, False])
    single = evaluate_predictions({1: "a"}, gt, preds, capacity=0, ties=ties)
    assert single.tie_band.low == single.tie_band.high == pytest.approx(single.mAP)
    gt, preds = _band_case([0.5, 0.5, 0.5, 0.5], [False, True, False, True])
    swept = sweep_capacity({1: "a"}, gt, preds, cap_range=(1, 3), ties=ties)
    bands = swept.sweep.band_by_capacity
    assert set(bands) == {1, 2, 3}
    assert all(band.low < band.high for band in bands.values())
    payload = swept.to_json()
    assert payload["ties"] == ties and payload["tie_band"]["low"] == pytest.approx(bands[swept.capacity].low)
    assert set(payload["sweep"]["mAP_low_by_capacity"]) == {"1", "2", "3"}


def test_unknown_tie_protocol_is_an_error() -> None:
    gt, preds = _band_case([0.5], [True])
    with pytest.raises(ValueError, match="unknown tie protocol 'random'"):
        evaluate_predictions({1: "a"}, gt, preds, ties="random")
