"""Benchmark: the capacity sweep in both tie protocols vs the original's serial brute force.

    python benchmarks/capacity_sweep.py [--cap-range 50 2500] [--rows 200000] [--layout per-row|merged]
        [--brute-samples 8] [--seed 0] [--labelmap L --groundtruth G --detections D [--exclusions E]]

Without files it generates (seeded) a Chaotic-World-like validation set in a temporary folder: 50
classes with a long-tailed frequency, 2-12 people per keyframe and some crowded keyframes, detector
boxes jittered from the ground truth plus false boxes, one predict row per (box, class) with 3-decimal
scores. ``--layout per-row`` (default) repeats every keyframe's rows once per ground-truth row, as the
original's proposal pkls make its predict files (so each (box, class) row appears k times with one score).

The baseline is the original's serial brute force: ``evaluation.original.reference`` (a loop-for-loop
mirror of the original's calc_mAP.py + ava_evaluation, files re-read at every K as the original does),
timed on a sample of the capacities and extrapolated linearly to the whole range (it says so). Against
it, in the same run:
- ``--ties original`` (default): the exact per-K path of ``evaluation.original.protocol`` (target >= 30x);
- ``--ties stable``: the one-pass sweep (target >= 300x);
- the tie band of every K (``evaluation.tie_band``, the same for both protocols), timed on its own and
  reported as a ratio to each sweep.
Curves must agree with the baseline (exact mode) and with single stable runs (stable mode) at every
sampled K (max abs difference <= 1e-9), else the exit status is 1.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from common.cli import run_main  # noqa: E402
from evaluation import load_inputs  # noqa: E402
from evaluation.api import compute_tie_band  # noqa: E402
from evaluation.capacity import sweep_capacities  # noqa: E402
from evaluation.frame_map import evaluate_at_capacity, prepare  # noqa: E402
from evaluation.original.protocol import evaluate_original, prepare_original  # noqa: E402
from evaluation.original.reference import evaluate_like_original  # noqa: E402
from formats.eval_csv import GroundTruth, Predictions, write_ground_truth_csv, write_predict_csv  # noqa: E402
from formats.pbtxt import write_label_map  # noqa: E402

NUM_CLASSES = 50
TOLERANCE = 1e-9


@dataclass(frozen=True)
class _Sweep:
    """What both protocols' sweeps are timed on and against.

    Attributes:
        label_map, ground_truth, preds, excluded: the loaded inputs (``evaluation.load_inputs``).
        capacities: every K of the range.
        sampled: the K the brute force evaluated one by one.
        brute_total: the brute force's time extrapolated to every K (s).
        band_s: the tie band's time over the range (s).
    """

    label_map: dict[int, str]
    ground_truth: GroundTruth
    preds: Predictions
    excluded: set[tuple[str, int]]
    capacities: np.ndarray
    sampled: np.ndarray
    brute_total: float
    band_s: float


def _person_boxes(rng: np.random.Generator, count: int) -> np.ndarray:
    """``[count, 4]`` plausible normalised person boxes."""
    width = rng.uniform(0.03, 0.2, count)
    height = np.minimum(width * rng.uniform(1.5, 3.0, count), 0.9)
    x1 = rng.uniform(0, 1 - width)
    y1 = rng.uniform(0, 1 - height)
    return np.stack([x1, y1, x1 + width, y1 + height], axis=1)


def generate_dataset(folder: Path, seed: int, keyframes: int = 10**9, per_row: bool = False,
                     rows: int | None = None) -> tuple[Path, Path, Path]:
    """Write ``list_action.pbtxt``, ``gt.csv`` and ``predict.csv`` into ``folder``; return their paths.

    Args:
        folder: output folder.
        seed: generator seed.
        keyframes: keyframes to generate (at most).
        per_row: repeat each keyframe's predict rows once per ground-truth row (the original's layout).
        rows: stop after the first keyframe that brings the predict file to this many rows.
    """
    if rows is None and keyframes >= 10**9:
        raise ValueError("give keyframes or rows")
    rng = np.random.default_rng(seed)
    class_weights = 1.0 / np.arange(1, NUM_CLASSES + 1) ** 1.1
    class_weights /= class_weights.sum()
    gt_cols: dict[str, list] = {"video": [], "time": [], "boxes": [], "class_id": [], "person_id": []}
    det_cols: dict[str, list] = {"video": [], "time": [], "boxes": [], "class_id": [], "score": []}
    for keyframe in range(keyframes):
        video, second = f"cw_{keyframe // 50:03d}", 900 + keyframe % 50
        if per_row:
            # Sized like the original's real per-row files: up to ~10,000 rows in a keyframe.
            people = int(rng.integers(1, 7))
        else:
            people = int(rng.integers(40, 101)) if rng.random() < 0.05 else int(rng.integers(2, 13))
        boxes = _person_boxes(rng, people)
        labels = [rng.choice(NUM_CLASSES, size=int(rng.integers(1, 3 if per_row else 4)), replace=False,
                             p=class_weights) + 1 for _ in range(people)]
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
        copies = sum(len(person_labels) for person_labels in labels) if per_row else 1
        det_cols["video"] += [video] * truth.size * copies
        det_cols["time"] += [second] * truth.size * copies
        det_cols["boxes"].append(np.tile(np.repeat(np.round(det_boxes, 3), NUM_CLASSES, axis=0), (copies, 1)))
        det_cols["class_id"].append(np.tile(np.arange(1, NUM_CLASSES + 1), len(det_boxes) * copies))
        det_cols["score"].append(np.tile(np.round(scores.reshape(-1), 3), copies))
        if rows is not None and len(det_cols["video"]) >= rows:
            break
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


def _brute_force(files: tuple[Path, Path, Path, Path | None], sampled: np.ndarray) -> tuple[np.ndarray, float]:
    """The original's serial brute force at ``sampled`` capacities: (mAPs, seconds per capacity)."""
    start = time.perf_counter()
    maps = np.array([evaluate_like_original(*files, capacity=int(k))[0] for k in sampled])
    return maps, (time.perf_counter() - start) / len(sampled)


def run_benchmark(labelmap: Path, gt_path: Path, predict_path: Path, exclusions: Path | None,
                  cap_range: tuple[int, int], brute_samples: int, modes: tuple[str, ...] = ("original", "stable")) -> int:
    """Time the baseline and both protocols' sweeps, print figures, return the exit status (0: curves agree)."""
    start = time.perf_counter()
    label_map, ground_truth, preds, excluded = load_inputs(labelmap, gt_path, predict_path, exclusions)
    read_s = time.perf_counter() - start
    k_min, k_max = cap_range
    num_k = k_max - k_min + 1
    capacities = np.arange(k_min, k_max + 1)
    sampled = np.unique(np.linspace(k_min, k_max, max(2, min(brute_samples, num_k))).round().astype(int))

    brute, per_k = _brute_force((labelmap, gt_path, predict_path, exclusions), sampled)
    brute_total = per_k * num_k
    print(f"original's serial brute force (loop mirror, files re-read per K): {len(sampled)} capacities took "
          f"{per_k * len(sampled):.2f} s ({per_k:.3f} s each); EXTRAPOLATED linearly to {num_k} capacities: "
          f"{brute_total:.1f} s")
    status = 0

    start = time.perf_counter()
    band = compute_tie_band(label_map, ground_truth, preds, excluded, None, (k_min, k_max))
    band_s = time.perf_counter() - start
    exact = band.low_exact & band.high_exact
    print(f"tie band (every order of equal scores; both protocols) over the {num_k} capacities: {band_s:.2f} s "
          f"(its own preparation included); exact at {int(exact.sum())} of {num_k} K; widest "
          f"{100 * float(np.max(band.high - band.low)):.2f} points, largest gap between bound and reached order "
          f"{100 * float(np.max(np.maximum(band.low_reached - band.low, band.high - band.high_reached))):.3f} points")
    sweep = _Sweep(label_map, ground_truth, preds, excluded, capacities, sampled, brute_total, band_s)
    if "original" in modes:
        status |= _time_exact(sweep, brute, read_s)
    if "stable" in modes:
        status |= _time_stable(sweep)
    return status


def _time_exact(sweep: _Sweep, brute: np.ndarray, read_s: float) -> int:
    """The exact protocol's sweep: the original's path at every K; 1 if it disagrees with the brute force.

    Args:
        sweep: the inputs, capacities and baseline figures.
        brute: the brute force's mAP at ``sweep.sampled``.
        read_s: seconds spent reading the files (printed with the data's size).
    """
    capacities, sampled, band_s = sweep.capacities, sweep.sampled, sweep.band_s
    k_min, k_max, num_k = int(capacities[0]), int(capacities[-1]), len(capacities)
    start = time.perf_counter()
    exact_data = prepare_original(sweep.label_map, sweep.ground_truth, sweep.preds, sweep.excluded)
    prepare_s = time.perf_counter() - start
    counts = exact_data.counts
    print(f"data: {counts['detection_rows']} predict rows in {counts['detection_keyframes']} keyframes "
          f"(max {counts['max_rows_per_keyframe']} rows in one), {counts['gt_rows_evaluated']} ground-truth rows; "
          f"read files {read_s:.2f} s")
    start = time.perf_counter()
    run = evaluate_original(exact_data, capacities)
    exact_s = time.perf_counter() - start + prepare_s
    curve = run.mean_ap
    best = int(np.argmax(curve))
    print(f"--ties original (exact): sweep over K = {k_min}..{k_max} ({num_k} capacities) "
          f"{exact_s:.2f} s (prepare {prepare_s:.2f} s included); best K = {int(capacities[best])}, "
          f"mAP = {curve[best]:.6f}; the tie band adds {band_s:.2f} s ({band_s / exact_s:.3f}x the sweep)")
    print(f"speed-up --ties original (extrapolated brute force / exact sweep): {sweep.brute_total / exact_s:.0f}x, "
          f"with the band {sweep.brute_total / (exact_s + band_s):.0f}x (target >= 30x)")
    diff = float(np.max(np.abs(brute - curve[sampled - k_min])))
    print(f"exact sweep vs the original's path at the {len(sampled)} sampled K: max |difference| = {diff:.3g} "
          f"(tolerance {TOLERANCE:g})")
    if diff > TOLERANCE:
        print("FAIL: the exact sweep and the original's single runs disagree")
        return 1
    return 0


def _time_stable(sweep: _Sweep) -> int:
    """The stable rule's one-pass sweep, and with the band; 1 if it disagrees with single runs."""
    capacities, sampled, brute_total = sweep.capacities, sweep.sampled, sweep.brute_total
    k_min, k_max = int(capacities[0]), int(capacities[-1])
    start = time.perf_counter()
    data = prepare(sweep.label_map, sweep.ground_truth, sweep.preds, sweep.excluded)
    stable_prepare_s = time.perf_counter() - start
    start = time.perf_counter()
    curves = sweep_capacities(data, k_min, k_max)
    sweep_s = time.perf_counter() - start + stable_prepare_s
    # With the band the preparation is shared (the API passes it on); time the band's sweep on it.
    start = time.perf_counter()
    compute_tie_band(sweep.label_map, sweep.ground_truth, sweep.preds, sweep.excluded, data, (k_min, k_max))
    shared_band_s = time.perf_counter() - start
    print(f"--ties stable: one-pass sweep {sweep_s:.2f} s (prepare {stable_prepare_s:.2f} s included), with the tie "
          f"band {sweep_s + shared_band_s:.2f} s (band {shared_band_s:.2f} s on the shared preparation, "
          f"{shared_band_s / sweep_s:.2f}x the sweep); best K = {int(curves.capacities[curves.best_index])}, "
          f"mAP = {curves.mean_ap[curves.best_index]:.6f}")
    print(f"speed-up --ties stable (extrapolated brute force / one-pass sweep): {brute_total / sweep_s:.0f}x, "
          f"with the band {brute_total / (sweep_s + shared_band_s):.0f}x (target >= 300x)")
    singles = np.array([evaluate_at_capacity(data, int(k)).mean_ap for k in sampled])
    diff = float(np.max(np.abs(singles - curves.mean_ap[sampled - k_min])))
    print(f"stable sweep vs stable single runs at the {len(sampled)} sampled K: max |difference| = {diff:.3g} "
          f"(tolerance {TOLERANCE:g})")
    if diff > TOLERANCE:
        print("FAIL: the one-pass sweep and the single-capacity evaluations disagree")
        return 1
    return 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cap-range", type=int, nargs=2, default=(50, 2500), metavar=("MIN", "MAX"))
    parser.add_argument("--brute-samples", type=int, default=8, help="capacities evaluated one by one")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--rows", type=int, default=200_000, help="predict rows of the generated data")
    parser.add_argument("--keyframes", type=int, default=None, help="generate this many keyframes instead")
    parser.add_argument("--layout", choices=("per-row", "merged"), default="per-row",
                        help="generated predict file: the original's per-row duplicates, or one row per (box, class)")
    parser.add_argument("--ties", choices=("both", "original", "stable"), default="both",
                        help="which protocol's sweep to time against the brute force")
    parser.add_argument("--labelmap", type=Path)
    parser.add_argument("--groundtruth", type=Path)
    parser.add_argument("--detections", type=Path)
    parser.add_argument("--exclusions", type=Path)
    args = parser.parse_args(argv)
    given = [args.labelmap, args.groundtruth, args.detections]
    if any(given) and not all(given):
        parser.error("--labelmap, --groundtruth and --detections go together")
    return args


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; returns the exit status (1: the curves disagree)."""
    return run_main(parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    modes = ("original", "stable") if args.ties == "both" else (args.ties,)
    if args.labelmap:
        return run_benchmark(args.labelmap, args.groundtruth, args.detections, args.exclusions,
                             tuple(args.cap_range), args.brute_samples, modes)
    with tempfile.TemporaryDirectory(prefix="capacity_sweep_") as folder:
        start = time.perf_counter()
        size = {"keyframes": args.keyframes} if args.keyframes else {"rows": args.rows}
        paths = generate_dataset(Path(folder), args.seed, per_row=args.layout == "per-row", **size)
        print(f"generated seed-{args.seed} {args.layout} data in {time.perf_counter() - start:.1f} s")
        return run_benchmark(*paths, None, tuple(args.cap_range), args.brute_samples, modes)


if __name__ == "__main__":
    sys.exit(main())
