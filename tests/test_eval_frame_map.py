"""Frame-mAP at one capacity: hand-computed cases of the official AVA protocol and a loop reference."""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from evaluation import evaluate_predictions
from evaluation.boxes import paired_iou
from evaluation.frame_map import average_precision, precision_recall
from formats.eval_csv import GroundTruth, Predictions

LABELS = {1: "stand", 2: "walk", 3: "run"}
PERSON = (0.1, 0.1, 0.4, 0.9)
ELSEWHERE = (0.6, 0.6, 0.7, 0.7)


def _gt(rows: list[tuple]) -> GroundTruth:
    """rows: (video, time, box, class_id)."""
    return GroundTruth(video=[r[0] for r in rows], time=[r[1] for r in rows],
                       boxes=np.array([r[2] for r in rows], dtype=float).reshape(-1, 4),
                       class_id=[r[3] for r in rows], person_id=[0] * len(rows))


def _preds(rows: list[tuple]) -> Predictions:
    """rows: (video, time, box, class_id, score)."""
    return Predictions(video=[r[0] for r in rows], time=[r[1] for r in rows],
                       boxes=np.array([r[2] for r in rows], dtype=float).reshape(-1, 4),
                       class_id=[r[3] for r in rows], score=[r[4] for r in rows])


def _run(gt_rows, det_rows, capacity=0, excluded=None, labels=LABELS):
    # This file pins the ``stable`` tie rule; the default (``original``) has tests of its own.
    return evaluate_predictions(labels, _gt(gt_rows), _preds(det_rows), excluded, capacity, ties="stable")


def test_capacity_cut_removes_a_true_positive() -> None:
    gt = [("A", 902, PERSON, 1), ("A", 902, PERSON, 2)]
    dets = [("A", 902, PERSON, 2, 0.9), ("A", 902, PERSON, 1, 0.8)]
    assert _run(gt, dets, capacity=1).per_class == {1: 0.0, 2: 1.0, 3: None}
    assert _run(gt, dets, capacity=1).mAP == pytest.approx(0.5)
    assert _run(gt, dets, capacity=2).mAP == pytest.approx(1.0)
    assert _run(gt, dets, capacity=0).mAP == pytest.approx(1.0)


def test_default_capacity_is_50() -> None:
    gt = [("A", 1, PERSON, 1)]
    noise = [("A", 1, ELSEWHERE, 2, 0.9)] * 50
    dets = noise + [("A", 1, PERSON, 1, 0.5)]
    default = evaluate_predictions(LABELS, _gt(gt), _preds(dets))
    assert default.capacity == 50 and default.per_class[1] == 0.0
    assert _run(gt, dets, capacity=51).per_class[1] == 1.0


def test_duplicate_detection_is_a_false_positive_without_fall_back() -> None:
    left, right = (0.0, 0.0, 0.4, 1.0), (0.2, 0.0, 0.6, 1.0)
    between = (0.08, 0.0, 0.48, 1.0)  # IoU 0.667 with left (taken), 0.538 with right: still an FP
    gt = [("A", 1, left, 1), ("A", 1, right, 1)]
    dets = [("A", 1, left, 1, 0.9), ("A", 1, between, 1, 0.8), ("A", 1, right, 1, 0.7)]
    result = _run(gt, dets)
    # TP, FP, TP with 2 GT: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1.
    assert result.per_class[1] == pytest.approx(0.5 * 1 + 0.5 * (2 / 3))
    assert result.counts["true_positives"] == 2


@pytest.mark.parametrize("left_first,expected", [(True, 0.5), (False, 1.0)])
def test_exact_iou_tie_takes_the_first_gt_box(left_first: bool, expected: float) -> None:
    left, right = (0.0, 0.0, 0.5, 1.0), (0.25, 0.0, 0.75, 1.0)
    middle = (0.125, 0.0, 0.625, 1.0)  # IoU exactly 0.6 with both (dyadic coordinates)
    gt_rows = [("A", 1, left, 1), ("A", 1, right, 1)]
    if not left_first:
        gt_rows.reverse()
    dets = [("A", 1, middle, 1, 0.9), ("A", 1, left, 1, 0.8)]
    assert _run(gt_rows, dets).per_class[1] == pytest.approx(expected)


def test_excluded_key_is_dropped_from_both() -> None:
    gt = [("A", 902, PERSON, 1), ("B", 5, PERSON, 1)]
    dets = [("B", 5, ELSEWHERE, 1, 0.9), ("A", 902, PERSON, 1, 0.8)]
    assert _run(gt, dets).per_class[1] == pytest.approx(0.25)
    excluded = _run(gt, dets, excluded={("B", 5)})
    assert excluded.per_class[1] == pytest.approx(1.0)
    assert excluded.counts["gt_rows_excluded"] == 1 and excluded.counts["detection_rows_excluded"] == 1


def test_class_without_gt_is_null_and_not_counted() -> None:
    gt = [("A", 1, PERSON, 1)]
    dets = [("A", 1, PERSON, 1, 0.9), ("A", 1, PERSON, 3, 0.95)]
    result = _run(gt, dets)
    assert result.per_class == {1: 1.0, 2: None, 3: None}
    assert result.mAP == pytest.approx(1.0)


def test_class_with_gt_but_no_detection_is_zero() -> None:
    gt = [("A", 1, PERSON, 1), ("A", 1, PERSON, 2)]
    result = _run(gt, [("A", 1, PERSON, 1, 0.9)])
    assert result.per_class[2] == 0.0 and result.mAP == pytest.approx(0.5)


def test_class_outside_label_map_is_dropped_before_the_cut() -> None:
    gt = [("A", 1, PERSON, 1), ("A", 1, PERSON, 9)]
    dets = [("A", 1, PERSON, 9, 0.99), ("A", 1, PERSON, 1, 0.5)]
    result = _run(gt, dets, capacity=1)
    assert result.per_class == {1: 1.0, 2: None, 3: None}
    assert result.counts["detection_rows_outside_label_map"] == 1
    assert result.counts["gt_rows_outside_label_map"] == 1


def test_inverted_box_uses_a_slot_and_is_dropped() -> None:
    gt = [("A", 1, PERSON, 1)]
    inverted = (0.4, 0.1, 0.1, 0.9)
    dets = [("A", 1, inverted, 1, 0.95), ("A", 1, PERSON, 1, 0.5)]
    assert _run(gt, dets, capacity=1).per_class[1] == 0.0
    # Kept but dropped, not a false positive (as an FP it would halve the AP).
    assert _run(gt, dets, capacity=2).per_class[1] == 1.0


def test_detections_at_keyframes_without_gt_are_false_positives() -> None:
    gt = [("A", 1, PERSON, 1)]
    dets = [("C", 7, PERSON, 1, 0.95), ("A", 1, PERSON, 1, 0.5)]
    result = _run(gt, dets)
    assert result.per_class[1] == pytest.approx(0.5)
    assert result.counts["detection_keyframes_without_gt"] == 1


def test_tie_rule_earlier_row_first() -> None:
    gt = [("A", 1, PERSON, 1), ("B", 1, PERSON, 1)]
    # Equal scores: the earlier row ranks first, in the cut and in the AP order.
    fp_first = [("A", 1, ELSEWHERE, 1, 0.5), ("A", 1, PERSON, 1, 0.5), ("B", 1, PERSON, 1, 0.5)]
    assert _run(gt, fp_first, capacity=1).per_class[1] == pytest.approx(0.5 * 0.5)
    # FP, TP, TP: the envelope lifts recall 1/2 to precision 2/3.
    assert _run(gt, fp_first).per_class[1] == pytest.approx(2 / 3)
    tp_first = [fp_first[1], fp_first[0], fp_first[2]]
    assert _run(gt, tp_first).per_class[1] == pytest.approx(0.5 + 0.5 * (2 / 3))


def test_no_ground_truth_gives_zero_map() -> None:
    result = _run([("A", 1, PERSON, 9)], [("A", 1, PERSON, 1, 0.5)])
    assert result.mAP == 0.0 and all(ap is None for ap in result.per_class.values())


def test_voc_average_precision_known_sequence() -> None:
    precision, recall = precision_recall(np.array([True, False, True, False, False, True]), num_gt=4)
    np.testing.assert_allclose(precision, [1, 1 / 2, 2 / 3, 1 / 2, 2 / 5, 1 / 2])
    np.testing.assert_allclose(recall, [0.25, 0.25, 0.5, 0.5, 0.5, 0.75])
    assert average_precision(precision, recall) == pytest.approx(0.25 * 1 + 0.25 * (2 / 3) + 0.25 * 0.5)
    # The envelope lifts an early low precision to a later higher one.
    assert average_precision(np.array([0.5, 2 / 3]), np.array([0.5, 1.0])) == pytest.approx(2 / 3)
    assert average_precision(np.array([]), np.array([])) == 0.0


def test_paired_iou_official_arithmetic() -> None:
    det = np.array([[0.0, 0.0, 0.5, 1.0], [0.0, 0.0, 0.2, 0.2], [0.0, 0.0, 0.5, 0.5]])
    gt = np.array([[0.25, 0.0, 0.75, 1.0], [0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 0.5, 0.5]])
    np.testing.assert_array_equal(paired_iou(det, gt), [0.25 / 0.75, 0.0, 1.0])


# ------------------------------------------------------------------------------------------------
# An independent loop implementation of the protocol (dicts, per-keyframe sorting, explicit loops).
# ------------------------------------------------------------------------------------------------


def _iou(a: tuple, b: tuple) -> float:
    inter = max(0.0, min(a[3], b[3]) - max(a[1], b[1])) * max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    union = (a[3] - a[1]) * (a[2] - a[0]) + (b[3] - b[1]) * (b[2] - b[0]) - inter
    return inter / union if union > 0 else 0.0


def reference_map(labels, gt_rows, det_rows, capacity, excluded=frozenset()):
    gt_by_key = defaultdict(list)
    for video, time, box, cls in gt_rows:
        if cls in labels and (video, time) not in excluded:
            gt_by_key[(video, time)].append((tuple(box), cls))
    det_by_key = defaultdict(list)
    for row, (video, time, box, cls, score) in enumerate(det_rows):
        if cls in labels and (video, time) not in excluded:
            det_by_key[(video, time)].append((score, row, tuple(box), cls))
    flags = defaultdict(list)
    for key, rows in det_by_key.items():
        rows = sorted(rows, key=lambda r: (-r[0], r[1]))
        rows = rows[:capacity] if capacity >= 1 else rows
        rows = [r for r in rows if r[2][0] < r[2][2] and r[2][1] < r[2][3]]
        for cls in sorted({r[3] for r in rows}):
            boxes = [b for b, c in gt_by_key.get(key, []) if c == cls]
            taken = [False] * len(boxes)
            for score, row, box, _ in [r for r in rows if r[3] == cls]:
                hit = False
                if boxes:
                    ious = [_iou(box, b) for b in boxes]
                    best = ious.index(max(ious))
                    if ious[best] >= 0.5 and not taken[best]:
                        taken[best] = hit = True
                flags[cls].append((score, row, hit))
    num_gt = Counter(c for rows in gt_by_key.values() for _, c in rows)
    per_class = {}
    for cls in sorted(labels):
        if not num_gt[cls]:
            per_class[cls] = None
            continue
        ordered = sorted(flags[cls], key=lambda f: (-f[0], f[1]))
        tp = fp = 0
        precision, recall = [], []
        for _, _, hit in ordered:
            tp, fp = tp + hit, fp + (not hit)
            precision.append(tp / (tp + fp))
            recall.append(tp / num_gt[cls])
        ap, previous = 0.0, 0.0
        for i, r in enumerate(recall):
            if r > previous:
                ap += (r - previous) * max(precision[i:])
                previous = r
        per_class[cls] = ap
    present = [ap for ap in per_class.values() if ap is not None]
    return per_class, (sum(present) / len(present) if present else 0.0)


def random_case(seed: int, ties: bool, keyframes: int = 8, num_classes: int = 4):
    """Small random ground truth and detections (boxes near the GT, some inverted, an unknown class)."""
    rng = np.random.default_rng(seed)
    gt_rows, det_rows = [], []
    for k in range(keyframes):
        video, time = f"v{k % 3}", 900 + k
        people = int(rng.integers(0, 4))
        corners = rng.uniform(0, 0.5, (people, 2))
        boxes = np.c_[corners, corners + rng.uniform(0.1, 0.5, (people, 2))]
        for box in boxes:
            for cls in rng.choice(np.arange(1, num_classes + 1), int(rng.integers(1, 3)), replace=False):
                gt_rows.append((video, time, tuple(box), int(cls)))
        for _ in range(int(rng.integers(0, 6))):
            if people and rng.random() < 0.7:
                box = boxes[rng.integers(people)] + rng.normal(0, 0.04, 4)
            else:
                box = rng.uniform(0, 1, 4)
            if rng.random() < 0.1:
                box = box[[2, 1, 0, 3]]
            for cls in range(1, num_classes + 2):  # num_classes + 1 is outside the label map
                score = round(float(rng.random()), 1) if ties else float(rng.random())
                det_rows.append((video, time, tuple(box), cls, score))
    order = rng.permutation(len(det_rows))
    return gt_rows, [det_rows[i] for i in order]


@pytest.mark.parametrize("ties", [False, True])
def test_matches_the_loop_reference_on_random_cases(ties: bool) -> None:
    labels = {1: "a", 2: "b", 3: "c", 4: "d"}
    for seed in range(25):
        gt_rows, det_rows = random_case(seed, ties)
        excluded = {("v1", 901)} if seed % 2 else set()
        for capacity in (0, 1, 3, 7, 20):
            expected_per_class, expected_map = reference_map(labels, gt_rows, det_rows, capacity, excluded)
            result = evaluate_predictions(labels, _gt(gt_rows), _preds(det_rows), excluded, capacity, ties="stable")
            assert result.mAP == pytest.approx(expected_map, abs=1e-12), (seed, capacity)
            for cls, ap in expected_per_class.items():
                assert (result.per_class[cls] is None) == (ap is None)
                if ap is not None:
                    assert result.per_class[cls] == pytest.approx(ap, abs=1e-12)
