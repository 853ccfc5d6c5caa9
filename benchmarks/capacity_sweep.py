"""Benchmark: one-pass capacity sweep vs one single-capacity evaluation per K, on val-sized data.

    python benchmarks/capacity_sweep.py [--cap-range 50 2200] [--brute-samples 12] [--seed 0]
        [--keyframes 2000] [--labelmap L --groundtruth G --detections D [--exclusions E]]

Without files it generates (seeded) a Chaotic-World-like validation set in a temporary folder:
50 classes with a long-tailed frequency, ~10 people per keyframe and some crowded keyframes
(up to 100 boxes, i.e. 5000 predict rows), detector boxes jittered from the ground truth plus
false boxes, one predict row per (box, class) with 3-decimal scores (so ties are frequent).

Both methods run on the same prepared data (files read once). The brute force evaluates a sample
of the capacities and is extrapolated linearly to the whole range (it says so); the curves must
agree at every sampled K (max abs difference <= 1e-9), else the exit status is 1.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from evaluation import load_inputs  # noqa: E402
from evaluation.capacity import sweep_capacities  # noqa: E402
from evaluation.frame_map import evaluate_at_capacity, prepare  # noqa: E402
from formats.eval_csv import GroundTruth, Predictions, write_ground_truth_csv, write_predict_csv  # noqa: E402
from formats.pbtxt import write_label_map  # noqa: E402

NUM_CLASSES = 50
TOLERANCE = 1e-9


def _person_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    """``[count, 4]`` plausible normalised person boxes."""
    width = rng.uniform(0.03, 0.2, count)
    height = np.minimum(width * rng.uniform(1.5, 3.0, count), 0.9)
    x1 = rng.uniform(0, 1 - width)
    y1 = rng.uniform(0, 1 - height)
    return np.stack([x1, y1, x1 + width, y1 + height], axis=1)


def generate_dataset(folder: Path, seed: int, keyframes: int) -> tuple[Path, Path, Path]:
    """Write ``list_action.pbtxt``, ``gt.csv`` and ``predict.csv`` into ``folder``; return their paths."""
    rng = np.random.default_rng(seed)
    class_weights = 1.0 / np.arange(1, NUM_CLASSES + 1) ** 1.1
    class_weights /= class_weights.sum()
    gt_cols: dict[str, list] = {"video": [], "time": [], "boxes": [], "class_id": [], "person_id": []}
    det_cols: dict[str, list] = {"video": [], "time": [], "boxes": [], "class_id": [], "score": []}
    for keyframe in range(keyframes):
        video, second = f"cw_{keyframe // 50:03d}", 900 + keyframe % 50
        people = int(rng.integers(40, 101)) if rng.random() < 0.05 else int(rng.integers(2, 13))
        boxes = _person_boxes(rng, people)
        labels = [rng.choice(NUM_CLASSES, size=int(rng.integers(1, 4)), replace=False, p=class_weights) + 1
                  for _ in range(people)]
        for person, person_labels in enumerate(labels):
            gt_cols["video"] += [video] * len(person_labels)
            gt_cols["time"] += [second] * len(person_labels)
            gt_cols["boxes"] += [boxes[person]] * len(person_labels)
            gt_cols["class_id"] += person_labels.tolist()
            gt_cols["person_id"] += [person] * len(person_labels)
        found = np.flatnonzero(rng.random(people) < 0.9)
        extra = _person_boxes(rng, int(rng.poisson(0.2 * people)))
        jitter = rng.normal(0, 0.01, (len(found), 4))
        det_boxes = np.clip(np.concatenate([boxes[found] + jitter, extra]), 0, 1)
        truth = np.zeros((len(det_boxes), NUM_CLASSES), dtype=bool)
        for row, person in enumerate(found):
            truth[row, labels[person] - 1] = True
        scores = np.clip(rng.beta(0.6, 6, truth.shape) + truth * rng.uniform(0.1, 0.8, truth.shape), 0, 1)
        det_cols["video"] += [video] * truth.size
        det_cols["time"] += [second] * truth.size
        det_cols["boxes"].append(np.repeat(np.round(det_boxes, 3), NUM_CLASSES, axis=0))
        det_cols["class_id"].append(np.tile(np.arange(1, NUM_CLASSES + 1), len(det_boxes)))
        det_cols["score"].append(np.round(scores.reshape(-1), 3))
    labelmap, gt_path, predict_path = folder / "list_action.pbtxt", folder / "gt.csv", folder / "predict.csv"
    write_label_map(labelmap, {cid: f"action_{cid}" for cid in range(1, NUM_CLASSES + 1)})
    write_ground_truth_csv(gt_path, GroundTruth(video=gt_cols["video"], time=gt_cols["time"],
                                                boxes=np.array(gt_cols["boxes"]), class_id=gt_cols["class_id"],
                                                person_id=gt_cols["person_id"]))
    write_predict_csv(predict_path, Predictions(video=det_cols["video"], time=det_cols["time"],
                                                boxes=np.concatenate(det_cols["boxes"]),
                                                class_id=np.concatenate(det_cols["class_id"]),
                                                score=np.concatenate(det_cols["score"])))
    return labelmap, gt_path, predict_path


def run_benchmark(labelmap: Path, gt_path: Path, predict_path: Path, exclusions: Path | None,
                  cap_range: tuple[int, int], brute_samples: int) -> int:
    """Time both methods, print figures, return the exit status (0: curves agree)."""
    start = time.perf_counter()
    label_map, ground_truth, preds, excluded = load_inputs(labelmap, gt_path, predict_path, exclusions)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    data = prepare(label_map, ground_truth, preds, excluded)
    prepare_s = time.perf_counter() - start
    counts = data.counts
    print(f"data: {counts['detection_rows']} predict rows in {counts['detection_keyframes']} keyframes "
          f"(max {counts['max_rows_per_keyframe']} rows in one), {counts['gt_rows_evaluated']} ground-truth rows")
    print(f"read files: {read_s:.2f} s, prepare: {prepare_s:.2f} s (shared by both methods, not in the ratio)")

    k_min, k_max = cap_range
    start = time.perf_counter()
    curves = sweep_capacities(data, k_min, k_max)
    sweep_s = time.perf_counter() - start
    num_k = k_max - k_min + 1
    print(f"one-pass sweep over K = {k_min}..{k_max} ({num_k} capacities): {sweep_s:.2f} s; "
          f"best K = {int(curves.capacities[curves.best_index])}, mAP = {curves.mean_ap[curves.best_index]:.6f}")

    sampled = np.unique(np.linspace(k_min, k_max, max(2, min(brute_samples, num_k))).round().astype(int))
    start = time.perf_counter()
    brute = np.array([evaluate_at_capacity(data, int(k)).mean_ap for k in sampled])
    brute_s = time.perf_counter() - start
    per_k = brute_s / len(sampled)
    brute_total = per_k * num_k
    print(f"brute force: {len(sampled)} single-capacity evaluations took {brute_s:.2f} s ({per_k:.3f} s each); "
          f"EXTRAPOLATED linearly to {num_k} capacities: {brute_total:.1f} s")
    ratio = brute_total / sweep_s
    print(f"speed-up (extrapolated brute force / one-pass sweep): {ratio:.0f}x (target >= 300x)")
    diff = float(np.max(np.abs(brute - curves.mean_ap[sampled - k_min])))
    print(f"curves at the {len(sampled)} sampled K: max |difference| = {diff:.3g} (tolerance {TOLERANCE:g})")
    if diff > TOLERANCE:
        print("FAIL: the one-pass sweep and the single-capacity evaluations disagree")
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-range", type=int, nargs=2, default=(50, 2200), metavar=("MIN", "MAX"))
    parser.add_argument("--brute-samples", type=int, default=12, help="capacities evaluated one by one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keyframes", type=int, default=2000, help="size of the generated data")
    parser.add_argument("--labelmap", type=Path)
    parser.add_argument("--groundtruth", type=Path)
    parser.add_argument("--detections", type=Path)
    parser.add_argument("--exclusions", type=Path)
    args = parser.parse_args(argv)
    given = [args.labelmap, args.groundtruth, args.detections]
    if any(given) and not all(given):
        parser.error("--labelmap, --groundtruth and --detections go together")
    if all(given):
        return run_benchmark(args.labelmap, args.groundtruth, args.detections, args.exclusions,
                             tuple(args.cap_range), args.brute_samples)
    with tempfile.TemporaryDirectory(prefix="capacity_sweep_") as folder:
        start = time.perf_counter()
        paths = generate_dataset(Path(folder), args.seed, args.keyframes)
        print(f"generated seed-{args.seed} data with {args.keyframes} keyframes in {time.perf_counter() - start:.1f} s")
        return run_benchmark(*paths, None, tuple(args.cap_range), args.brute_samples)


if __name__ == "__main__":
    sys.exit(main())
