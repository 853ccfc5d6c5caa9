"""The synthetic dataset in the AVA v2.2 layout: 8-column csvs, 80-id labels with a 60-class list, proposals.

Built from a synthetic Chaotic World dataset rendered at 30 fps (``datasets.synthetic``): each
synthetic video stands for the 15-minute AVA window, so its second ``s`` is AVA second ``900 + s``
and its frame ``i`` (numbered from 1) is ACAR-Net's ``image_%06d.jpg`` frame ``i``. Only keyframes
whose 91-frame clip window fits in the video and whose timestamp is >= 0902 are kept. Chaotic World
class ``c`` (1..50) becomes AVA action id ``AVA_EVALUATED_IDS[c - 1]``, so the 13 Chaotic World
pose classes land on AVA's 13 evaluated pose ids; every third person also gets a row with action
id 2, which AVA does not evaluate. Proposals imitate a person detector: each ground-truth box
jittered by up to 3% of its size with a score in [0.8, 1), plus one spurious box per keyframe with a
score in [0.1, 0.6).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from datasets.synthetic import SPLITS, load_cw_classes
from evaluation.exclusions import frame_to_second
from formats.ava import AvaRow, Proposal, ava_label_type, write_ava_csv, write_ava_proposals
from formats.eval_csv import read_exclusions, write_exclusions
from formats.official_csv import read_official_csv
from formats.pbtxt import write_label_map

# The 60 action ids of AVA v2.2 that are evaluated (ava_action_list_v2.2_for_activitynet_2019.pbtxt);
# the first 13 are its evaluated PERSON_MOVEMENT (pose) classes.
AVA_EVALUATED_IDS = (
    1, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 17, 20, 22, 24, 26, 27, 28, 29, 30, 34, 36, 37, 38, 41, 43, 45,
    46, 47, 48, 49, 51, 52, 54, 56, 57, 58, 59, 60, 61, 62, 63, 64, 65, 66, 67, 68, 69, 70, 72, 73, 74, 76, 77, 78,
    79, 80,
)
UNEVALUATED_ID = 2
WINDOW_START_SECONDS = 900
FPS = 30
HALF_WINDOW = 45
ANNOTATIONS = "annotations"
LABELMAP_NAME = "ava_action_list_v2.2_for_activitynet_2019.pbtxt"
AVA_SPLITS = {"train": "train", "val": "val"}


@dataclass(frozen=True)
class AvaSplitFiles:
    """The official-layout files of one split."""

    csv: Path
    exclusions: Path
    proposals: Path


def split_files(root: str | Path, split: str) -> AvaSplitFiles:
    """Where the AVA files of ``split`` ('train' or 'val') live under ``root/annotations``."""
    folder = Path(root) / ANNOTATIONS
    return AvaSplitFiles(csv=folder / f"ava_{split}_v2.2.csv",
                         exclusions=folder / f"ava_{split}_excluded_timestamps_v2.2.csv",
                         proposals=folder / f"ava_dense_proposals_{split}.FAIR.recall_93.9.pkl")


def ava_label_map() -> tuple[dict[int, str], dict[int, str]]:
    """``({id: name}, {id: label_type})`` of the 60 synthetic classes (Chaotic World names where mapped)."""
    cw = load_cw_classes()
    names, types = {}, {}
    for position, ava_id in enumerate(AVA_EVALUATED_IDS):
        names[ava_id] = cw.get(position + 1, f"unused class {ava_id}")
        types[ava_id] = ava_label_type(ava_id)
    return names, types


def _usable_second(second: int, seconds: int) -> bool:
    mid = second * FPS + 1
    return WINDOW_START_SECONDS + second >= 902 and mid - HALF_WINDOW >= 1 and mid + HALF_WINDOW <= seconds * FPS


def _proposals_for(rows: list[AvaRow], rng: np.random.Generator) -> list[Proposal]:
    boxes = list(dict.fromkeys(row.box for row in rows))
    proposals = []
    for x1, y1, x2, y2 in boxes:
        w, h = x2 - x1, y2 - y1
        jitter = rng.uniform(-0.03, 0.03, size=4) * np.array([w, h, w, h])
        box = np.clip(np.array([x1, y1, x2, y2]) + jitter, 0.0, 1.0)
        proposals.append(Proposal(box=tuple(float(v) for v in box), score=float(rng.uniform(0.8, 1.0))))
    cx, cy = rng.uniform(0.2, 0.8, size=2)
    spurious = (float(cx - 0.1), float(cy - 0.15), float(cx + 0.1), float(cy + 0.15))
    proposals.append(Proposal(box=spurious, score=float(rng.uniform(0.1, 0.6))))
    return proposals


def write_ava_annotations(root: str | Path, seconds: int, seed: int = 0) -> dict[str, int]:
    """Write the AVA-layout files from the Chaotic World files of a synthetic dataset at 30 fps.

    Args:
        root: the dataset root (``AR_ava_format/`` written by ``datasets.synthetic.generate_dataset``).
        seconds: the videos' length.
        seed: seed of the proposal jitter and scores.

    Returns:
        Rows written per split.
    """
    root = Path(root)
    cw_folder = root / "AR_ava_format"
    rng = np.random.default_rng(seed)
    (root / ANNOTATIONS).mkdir(parents=True, exist_ok=True)
    names, types = ava_label_map()
    write_label_map(root / ANNOTATIONS / LABELMAP_NAME, names, types)
    counts = {}
    for split, stem in SPLITS.items():
        files = split_files(root, AVA_SPLITS[split])
        rows: list[AvaRow] = []
        for row in read_official_csv(cw_folder / f"chaos_{stem}_1fps.csv", fps=FPS):
            second = int(row.time)
            if not _usable_second(second, seconds):
                continue
            time = WINDOW_START_SECONDS + second
            rows.append(AvaRow(row.video, time, row.box, AVA_EVALUATED_IDS[row.label], row.person_id))
            if row.person_id % 3 == 0:  # duplicates of this row are dropped below
                rows.append(AvaRow(row.video, time, row.box, UNEVALUATED_ID, row.person_id))
        rows = list(dict.fromkeys(rows))
        write_ava_csv(files.csv, rows)
        # Chaotic World names excluded keyframes by frame number; AVA's excluded timestamps are seconds.
        cw_excluded = {(video, frame_to_second(frame, FPS)) for video, frame in
                       read_exclusions(cw_folder / f"chaos_{stem}_exclude.csv")}
        excluded = {(video, WINDOW_START_SECONDS + second) for video, second in cw_excluded
                    if second is not None and _usable_second(second, seconds)}
        write_exclusions(files.exclusions, sorted(excluded))
        keyframes: dict[tuple[str, int], list[AvaRow]] = {}
        for row in rows:
            keyframes.setdefault((row.video, row.time), []).append(row)
        write_ava_proposals(files.proposals, {key: _proposals_for(value, rng) for key, value in keyframes.items()})
        counts[split] = len(rows)
    return counts
