"""Synthetic Chaotic World generator: rendered H.264 clips plus csv, exclusions and label map as published.

The annotation files follow the published Chaotic World files (DATA.md, "What you start from"): headerless
13-column csvs whose keyframe at second t is frame ``25 t`` with the clip window in seconds in columns
11-12, exclusion files naming each excluded keyframe by frame number once per ground-truth row (the
excluded keyframes are annotated like any other), and a ``label { name label_id label_type }`` map.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path

import numpy as np
from tqdm import tqdm

from common.atomic import write_text_atomic
from common.cli import run_main
from datasets.synthetic_motion import person_labels
from datasets.synthetic_plan import PRESETS, DatasetPlan, keyframe_times, plan_dataset, resolve_config
from datasets.synthetic_render import VideoPlan, encode_video, frame_joints, person_box
from formats.official_csv import OfficialRow, window_seconds, write_official_csv, write_official_exclusions
from formats.pbtxt import write_label_map

LOGGER = logging.getLogger(__name__)

CLASSES_FILE = Path(__file__).with_name("cw_classes.txt")
MANIFEST_NAME = "synthetic_manifest.json"
# Bump when a change makes the same seed produce different data (invalidates cached demo data).
GENERATOR_VERSION = 2  # 2: the published layout (headerless csv, keyframe 25 t, exclusions in frames)
# Clip window of a keyframe: +-32 frames around it (CW annotates at 1 fps, clips of 64 frames).
HALF_WINDOW = 32
# A person whose box keeps less than this share of its area inside the frame is not annotated
# (annotators do not box a sliver at the border).
MIN_VISIBLE_FRACTION = 0.25
SPLITS = {"train": "train", "val": "test"}  # split -> file stem (chaos_<stem>_1fps.csv)
# Every class of the published list_action.pbtxt has this type.
LABEL_TYPE = "PERSON_MOVEMENT"


def load_cw_classes(path: str | Path = CLASSES_FILE) -> dict[int, str]:
    """The 50 Chaotic World classes ``{id (1..50): name}`` from the tab-separated list shipped here."""
    classes: dict[int, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            class_id, name = line.split("\t", 1)
            classes[int(class_id)] = name.strip()
    return classes


# ----------------------------------------------------------------------------------------------
# Annotation rows (official csv) from a plan.
# ----------------------------------------------------------------------------------------------


def visible_box(box: np.ndarray, width: int, height: int) -> tuple[float, float, float, float] | None:
    """Normalised box clipped to the frame, or None when too little of it is inside.

    Args:
        box: ``[x1, y1, x2, y2]`` in pixels.
        width, height: frame size in pixels.

    Returns:
        (x1, y1, x2, y2) in [0, 1], rounded to 4 decimals, or None.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if cx2 - cx1 < 4 or cy2 - cy1 < 4:
        return None
    if (cx2 - cx1) * (cy2 - cy1) < MIN_VISIBLE_FRACTION * (x2 - x1) * (y2 - y1):
        return None
    return (round(cx1 / width, 4), round(cy1 / height, 4), round(cx2 / width, 4), round(cy2 / height, 4))


def annotate_video(plan: VideoPlan) -> list[OfficialRow]:
    """Csv rows of one clip: one per (keyframe, visible person, label), labels 0-based.

    As in the published files, the keyframe at second ``t`` is frame number ``fps t`` (``time`` =
    frame / fps, 25 fps for Chaotic World); its box is the person's in that frame file, which shows frame index ``25 t - 1``
    (files are numbered from 1).

    Args:
        plan: the clip.

    Returns:
        Rows ordered by time, person id, label.
    """
    rows = []
    for t in keyframe_times(plan.n_frames // plan.fps):
        keyframe = t * plan.fps
        start, end = max(1, keyframe - HALF_WINDOW), min(plan.n_frames, keyframe + HALF_WINDOW)
        for spec in sorted(plan.persons, key=lambda person: person.person_id):
            box = visible_box(person_box(spec, frame_joints(plan, spec, keyframe - 1)), plan.width, plan.height)
            if box is None:
                continue
            for class_id in person_labels(spec, float(t)):
                rows.append(OfficialRow(video=plan.video_id, keyframe=keyframe, box=box, label=class_id - 1,
                                        person_id=spec.person_id, start_frame=start, end_frame=end,
                                        time=float(t), window_seconds=window_seconds(start, end, plan.fps)))
    return rows


def annotate_dataset(plan: DatasetPlan) -> dict[str, list[OfficialRow]]:
    """Rows of both splits, ``{'train': rows, 'val': rows}``."""
    return {split: [row for video in videos for row in annotate_video(video)] for split, videos in plan.videos.items()}


def excluded_rows(rows: list[OfficialRow], excluded: set[tuple[str, int]]) -> list[OfficialRow]:
    """The rows of the excluded keyframes ``(video, second)``: the exclusion file has one line per such row."""
    return [row for row in rows if (row.video, int(row.time)) in excluded]


def split_counts(rows: list[OfficialRow], videos: int, excluded: int, names: dict[int, str]) -> dict:
    """Counts of one split: videos, keyframes, excluded keyframes (annotated, listed in the exclusion
    file), persons (boxes), rows, label counts by class name."""
    labels = Counter(row.label + 1 for row in rows)
    return {
        "videos": videos,
        "keyframes": len({(row.video, row.time) for row in rows}),
        "excluded_keyframes": excluded,
        "persons": len({(row.video, row.time, row.person_id) for row in rows}),
        "multi_label_persons": sum(1 for n in Counter((r.video, r.time, r.person_id) for r in rows).values() if n > 1),
        "rows": len(rows),
        "label_counts": {names[class_id]: labels[class_id] for class_id in sorted(labels)},
    }


# ----------------------------------------------------------------------------------------------
# Writing: csv files, label map, videos (encode_video), manifest.
# ----------------------------------------------------------------------------------------------


def _remove_stale_videos(root: Path, keep: set[str]) -> None:
    """Delete clips listed by an earlier generation into ``root`` that the new plan does not contain."""
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        return
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8")).get("video_ids", [])
    except (json.JSONDecodeError, AttributeError):
        return
    for video_id in set(previous) - keep:
        (root / "videos" / f"{video_id}.mp4").unlink(missing_ok=True)


def write_annotations(plan: DatasetPlan, root: str | Path) -> dict[str, list[OfficialRow]]:
    """Write the csv files, exclusion files and label map of a plan under ``root/AR_ava_format``."""
    folder = Path(root) / "AR_ava_format"
    rows = annotate_dataset(plan)
    for split, stem in SPLITS.items():
        write_official_csv(folder / f"chaos_{stem}_1fps.csv", rows[split])
        write_official_exclusions(folder / f"chaos_{stem}_exclude.csv", excluded_rows(rows[split], plan.excluded[split]))
    classes = load_cw_classes()
    write_label_map(folder / "list_action.pbtxt", classes, {class_id: LABEL_TYPE for class_id in classes})
    return rows


def _encode_all(plan: DatasetPlan, root: Path, progress: bool) -> None:
    videos = [video for split in plan.videos.values() for video in split]
    workers = min(plan.config.workers, len(videos))
    # One x264 thread per clip when several clips encode at once: the cores are shared anyway.
    threads = 1 if workers > 1 else 0
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(videos), unit="video", desc="render+encode", disable=not progress) as bar:
        futures = [pool.submit(encode_video, video, root / "videos" / f"{video.video_id}.mp4", plan.config.crf,
                               threads) for video in videos]
        for future in futures:
            future.result()
            bar.update(1)


def generate_dataset(out_dir: str | Path, preset: str = "demo", seed: int = 0, progress: bool = True,
                     **overrides: int) -> dict:
    """Generate a synthetic Chaotic World dataset in the official layout.

    Writes ``videos/<vid>.mp4`` and ``AR_ava_format/`` (``chaos_{train,test}_1fps.csv``,
    ``chaos_{train,test}_exclude.csv``, ``list_action.pbtxt``), then ``synthetic_manifest.json``
    last, so a manifest means a complete dataset.

    Args:
        out_dir: dataset root.
        preset: ``'tiny'`` (unit tests) or ``'demo'``.
        seed: random seed; the same seed gives the same csv bytes and the same rendered frames.
        progress: show a tqdm bar over clips.
        **overrides: SyntheticConfig fields replacing the preset's (train_videos, val_videos, seconds, ...).

    Returns:
        Counts: ``videos``, ``keyframes``, ``persons``, ``rows`` (totals), ``label_counts``
        ({class name: rows}), ``splits`` (the same per split, plus excluded keyframes and
        multi-label persons), ``seconds`` (wall time of the generation), ``config`` and ``seed``.
    """
    started = time.perf_counter()
    config = resolve_config(preset, **overrides)
    root = Path(out_dir)
    plan = plan_dataset(config, seed)
    video_ids = [video.video_id for split in plan.videos.values() for video in split]
    _remove_stale_videos(root, set(video_ids))
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    rows = write_annotations(plan, root)
    _encode_all(plan, root, progress)
    names = load_cw_classes()
    splits = {split: split_counts(rows[split], len(plan.videos[split]),
                                  len({(row.video, row.time) for row in excluded_rows(rows[split], plan.excluded[split])}),
                                  names)
              for split in plan.videos}
    totals = Counter()
    for counts in splits.values():
        totals.update(counts["label_counts"])
    summary = {
        "preset": preset, "seed": seed, "config": asdict(config),
        **{key: sum(counts[key] for counts in splits.values()) for key in ("videos", "keyframes", "persons", "rows")},
        "label_counts": dict(sorted(totals.items(), key=lambda item: -item[1])),
        "splits": splits,
        "seconds": round(time.perf_counter() - started, 2),
    }
    manifest = {"generator_version": GENERATOR_VERSION, "video_ids": video_ids, **summary}
    write_text_atomic(root / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    LOGGER.info("generated %d videos, %d keyframes, %d person boxes under %s in %.1f s", summary["videos"],
                summary["keyframes"], summary["persons"], root, summary["seconds"])
    return summary


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a complete generated dataset under ``root``, or None."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datasets.synthetic",
                                     description="Generate a synthetic Chaotic World dataset (videos + official csv).")
    parser.add_argument("--out", required=True, help="dataset root to write")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="size preset (default: demo)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--train-videos", type=int, help="clips in the train split")
    parser.add_argument("--val-videos", type=int, help="clips in the validation split")
    parser.add_argument("--seconds", type=int, help="clip length in seconds")
    parser.add_argument("--width", type=int, help="frame width in pixels (default 640)")
    parser.add_argument("--height", type=int, help="frame height in pixels (default 360)")
    parser.add_argument("--crf", type=int, help="x264 quality (default 20)")
    parser.add_argument("--workers", type=int, help="clips encoded at once (default 2)")
    return parser


_OVERRIDES = ("train_videos", "val_videos", "seconds", "width", "height", "crf", "workers")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments; a size the preset cannot take is an argument error (exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        resolve_config(args.preset, **{key: getattr(args, key) for key in _OVERRIDES})
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: generate and print the counts."""
    return run_main(parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    overrides = {key: getattr(args, key) for key in _OVERRIDES}
    summary = generate_dataset(args.out, preset=args.preset, seed=args.seed, **overrides)
    print(f"{summary['videos']} videos, {summary['keyframes']} keyframes, {summary['persons']} person boxes, "
          f"{summary['rows']} csv rows in {summary['seconds']} s under {args.out}")
    for name, count in summary["label_counts"].items():
        print(f"  {count:6d}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
