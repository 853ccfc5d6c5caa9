"""AVA v2.2 csv (+ FAIR person proposals) -> the annotation pkl ACAR-Net's configs read.

What ACAR-Net's released files hold, and therefore what this writes (DATA.md, "AVA v2.2"):
- ``ava_train_v2.2.pkl`` / ``ava_val_v2.2_gt.pkl`` (``--boxes gt``): the csv's ground-truth boxes,
  one entry per (keyframe, person, box) with all of that person's evaluated actions;
- ``ava_train_v2.2_with_fair_0.9.pkl`` (``--boxes gt+proposals --proposals P --threshold 0.9``):
  the same, plus every proposal scoring >= 0.9 as an extra entry with ``person_id [-1]``, labelled
  with the actions of the ground-truth box it overlaps most if that IoU is >= ``--label-iou`` (0.9),
  else no action (a negative);
- ``ava_val_v2.2_fair_0.85.pkl`` (``--boxes proposals --threshold 0.85``): the proposals scoring
  >= 0.85 only, without labels (``label []``, ``person_id [-1]``).
Action ids 1..80 map to the label map's evaluated classes (60 for AVA v2.2): ``label`` holds their
positions 0..59; actions outside the label map are dropped. Elements: ``time`` the keyframe second,
``mid_frame = (time - 900) * 30 + 1`` (frames ``image_%06d.jpg`` at 30 fps from the 900th second,
numbered from 1), ``start_frame = mid_frame - 45``, ``n_frames = 91``, ``frame_rate 30``.
"""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from common.cli import run_main
from evaluation.boxes import paired_iou
from formats.annotation_pkl import save_annotation_pkl
from formats.ava import AvaRow, Proposal, ava_label_type, read_ava_csv, read_ava_label_map, read_ava_proposals
from formats.pbtxt import LabelMapEntry

LOGGER = logging.getLogger(__name__)

# ACAR-Net's frame layout: frames from the 900th second (the AVA window is 900-1800 s), 30 fps.
FRAME_RATE = 30
WINDOW_START_SECONDS = 900
FORMAT_STR = "image_%06d.jpg"
# The clip window of ACAR-Net's AVA elements: 91 frames centred on the keyframe (start + 91 // 2 =
# mid), so TemporalCenterCrop(64, 2) takes 32 frames around it.
HALF_WINDOW = 45
N_FRAMES = 2 * HALF_WINDOW + 1
PROPOSAL_PERSON_ID = -1
BOX_MODES = ("gt", "gt+proposals", "proposals")


def keyframe_to_frame(time: int) -> int:
    """Frame number (1-based, ``image_%06d.jpg``) of the keyframe at second ``time`` (e.g. 902 -> 61)."""
    return (time - WINDOW_START_SECONDS) * FRAME_RATE + 1


def new_element(video: str, time: int) -> dict:
    """The keyframe fields of an AVA element, with an empty ``labels`` list."""
    mid = keyframe_to_frame(time)
    return {"video": video, "time": time, "start_frame": mid - HALF_WINDOW, "n_frames": N_FRAMES, "mid_frame": mid,
            "format_str": FORMAT_STR, "frame_rate": FRAME_RATE, "labels": []}


def classes_from_entries(entries: Sequence[LabelMapEntry]) -> list[dict]:
    """The pkl ``classes`` list (``name``, ``id``, ``label_type``) in label-map id order.

    A map in the ``item { name id }`` layout has no types: each class gets AVA's type of its id.
    """
    return [{"name": e.name, "id": e.class_id, "label_type": e.label_type or ava_label_type(e.class_id)}
            for e in entries]


def gt_entries(rows: Sequence[AvaRow], index_of: dict[int, int]) -> dict[tuple[str, int], list[dict]]:
    """Ground-truth entries per keyframe: one per (person id, box), its evaluated actions sorted."""
    per_keyframe: dict[tuple[str, int], dict[tuple[int, tuple[float, ...]], dict]] = {}
    for row in rows:
        persons = per_keyframe.setdefault((row.video, row.time), {})
        entry = persons.setdefault((row.person_id, row.box), {
            "bounding_box": [float(v) for v in row.box], "label": [], "person_id": [row.person_id]})
        if row.action_id in index_of and index_of[row.action_id] not in entry["label"]:
            entry["label"].append(index_of[row.action_id])
    result = {}
    for key, persons in per_keyframe.items():
        for entry in persons.values():
            entry["label"].sort()
        result[key] = list(persons.values())
    return result


def proposal_entries(proposals: Sequence[Proposal], threshold: float, gt: Sequence[dict] | None,
                     label_iou: float) -> list[dict]:
    """Entries for the proposals scoring >= ``threshold``; labelled from ``gt`` by best IoU when given."""
    kept = [p for p in proposals if p.score >= threshold]
    entries = []
    for proposal in kept:
        labels: list[int] = []
        if gt:
            boxes = np.array([entry["bounding_box"] for entry in gt], dtype=np.float64)
            ious = paired_iou(np.repeat(np.array([proposal.box], dtype=np.float64), len(gt), axis=0), boxes)
            best = int(np.argmax(ious))
            if ious[best] >= label_iou:
                labels = list(gt[best]["label"])
        entries.append({"bounding_box": [float(v) for v in proposal.box], "label": labels,
                        "person_id": [PROPOSAL_PERSON_ID], "score": float(proposal.score)})
    return entries


@dataclass
class ConversionStats:
    """Counts of one conversion, printed by the CLI."""

    rows: int = 0
    keyframes: int = 0
    elements: int = 0
    gt_boxes: int = 0
    proposal_boxes: int = 0
    labelled_proposals: int = 0
    keyframes_without_boxes: int = 0
    dropped_actions: int = 0


def convert_ava(csv_path: str | Path, labelmap: str | Path, out: str | Path, boxes: str = "gt",
                proposals_path: str | Path | None = None, threshold: float = 0.9, label_iou: float = 0.9,
                allow_unannotated: bool = False) -> ConversionStats:
    """Write an ACAR-Net-style AVA pkl from the official csv (and proposals); see the module docstring.

    Args:
        csv_path: ``ava_{train,val}_v2.2.csv``.
        labelmap: ``ava_action_list_v2.2_for_activitynet_2019.pbtxt`` (the evaluated classes).
        out: the pkl to write (atomically).
        boxes: ``gt``, ``gt+proposals`` or ``proposals``.
        proposals_path: the FAIR proposals pickle (needed unless ``boxes == 'gt'``).
        threshold: proposals scoring below it are left out (ACAR-Net: 0.9 train, 0.85 val).
        label_iou: a proposal takes the actions of the ground-truth box it overlaps most at this IoU
            or more (``gt+proposals`` only).
        allow_unannotated: accept proposals of keyframes the csv does not annotate (the real FAIR
            files have a key for every keyframe): ``proposals`` writes them like any keyframe (the
            evaluator counts their detections as false positives), ``gt+proposals`` does not use
            them (a training element needs ground truth).

    Returns:
        The counts.

    Raises:
        ValueError: an unknown ``boxes`` mode or a missing proposals path.
        FileNotFoundError, common.errors.FormatError: unreadable or malformed inputs (file, line or
            key named).
    """
    if boxes not in BOX_MODES:
        raise ValueError(f"boxes must be one of {', '.join(BOX_MODES)}, got {boxes!r}")
    if boxes != "gt" and proposals_path is None:
        raise ValueError(f"boxes {boxes!r} needs a proposals file (--proposals)")
    rows = read_ava_csv(csv_path)
    entries = read_ava_label_map(labelmap)
    index_of = {entry.class_id: position for position, entry in enumerate(entries)}
    stats = ConversionStats(rows=len(rows), dropped_actions=sum(row.action_id not in index_of for row in rows))
    gt = gt_entries(rows, index_of)
    keyframes = sorted(gt)
    proposals: dict[tuple[str, int], list[Proposal]] = {}
    if proposals_path is not None and boxes != "gt":
        proposals = read_ava_proposals(proposals_path, keyframes=gt.keys(), allow_unannotated=allow_unannotated)
        if boxes == "proposals":
            keyframes = sorted(set(keyframes) | set(proposals))
    elements = []
    for video, time in keyframes:
        element = new_element(video, time)
        if boxes != "proposals":
            element["labels"].extend(gt.get((video, time), []))
        if boxes != "gt":
            extra = proposal_entries(proposals.get((video, time), []), threshold,
                                     gt.get((video, time)) if boxes == "gt+proposals" else None, label_iou)
            stats.proposal_boxes += len(extra)
            stats.labelled_proposals += sum(bool(entry["label"]) for entry in extra)
            element["labels"].extend(extra)
        stats.gt_boxes += sum(entry["person_id"] != [PROPOSAL_PERSON_ID] for entry in element["labels"])
        if not element["labels"]:
            stats.keyframes_without_boxes += 1
            continue
        elements.append(element)
    stats.keyframes = len(keyframes)
    stats.elements = len(elements)
    save_annotation_pkl(out, elements, classes_from_entries(entries))
    return stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.ava_to_pkl",
                                     description="AVA v2.2 csv (+ FAIR person proposals) -> ACAR-Net-style annotation pkl.")
    parser.add_argument("--csv", required=True, help="ava_train_v2.2.csv or ava_val_v2.2.csv")
    parser.add_argument("--labelmap", required=True, help="ava_action_list_v2.2_for_activitynet_2019.pbtxt")
    parser.add_argument("--out", required=True, help="pkl to write, e.g. annotations/ava_val_v2.2_fair_0.85.pkl")
    parser.add_argument("--boxes", choices=BOX_MODES, default="gt",
                        help="gt (default), gt+proposals (train with FAIR boxes) or proposals (val with FAIR boxes)")
    parser.add_argument("--proposals", default=None, help="FAIR / LFB person proposals pickle")
    parser.add_argument("--threshold", type=float, default=0.9,
                        help="minimum proposal score (ACAR-Net: 0.9 train, 0.85 val; default 0.9)")
    parser.add_argument("--label-iou", type=float, default=0.9,
                        help="gt+proposals: IoU at which a proposal takes a ground-truth box's actions (default 0.9)")
    parser.add_argument("--allow-unannotated", action="store_true",
                        help="accept proposals of keyframes the csv does not annotate (real FAIR files): "
                             "kept with --boxes proposals, unused with gt+proposals")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints a one-line summary."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    stats = convert_ava(args.csv, args.labelmap, args.out, boxes=args.boxes, proposals_path=args.proposals,
                        threshold=args.threshold, label_iou=args.label_iou, allow_unannotated=args.allow_unannotated)
    print(f"{args.out}: {stats.elements} elements of {stats.keyframes} keyframes, {stats.gt_boxes} ground-truth "
          f"boxes, {stats.proposal_boxes} proposals ({stats.labelled_proposals} labelled), from {stats.rows} rows "
          f"({stats.dropped_actions} with actions outside the label map); {stats.keyframes_without_boxes} "
          "keyframes without any box left out")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
