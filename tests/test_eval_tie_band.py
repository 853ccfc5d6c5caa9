"""The tie band is a bound over every order of equal scores, the cut included, and the same for both protocols.

The brute force enumerates orders of equal scores and runs the real evaluator with each:

- the cut and the matching: every permutation of the predict rows within each (keyframe, score) group,
  written as a file order, scored by ``--ties stable`` (which then cuts and matches in exactly that order)
  and by ``--ties original`` (its heap's order for that file);
- the ranking, on top of each cut and matching: every order of each (class, score) group's rows,
  scored with the evaluator's own precision/recall and AP functions.

Its lowest and highest mAP are the true extremes of the family the band covers (docs/protocol.md section 3).
"""
from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import numpy as np
import pytest

from evaluation import evaluate_predictions, run_evaluation, sweep_capacity
from evaluation.api import compute_tie_band
from evaluation.frame_map import average_precision, evaluate_at_capacity, match_detections, precision_recall, prepare
from evaluation.original.protocol import evaluate_original, prepare_original
from evaluation.report import format_summary
from evaluation.tie_band import band_at, sweep_band
from formats.eval_csv import GroundTruth, Predictions, read_ground_truth_csv
from formats.pbtxt import read_label_map

TOLERANCE = 1e-12
LABELS = {1: "a", 2: "b", 3: "c"}
DATA = Path(__file__).parent / "data"
GOLDEN = DATA / "eval" / "original_protocol" / "golden"
REAL = DATA / "ava" / "real_excerpt"

PERSON = (0.1, 0.1, 0.4, 0.9)
OTHER = (0.6, 0.1, 0.9, 0.9)
NOWHERE = (0.45, 0.0, 0.55, 0.05)


# ----------------------------------------------------------------------------- brute force


def _permuted(preds: Predictions, order: np.ndarray) -> Predictions:
    return Predictions(video=[preds.video[i] for i in order], time=preds.time[order], boxes=preds.boxes[order],
                       class_id=preds.class_id[order], score=preds.score[order])


def _file_orders(preds: Predictions, limit: int):
    """Every file order that permutes rows within (keyframe, score) groups only; None if more than ``limit``."""
    groups: dict[tuple, list[int]] = {}
    for row, key in enumerate(zip(preds.video, preds.time.tolist(), preds.score.tolist())):
        groups.setdefault(key, []).append(row)
    tied = [rows for rows in groups.values() if len(rows) > 1]
    if math.prod(math.factorial(len(rows)) for rows in tied) > limit:
        return None

    def orders():
        for choice in itertools.product(*[itertools.permutations(rows) for rows in tied]):
            order = np.arange(len(preds.score))
            for rows, permutation in zip(tied, choice):
                order[rows] = permutation
            yield order
    return orders()


def _ranking_extremes(scores: np.ndarray, flags: np.ndarray, num_gt: int) -> tuple[float, float]:
    """Lowest and highest AP over every order of the rows within each group of equal scores."""
    levels = []
    for value in sorted(set(scores.tolist()), reverse=True):
        level = flags[scores == value].tolist()
        levels.append(sorted(set(itertools.permutations(level))))
    values = [average_precision(*precision_recall(np.array(sum(choice, ()), dtype=bool), num_gt))
              for choice in itertools.product(*levels)]
    return min(values), max(values)


def brute_force(labels: dict[int, str], gt: GroundTruth, preds: Predictions, capacities: list[int],
                limit: int = 400, orders=None) -> dict[int, dict] | None:
    """Per capacity: the lowest and highest mAP over every order, and every protocol run's mAP.

    ``orders``: the file orders to try (default: all of them, None when more than ``limit``).
    """
    orders = _file_orders(preds, limit) if orders is None else orders
    if orders is None:
        return None
    found = {k: {"low": np.inf, "high": -np.inf, "runs": []} for k in capacities}
    for order in orders:
        permuted = _permuted(preds, order)
        data = prepare(labels, gt, permuted)
        original = evaluate_original(prepare_original(labels, gt, permuted), capacities).mean_ap
        for position, capacity in enumerate(capacities):
            kept = data.det_rank < capacity if capacity >= 1 else np.ones(len(data.det_rank), dtype=bool)
            index = np.flatnonzero(kept & data.det_valid)
            flags = match_detections(data, index)
            lows, highs = [], []
            for cls in np.flatnonzero(data.num_gt > 0):
                mine = data.det_class[index] == cls
                low, high = _ranking_extremes(data.det_score[index][mine], flags[mine], int(data.num_gt[cls]))
                lows.append(low)
                highs.append(high)
            entry = found[capacity]
            entry["low"] = min(entry["low"], float(np.mean(lows)))
            entry["high"] = max(entry["high"], float(np.mean(highs)))
            # The two protocols on this file order: stable cuts, matches and ranks in exactly this order.
            entry["runs"] += [evaluate_at_capacity(data, capacity).mean_ap, float(original[position])]
    return found


def _check(band, truth: dict, where: object) -> None:
    """The band bounds every order, its reached values are reached, and an end said exact is the extreme."""
    assert band.low <= truth["low"] + TOLERANCE and truth["high"] <= band.high + TOLERANCE, (where, band, truth)
    assert all(band.low - TOLERANCE <= value <= band.high + TOLERANCE for value in truth["runs"]), where
    for reached in (band.low_reached, band.high_reached):
        assert truth["low"] - TOLERANCE <= reached <= truth["high"] + TOLERANCE, (where, band, truth)
    if band.low_exact:
        assert abs(band.low - truth["low"]) <= TOLERANCE, (where, band, truth)
    if band.high_exact:
        assert abs(band.high - truth["high"]) <= TOLERANCE, (where, band, truth)


# ----------------------------------------------------------------------------- cases


def _case(gt_rows: list[tuple], det_rows: list[tuple]) -> tuple[GroundTruth, Predictions]:
    """Rows ``(video, time, box, class, person)`` and ``(video, time, box, class, score)``."""
    gt = GroundTruth(video=[r[0] for r in gt_rows], time=[r[1] for r in gt_rows],
                     boxes=np.array([r[2] for r in gt_rows], dtype=float).reshape(-1, 4),
                     class_id=[r[3] for r in gt_rows], person_id=[r[4] for r in gt_rows])
    preds = Predictions(video=[r[0] for r in det_rows], time=[r[1] for r in det_rows],
                        boxes=np.array([r[2] for r in det_rows], dtype=float).reshape(-1, 4),
                        class_id=[r[3] for r in det_rows], score=[r[4] for r in det_rows])
    return gt, preds


def straddling_case() -> tuple[GroundTruth, Predictions]:
    """Groups of equal scores across the cut at K = 1..4, two classes (and a third without ground truth).

    Keyframe A: class 1 at 0.9 on PERSON (a true positive) and an inverted class-2 box at 0.9 (it takes a
    slot, then is dropped); four rows at 0.5: class 1 on OTHER (a true
    positive if kept), class 1 on NOWHERE and on PERSON again (false positives: PERSON is taken) and a
    class-3 row (no ground truth: it takes a slot and counts for nothing).
    Keyframe B: class 2 on PERSON twice at 0.5 (per-row copies: one true positive, one false positive);
    at 0.3 class 1 on PERSON (a true positive) and class 2 on OTHER (a false positive) compete for a slot.
    Keyframe C: a class-2 box nobody finds.
    """
    gt = [("A", 1, PERSON, 1, 0), ("A", 1, OTHER, 1, 1), ("B", 2, PERSON, 2, 0), ("B", 2, PERSON, 1, 0),
          ("C", 3, PERSON, 2, 0)]
    det = [("A", 1, NOWHERE, 1, 0.5), ("B", 2, PERSON, 2, 0.5), ("A", 1, OTHER, 1, 0.5), ("A", 1, PERSON, 3, 0.5),
           ("B", 2, OTHER, 2, 0.3), ("A", 1, PERSON, 1, 0.9), ("A", 1, (0.5, 0.5, 0.4, 0.6), 2, 0.9),
           ("B", 2, PERSON, 1, 0.3), ("A", 1, PERSON, 1, 0.5), ("B", 2, PERSON, 2, 0.5)]
    return _case(gt, det)


def random_case(seed: int) -> tuple[GroundTruth, Predictions]:
    """Two keyframes, up to two people, classes 1-2, 1-decimal scores in 0.1..0.3, per-row copies."""
    rng = np.random.default_rng(seed)
    gt_rows, det_rows = [], []
    for key in range(2):
        boxes = []
        for person in range(int(rng.integers(1, 3))):
            x, y = rng.uniform(0, 0.5, 2)
            box = np.round([x, y, x + rng.uniform(0.2, 0.45), y + rng.uniform(0.2, 0.45)], 3)
            boxes.append(box)
            for cls in rng.choice(2, size=int(rng.integers(1, 3)), replace=False) + 1:
                gt_rows.append(("v", key, box, int(cls), 2 * key + person))
        if rng.random() < 0.5:
            boxes.append(np.round(rng.uniform(0, 1, 4), 3))
        for _ in range(int(rng.integers(1, 3))):
            for box in boxes:
                for cls in (1, 2):
                    if rng.random() < 0.8:
                        det_rows.append(("v", key, box, cls, float(rng.choice([0.1, 0.2, 0.3]))))
    order = rng.permutation(len(det_rows))
    return _case(gt_rows, [det_rows[i] for i in order])


# ----------------------------------------------------------------------------- tests


def test_band_across_the_cut_equals_the_brute_force() -> None:
    gt, preds = straddling_case()
    truth = brute_force(LABELS, gt, preds, [1, 2, 3, 4, 0], limit=10**4)
    assert truth is not None
    for capacity, extremes in truth.items():
        result = evaluate_predictions(LABELS, gt, preds, capacity=capacity, ties="stable")
        band = result.tie_band
        _check(band, extremes, capacity)
        assert band.exact, capacity
        assert band.low == pytest.approx(extremes["low"], abs=TOLERANCE)
        assert band.high == pytest.approx(extremes["high"], abs=TOLERANCE)
    # The cut decides too: at K = 4 the file order keeps the two false positives of A's tie group, and
    # no ranking of the rows it keeps reaches either end (the band of the rows a protocol keeps, as
    # before this band, fell short on both sides).
    file_order = brute_force(LABELS, gt, preds, [4], orders=[np.arange(len(preds.score))])[4]
    assert truth[4]["low"] < file_order["low"] - 0.1 and file_order["high"] < truth[4]["high"] - 0.03
    for capacity in (2, 4):
        stable = evaluate_predictions(LABELS, gt, preds, capacity=capacity, ties="stable")
        original = evaluate_predictions(LABELS, gt, preds, capacity=capacity, ties="original")
        assert stable.tie_band == original.tie_band and stable.mAP != original.mAP
        assert original.tie_band.low <= min(stable.mAP, original.mAP) <= max(stable.mAP, original.mAP) <= \
            original.tie_band.high


def test_band_is_the_same_for_both_protocols_single_and_swept() -> None:
    gt, preds = straddling_case()
    for capacity in (0, 1, 2, 3, 50):
        bands = [evaluate_predictions(LABELS, gt, preds, capacity=capacity, ties=ties).to_json()["tie_band"]
                 for ties in ("original", "stable")]
        assert bands[0] == bands[1], capacity
    swept = [sweep_capacity(LABELS, gt, preds, cap_range=(1, 6), ties=ties).to_json()["sweep"]
             for ties in ("original", "stable")]
    for key in ("mAP_low_by_capacity", "mAP_high_by_capacity", "mAP_low_reached_by_capacity",
                "mAP_high_reached_by_capacity"):
        assert swept[0][key] == swept[1][key]


@pytest.mark.parametrize("case", ["per_row_det", "per_row_gt"])
def test_band_is_the_same_for_both_protocols_on_the_golden_files(case: str) -> None:
    files = (GOLDEN / case / "labelmap.pbtxt", GOLDEN / case / "gt.csv", GOLDEN / case / "predict.csv")
    for capacity in (0, 50):
        results = {ties: run_evaluation(*files, capacity=capacity, ties=ties) for ties in ("original", "stable")}
        assert results["original"].tie_band == results["stable"].tie_band
        band = results["original"].tie_band
        for result in results.values():
            assert band.low - TOLERANCE <= result.mAP <= band.high + TOLERANCE


def real_ava_predictions(gt: GroundTruth, classes: list[int], seed: int = 0) -> Predictions:
    """Every ground-truth person box scored for every class with a 1-decimal score (higher on its labels)."""
    rng = np.random.default_rng(seed)
    people: dict[tuple, tuple] = {}
    for video, time, box, cls, person in zip(gt.video, gt.time.tolist(), gt.boxes, gt.class_id.tolist(),
                                             gt.person_id.tolist()):
        people.setdefault((video, time, person), (box, set()))[1].add(cls)
    rows = [(video, time, box, cls, round(0.1 * int(rng.integers(1, 8) if cls in labels else rng.integers(0, 6)), 1))
            for (video, time, _), (box, labels) in people.items() for cls in classes]
    order = rng.permutation(len(rows))
    return _case([], [rows[i] for i in order])[1]


def test_band_is_the_same_for_both_protocols_on_real_ava_rows() -> None:
    # Real AVA v2.2 val rows (tests/data/ava/real_excerpt/README.md); every person box scored for all 60
    # classes with 1-decimal scores, so keyframes hold 60-180 rows and equal scores straddle the cut at 50.
    labels = read_label_map(REAL / "ava_action_list_v2.1_for_activitynet_2018.pbtxt")
    gt = read_ground_truth_csv(REAL / "ava_val_v2.2_excerpt.csv")
    preds = real_ava_predictions(gt, sorted(labels))
    results = {ties: evaluate_predictions(labels, gt, preds, capacity=50, ties=ties) for ties in ("original", "stable")}
    assert results["original"].tie_band == results["stable"].tie_band
    band = results["original"].tie_band
    assert band.low - TOLERANCE <= min(r.mAP for r in results.values())
    assert max(r.mAP for r in results.values()) <= band.high + TOLERANCE
    assert results["original"].mAP != results["stable"].mAP
    # Before this band each protocol reported its own cut's band: 45.55..60.76% (original) and
    # 46.38..61.60% (stable). Now one interval, its ends within 0.001 of orders that exist.
    assert (round(100 * band.low, 2), round(100 * band.high, 2)) == (42.14, 64.29)
    assert band.low_reached - band.low < 1e-3 and band.high - band.high_reached < 1e-3
    swept = {ties: sweep_capacity(labels, gt, preds, cap_range=(40, 70), ties=ties) for ties in ("original", "stable")}
    assert swept["original"].sweep.band_by_capacity == swept["stable"].sweep.band_by_capacity


def test_every_order_of_tiny_random_files_lies_in_the_band() -> None:
    checked = exact_ends = 0
    for seed in range(24):
        gt, preds = random_case(seed)
        capacities = sorted({1, 2, 3, max(1, len(preds.score) // 4), 0})
        truth = brute_force(LABELS, gt, preds, capacities, limit=150)
        if truth is None:
            continue
        data = prepare(LABELS, gt, preds)
        swept = sweep_band(data, 1, max(capacities))
        for capacity in capacities:
            band = evaluate_predictions(LABELS, gt, preds, capacity=capacity, ties="original").tie_band
            assert evaluate_predictions(LABELS, gt, preds, capacity=capacity, ties="stable").tie_band == band
            _check(band, truth[capacity], (seed, capacity))
            checked += 1
            exact_ends += band.low_exact + band.high_exact
            if capacity >= 1:
                position = capacity - 1
                assert (swept.low[position], swept.high[position]) == pytest.approx((band.low, band.high), abs=1e-12)
    print(f"{checked} (file, capacity) pairs, {exact_ends} of {2 * checked} ends exact")
    assert checked >= 30 and exact_ends >= checked  # most ends are exact on these files


def test_without_ties_across_the_cut_the_band_is_exact() -> None:
    # No group of equal scores straddles the cut (capacity 0, or a K between two scores of every keyframe):
    # the cut is fixed, and true positives first / last are orders that exist.
    for seed in range(6):
        gt, preds = random_case(seed)
        data = prepare(LABELS, gt, preds)
        band = band_at(data, 0)
        assert band.low_exact[0] and band.high_exact[0]
        assert band.low[0] == band.low_reached[0] and band.high[0] == band.high_reached[0]
    gt, preds = _case([("A", 1, PERSON, 1, 0), ("B", 1, PERSON, 1, 0)],
                      [("A", 1, PERSON, 1, 0.9), ("A", 1, NOWHERE, 1, 0.5), ("A", 1, OTHER, 1, 0.5),
                       ("B", 1, NOWHERE, 1, 0.8), ("B", 1, PERSON, 1, 0.4)])
    band = evaluate_predictions({1: "a"}, gt, preds, capacity=1).tie_band
    assert band.exact and band.low == band.high == pytest.approx(0.5)


def test_ground_truth_order_of_both_protocols_is_covered() -> None:
    # A detection at IoU exactly 0.6 from two boxes: stable takes the first in file order, original the
    # first in its heap order, so the two protocols score differently; the band covers both orders.
    left, right, middle = (0.0, 0.0, 0.5, 1.0), (0.25, 0.0, 0.75, 1.0), (0.125, 0.0, 0.625, 1.0)
    gt, preds = _case([("A", 1, right, 1, 1), ("A", 1, left, 1, 1)],
                      [("A", 1, middle, 1, 0.9), ("A", 1, left, 1, 0.8)])
    results = {ties: evaluate_predictions({1: "a"}, gt, preds, capacity=0, ties=ties) for ties in ("original", "stable")}
    assert results["original"].mAP == pytest.approx(0.5) and results["stable"].mAP == pytest.approx(1.0)
    band = results["original"].tie_band
    assert band == results["stable"].tie_band
    assert (band.low, band.high) == pytest.approx((0.5, 1.0)) and band.exact
    assert compute_tie_band({1: "a"}, gt, preds, None, None, 0).ground_truth_orders == 2


def test_band_reporting_says_what_is_computed() -> None:
    gt, preds = straddling_case()
    exact = evaluate_predictions(LABELS, gt, preds, capacity=2)
    assert "over every order of equal scores" in format_summary(exact) and "; exact" in format_summary(exact)
    payload = json.loads(json.dumps(exact.to_json()))
    assert payload["tie_band"]["exact"] is True and "every order of equal scores" in payload["tie_band"]["meaning"]
    swept = sweep_capacity(LABELS, gt, preds, cap_range=(1, 6)).to_json()["sweep"]
    assert swept["tie_band_exact_capacities"] == 6
    assert swept["mAP_low_reached_by_capacity"] == swept["mAP_low_by_capacity"]
    # A file where the classes compete for the slots of a cut level: the bounds are guaranteed, not reached.
    gt, preds = _case([("A", 1, PERSON, 1, 0), ("A", 1, PERSON, 2, 0)],
                      [("A", 1, PERSON, 1, 0.5), ("A", 1, PERSON, 2, 0.5)])
    result = evaluate_predictions({1: "a", 2: "b"}, gt, preds, capacity=1)
    band = result.tie_band
    # Only one of the two true positives fits: mAP 0.5 whichever; the per-class bound says 1.0.
    assert result.mAP == pytest.approx(0.5) and band.high_reached == pytest.approx(0.5)
    assert band.high == pytest.approx(1.0) and not band.high_exact
    assert "guaranteed bounds" in format_summary(result) and "highest in 50.000..100.000%" in format_summary(result)
    assert result.to_json()["tie_band"]["high_exact"] is False
