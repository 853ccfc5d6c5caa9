"""Detector quality before the action stage: person recall, precision and AP of a proposals pkl against ground truth."""
from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from common.atomic import write_text_atomic
from common.cli import run_main
from evaluation.boxes import iou_matrix
from evaluation.frame_map import average_precision
from evaluation.plot import new_figure, write_figure
from formats.annotation_pkl import load_annotation_pkl
from formats.eval_csv import read_ground_truth_csv
from formats.official_csv import NUM_COLUMNS, read_official_csv

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LOGGER = logging.getLogger(__name__)

RECALL_THRESHOLDS = (0.3, 0.5, 0.7)
# Boxes that differ by less than this (normalised) are one person box: csv rows print boxes with
# varying precision, and the per-row pkls repeat each box once per label.
_DEDUPE_DECIMALS = 6

KeyframeKey = tuple[str, int]


def match_keyframe(pred_boxes: np.ndarray, scores: np.ndarray, gt_boxes: np.ndarray, threshold: float) -> np.ndarray:
    """Greedy matching of one keyframe: in descending score order (ties: input order), each detection
    takes the unmatched ground-truth box of highest IoU if that IoU is >= ``threshold``.

    Returns:
        ``[P]`` bool true-positive flags, in input order.
    """
    tp = np.zeros(len(pred_boxes), dtype=bool)
    if len(pred_boxes) == 0 or len(gt_boxes) == 0:
        return tp
    overlaps = iou_matrix(pred_boxes, gt_boxes)
    taken = np.zeros(len(gt_boxes), dtype=bool)
    for index in np.argsort(-scores, kind="stable"):
        candidates = np.where(taken, -1.0, overlaps[index])
        best = int(np.argmax(candidates))
        if candidates[best] >= threshold:
            taken[best] = True
            tp[index] = True
    return tp


def precision_recall_curve(scores: np.ndarray, tp: np.ndarray, num_gt: int) -> tuple[np.ndarray, np.ndarray]:
    """Precision and recall at every distinct score threshold, highest first.

    Detections with equal scores enter together (one point per distinct score), so the curve does not
    depend on the order of ties; with no scores at all (all equal) it is one point.

    Returns:
        ``(precision [K], recall [K])``; empty when there is no detection.
    """
    if len(scores) == 0:
        return np.zeros(0), np.zeros(0)
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_tp = scores[order], tp[order].astype(np.int64)
    cum_tp, cum_fp = np.cumsum(sorted_tp), np.cumsum(1 - sorted_tp)
    last_of_tie = np.append(sorted_scores[1:] != sorted_scores[:-1], True)
    cum_tp, cum_fp = cum_tp[last_of_tie], cum_fp[last_of_tie]
    precision = cum_tp / (cum_tp + cum_fp)
    recall = cum_tp / num_gt if num_gt > 0 else np.zeros_like(precision, dtype=np.float64)
    return precision.astype(np.float64), recall.astype(np.float64)


@dataclass
class GroupStats:
    """Quality of one video or of the whole set.

    Attributes:
        keyframes: ground-truth keyframes.
        gt_persons: distinct ground-truth person boxes.
        detections: detector boxes on those keyframes.
        recall: ``{'0.3': r, '0.5': r, '0.7': r}`` person recall per IoU threshold.
        precision: precision at the main IoU threshold.
        ap: average precision at the main IoU threshold.
        empty_keyframes: ground-truth keyframes with no detection (or absent from the proposals).
    """

    keyframes: int
    gt_persons: int
    detections: int
    recall: dict[str, float]
    precision: float
    ap: float
    empty_keyframes: int


@dataclass
class QualityReport:
    """Proposal quality; ``recall_ceiling`` bounds the recall any action model can reach on these boxes."""

    iou: float
    scored: bool
    overall: GroupStats
    per_video: dict[str, GroupStats]
    recall_ceiling: float
    missing_keyframes: int
    extra_keyframes: int
    notes: list[str] = field(default_factory=list)
    curve: dict[str, list[float]] = field(default_factory=dict)

    def to_dict(self) -> dict:
        """JSON-ready dict (the PR curve is in the plot, not here)."""
        data = asdict(self)
        data.pop("curve")
        return data


def _distinct_boxes(pairs: list[tuple[object, Sequence[float]]]) -> np.ndarray:
    seen: dict[tuple, list[float]] = {}
    for person, box in pairs:
        key = (person, tuple(round(float(v), _DEDUPE_DECIMALS) for v in box))
        seen.setdefault(key, [float(v) for v in box])
    return np.asarray(list(seen.values()), dtype=np.float64).reshape(-1, 4)


def load_ground_truth(path: str | Path) -> dict[KeyframeKey, np.ndarray]:
    """Distinct person boxes ``[G, 4]`` per keyframe from an annotation pkl, an official csv (13 columns)
    or the evaluator's ground-truth csv (8); rows repeating a (person, box) are one person."""
    path = Path(path)
    pairs: dict[KeyframeKey, list[tuple[object, Sequence[float]]]] = {}
    if path.suffix == ".pkl":
        for element in load_annotation_pkl(path).elements:
            bucket = pairs.setdefault((element["video"], int(element["time"])), [])
            bucket.extend((tuple(entry["person_id"]), entry["bounding_box"]) for entry in element["labels"])
    elif _is_official_csv(path):
        for row in read_official_csv(path):
            pairs.setdefault((row.video, int(row.time)), []).append((row.person_id, row.box))
    else:
        gt = read_ground_truth_csv(path)
        for video, time, box, person in zip(gt.video, gt.time.tolist(), gt.boxes.tolist(), gt.person_id.tolist()):
            pairs.setdefault((video, int(time)), []).append((person, box))
    return {key: _distinct_boxes(value) for key, value in pairs.items()}


def _is_official_csv(path: Path) -> bool:
    """13 columns (headerless as published, or with a header): the official csv; else the evaluator's (8)."""
    if not path.is_file():
        raise FileNotFoundError(f"ground truth not found: {path}")
    with path.open(encoding="utf-8") as handle:
        return len(handle.readline().strip().split(",")) == NUM_COLUMNS


def load_proposals(path: str | Path) -> tuple[dict[KeyframeKey, tuple[np.ndarray, np.ndarray]], bool]:
    """Boxes ``[P, 4]`` and scores ``[P]`` per keyframe of a proposals pkl, and whether scores were present.

    A keyframe repeated (one element per csv row, as in the original's files) is read once: every
    copy holds the same detector boxes. Without a ``score`` on every entry all scores are 1.
    """
    elements = load_annotation_pkl(path).elements
    scored = all("score" in entry for element in elements for entry in element["labels"])
    proposals: dict[KeyframeKey, tuple[np.ndarray, np.ndarray]] = {}
    for element in elements:
        key = (element["video"], int(element["time"]))
        if key in proposals:
            continue
        boxes = np.asarray([entry["bounding_box"] for entry in element["labels"]], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray([entry["score"] if scored else 1.0 for entry in element["labels"]], dtype=np.float64)
        proposals[key] = (boxes, scores)
    return proposals, scored


def _group_stats(keys: list[KeyframeKey], gt: dict, proposals: dict, iou: float) -> tuple[GroupStats, tuple]:
    thresholds = sorted(set(RECALL_THRESHOLDS) | {iou})
    empty_boxes = (np.zeros((0, 4)), np.zeros(0))
    scores, flags, matched = [], [], dict.fromkeys(thresholds, 0)
    num_gt = detections = empty = 0
    for key in keys:
        boxes, score = proposals.get(key, empty_boxes)
        num_gt += len(gt[key])
        detections += len(boxes)
        empty += len(boxes) == 0
        for threshold in thresholds:
            tp = match_keyframe(boxes, score, gt[key], threshold)
            matched[threshold] += int(tp.sum())
            if threshold == iou:
                scores.append(score)
                flags.append(tp)
    all_scores = np.concatenate(scores) if scores else np.zeros(0)
    all_flags = np.concatenate(flags) if flags else np.zeros(0, dtype=bool)
    precision_curve, recall_curve = precision_recall_curve(all_scores, all_flags, num_gt)
    stats = GroupStats(
        keyframes=len(keys), gt_persons=num_gt, detections=detections,
        recall={f"{t:g}": matched[t] / num_gt if num_gt else 0.0 for t in thresholds},
        precision=matched[iou] / detections if detections else 0.0,
        ap=average_precision(precision_curve, recall_curve), empty_keyframes=int(empty))
    return stats, (precision_curve, recall_curve)


def proposal_quality(proposals_pkl: str | Path, gt: str | Path, iou: float = 0.5) -> QualityReport:
    """Compare a proposals pkl with ground truth, per video and overall.

    Only keyframes of the ground truth count; detections on other keyframes are reported as
    ``extra_keyframes`` and otherwise ignored (as the AVA evaluator ignores them).

    Args:
        proposals_pkl: proposals pkl (``detect.infer`` output or a released file).
        gt: annotation pkl, official csv or evaluator ground-truth csv.
        iou: IoU threshold of a match for precision, AP and the recall ceiling.

    Returns:
        The report. Without detector scores in the pkl, AP is precision x recall at the single
        operating point (stated in ``notes``).

    Raises:
        FileNotFoundError: a file is missing.
        FormatError: a malformed file.
    """
    truth = load_ground_truth(gt)
    proposals, scored = load_proposals(proposals_pkl)
    keys = list(truth)
    overall, (precision_curve, recall_curve) = _group_stats(keys, truth, proposals, iou)
    per_video: dict[str, GroupStats] = {}
    by_video: dict[str, list[KeyframeKey]] = {}
    for key in keys:
        by_video.setdefault(key[0], []).append(key)
    for video in sorted(by_video):
        per_video[video], _ = _group_stats(by_video[video], truth, proposals, iou)
    notes = [] if scored else ["no detector scores in the proposals: all boxes ranked equally, AP = precision "
                               "x recall at the single operating point"]
    report = QualityReport(
        iou=iou, scored=scored, overall=overall, per_video=per_video, recall_ceiling=overall.recall[f"{iou:g}"],
        missing_keyframes=sum(1 for key in keys if key not in proposals),
        extra_keyframes=sum(1 for key in proposals if key not in truth), notes=notes,
        curve={"precision": precision_curve.tolist(), "recall": recall_curve.tolist()})
    for note in notes:
        LOGGER.warning(note)
    return report


def format_table(report: QualityReport) -> str:
    """The report as a fixed-width text table (one row per video, then the overall row)."""
    recall_keys = list(report.overall.recall)
    header = (["video", "keyframes", "GT", "det"] + [f"R@{k}" for k in recall_keys]
              + [f"P@{report.iou:g}", f"AP@{report.iou:g}", "no det"])
    rows = [[video, *_cells(stats, recall_keys)] for video, stats in report.per_video.items()]
    rows.append(["overall", *_cells(report.overall, recall_keys)])
    widths = [max(len(str(row[i])) for row in [header, *rows]) for i in range(len(header))]
    lines = ["  ".join(str(cell).rjust(width) for cell, width in zip(row, widths)) for row in [header, *rows]]
    lines.insert(1, "-" * len(lines[0]))
    lines.insert(len(lines) - 1, "-" * len(lines[0]))
    lines.append(f"recall ceiling for the action stage (person recall @ IoU {report.iou:g}): "
                 f"{100 * report.recall_ceiling:.2f}%")
    lines.append(f"keyframes missing from the proposals: {report.missing_keyframes}; "
                 f"proposal keyframes without ground truth (ignored): {report.extra_keyframes}")
    lines.extend(f"note: {note}" for note in report.notes)
    return "\n".join(lines)


def _cells(stats: GroupStats, recall_keys: list[str]) -> list[str]:
    return ([str(stats.keyframes), str(stats.gt_persons), str(stats.detections)]
            + [f"{100 * stats.recall[k]:.1f}" for k in recall_keys]
            + [f"{100 * stats.precision:.1f}", f"{100 * stats.ap:.1f}", str(stats.empty_keyframes)])


def save_report(report: QualityReport, json_path: str | Path | None = None, png_path: str | Path | None = None) -> None:
    """Write the report as JSON and the precision-recall curve as a PNG, each atomically."""
    if json_path is not None:
        write_text_atomic(json_path, json.dumps(report.to_dict(), indent=2) + "\n")
    if png_path is not None:
        write_figure(png_path, _plot(report))


def _plot(report: QualityReport) -> Figure:
    figure = new_figure(6, 5)
    axis = figure.subplots()
    recall, precision = report.curve.get("recall", []), report.curve.get("precision", [])
    if recall:
        axis.step([0.0, *recall], [precision[0], *precision], where="pre", linewidth=1.5)
        axis.scatter([recall[-1]], [precision[-1]], color="tab:red", zorder=3,
                     label=f"all boxes: R {100 * recall[-1]:.1f}%, P {100 * precision[-1]:.1f}%")
        axis.legend(loc="lower left")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel(f"person recall (IoU {report.iou:g})")
    axis.set_ylabel("precision")
    suffix = "" if report.scored else " (no scores: one point)"
    axis.set_title(f"person AP@{report.iou:g} = {100 * report.overall.ap:.1f}%{suffix}")
    axis.grid(alpha=0.3)
    return figure


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m detect.quality",
                                     description="Person recall / precision / AP of a proposals pkl.")
    parser.add_argument("--proposals", required=True, help="proposals pkl")
    parser.add_argument("--gt", required=True, help="annotation pkl, official csv or evaluator GT csv")
    parser.add_argument("--iou", type=float, default=0.5)
    parser.add_argument("--json", default=None, help="report JSON (default: <proposals stem>_quality.json)")
    parser.add_argument("--plot", default=None, help="PR-curve PNG (default: <proposals stem>_quality.png)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the table."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    report = proposal_quality(args.proposals, args.gt, args.iou)
    stem = Path(args.proposals).with_suffix("")
    json_path = args.json or f"{stem}_quality.json"
    png_path = args.plot or f"{stem}_quality.png"
    save_report(report, json_path, png_path)
    print(format_table(report))
    print(f"saved {json_path} and {png_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
