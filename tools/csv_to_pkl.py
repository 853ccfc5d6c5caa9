"""Official Chaotic World csv -> annotation pkl: one element per row as the original did, or merged per keyframe."""
from __future__ import annotations

import argparse
import logging
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

from common.cli import run_main
from formats.annotation_pkl import classes_from_label_map, save_annotation_pkl
from formats.official_csv import FRAME_RATE, OfficialRow, read_official_csv
from formats.pbtxt import read_label_map

LOGGER = logging.getLogger(__name__)

# How many conflicting keyframes or persons a warning lists before it only gives the count.
_WARN_EXAMPLES = 3

_KeyframeKey = tuple[str, int]
_PersonKey = tuple[int, tuple[float, float, float, float]]


def _new_element(row: OfficialRow) -> dict:
    """The keyframe fields of an element (schema of DATA.md §3), with an empty ``labels`` list."""
    return {
        "video": row.video,
        "time": int(row.time),
        "start_frame": row.start_frame,
        "n_frames": row.n_frames,
        "mid_frame": row.keyframe,
        "format_str": f"{row.video}_%06d.png",
        "frame_rate": FRAME_RATE,
        "labels": [],
    }


def _new_entry(row: OfficialRow) -> dict:
    return {"bounding_box": [float(v) for v in row.box], "label": [row.label], "person_id": [row.person_id]}


def rows_to_elements_per_row(rows: Iterable[OfficialRow]) -> list[dict]:
    """The original's layout (docs/numerics.md quirk 18): one single-box, single-label element per row, file order."""
    elements = []
    for row in rows:
        element = _new_element(row)
        element["labels"].append(_new_entry(row))
        elements.append(element)
    return elements


def rows_to_elements_merged(rows: Iterable[OfficialRow]) -> list[dict]:
    """One element per keyframe ``(video, int(time))``, one multi-label entry per person and box.

    Rows of the same person id with the same box at one keyframe become one entry whose ``label``
    is the sorted list of their distinct labels. The same person id with a different box stays a
    separate entry (logged as a warning), because merging would invent a box. Elements are ordered by
    the video's first appearance in the csv, then by time; entries by first appearance.

    Args:
        rows: official csv rows in file order.

    Returns:
        The elements (plain dicts, schema of DATA.md §3).
    """
    video_rank: dict[str, int] = {}
    elements: dict[_KeyframeKey, dict] = {}
    persons: dict[_KeyframeKey, dict[_PersonKey, dict]] = {}
    window_conflicts: dict[_KeyframeKey, int] = {}
    box_conflicts: list[str] = []
    for row in rows:
        key = (row.video, int(row.time))
        video_rank.setdefault(row.video, len(video_rank))
        element = elements.get(key)
        if element is None:
            element = elements[key] = _new_element(row)
            persons[key] = {}
        elif (element["start_frame"], element["n_frames"], element["mid_frame"]) != (
                row.start_frame, row.n_frames, row.keyframe):
            window_conflicts[key] = window_conflicts.get(key, 0) + 1
        person_key = (row.person_id, row.box)
        entry = persons[key].get(person_key)
        if entry is None:
            if any(pid == row.person_id for pid, _ in persons[key]):
                box_conflicts.append(f"{row.video} t={key[1]} person {row.person_id}")
            entry = persons[key][person_key] = _new_entry(row)
            element["labels"].append(entry)
        elif row.label not in entry["label"]:
            entry["label"].append(row.label)
    for entry_map in persons.values():
        for entry in entry_map.values():
            entry["label"].sort()
    if window_conflicts:
        LOGGER.warning("%d keyframe(s) have rows whose clip window differs from their first row's (%d row(s) in "
                       "all); the first row's window is kept: %s", len(window_conflicts),
                       sum(window_conflicts.values()), _examples(f"{video} t={time}" for video, time in window_conflicts))
    _warn_conflicts(box_conflicts, "person id(s) with several boxes at one keyframe; kept as separate entries")
    order = sorted(elements, key=lambda item: (video_rank[item[0]], item[1]))
    return [elements[key] for key in order]


def _examples(items: Iterable[str]) -> str:
    items = list(items)
    return ", ".join(items[:_WARN_EXAMPLES]) + (", ..." if len(items) > _WARN_EXAMPLES else "")


def _warn_conflicts(examples: list[str], what: str) -> None:
    if examples:
        LOGGER.warning("%d %s: %s", len(examples), what, _examples(examples))


def rows_to_elements(rows: Sequence[OfficialRow], merge: bool = False) -> list[dict]:
    """Elements of an annotation pkl from official csv rows: one per row (default, the original) or merged."""
    return rows_to_elements_merged(rows) if merge else rows_to_elements_per_row(rows)


def drop_rows_of_videos(rows: list[OfficialRow], drop_videos: Iterable[str]) -> list[OfficialRow]:
    """Rows whose video is not in ``drop_videos`` (e.g. XGXJVBCQ, absent from the public release)."""
    dropped = set(drop_videos)
    if not dropped:
        return rows
    kept = [row for row in rows if row.video not in dropped]
    present = {row.video for row in rows} & dropped
    for video in sorted(dropped - present):
        LOGGER.info("--drop-video %s: no row of this video in the csv", video)
    LOGGER.info("dropped %d row(s) of video(s) %s", len(rows) - len(kept), sorted(present))
    return kept


def videos_with_frames(frames_root: str | Path) -> set[str]:
    """Names of the video frame folders under ``frames_root`` (one folder per video)."""
    root = Path(frames_root)
    if not root.is_dir():
        raise FileNotFoundError(f"frames folder not found: {root}")
    return {child.name for child in root.iterdir() if child.is_dir()}


def convert_csv_to_pkl(
    csv_path: str | Path,
    label_map_path: str | Path,
    out_pkl: str | Path,
    merge: bool = False,
    drop_videos: Iterable[str] = (),
    known_videos: set[str] | None = None,
) -> dict:
    """Convert an official csv into an annotation pkl, written atomically.

    Args:
        csv_path: official csv (13 columns, headerless as published).
        label_map_path: ``list_action.pbtxt``; gives the pkl's ``classes`` and the label range.
        out_pkl: the pkl to write.
        merge: False (default): the original's layout, one single-box, single-label element per csv
            row (``tools/cw_pkl.py`` of the original, which wrote its released pkls); True: one
            element per keyframe with one multi-label entry per person (the opt-in improvement,
            DATA.md, "Per-row files and --merge").
        drop_videos: videos whose rows are left out (the original trained without XGXJVBCQ).
        known_videos: if given, a row of any other video (and not dropped) is a FormatError.

    Returns:
        Counts: ``rows`` (read), ``dropped_rows``, ``videos``, ``keyframes`` (distinct (video, time)),
        ``elements`` and ``boxes`` (written), ``persons`` (distinct person boxes per keyframe) and
        ``label_histogram`` ({label 0..49: entries carrying it in the written file}).

    Raises:
        FileNotFoundError: the csv or the label map is missing.
        FormatError: a malformed csv row (file and line named) or label map.
    """
    drop_videos = set(drop_videos)
    classes = classes_from_label_map(read_label_map(label_map_path))
    allowed = None if known_videos is None else set(known_videos) | drop_videos
    rows = read_official_csv(csv_path, num_classes=len(classes), known_videos=allowed)
    kept = drop_rows_of_videos(rows, drop_videos)
    elements = rows_to_elements(kept, merge=merge)
    save_annotation_pkl(out_pkl, elements, classes)
    histogram = Counter(label for element in elements for entry in element["labels"] for label in entry["label"])
    stats = {
        "rows": len(rows),
        "dropped_rows": len(rows) - len(kept),
        "videos": len({row.video for row in kept}),
        "keyframes": len({(row.video, int(row.time)) for row in kept}),
        "elements": len(elements),
        "boxes": sum(len(element["labels"]) for element in elements),
        "persons": len({(row.video, int(row.time), row.person_id, row.box) for row in kept}),
        "label_histogram": dict(sorted(histogram.items())),
    }
    LOGGER.info("wrote %s: %d elements from %d rows", out_pkl, stats["elements"], stats["rows"])
    return stats


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.csv_to_pkl",
        description="Convert an official Chaotic World csv into an annotation pkl: one element per csv row, "
                    "as the original's released pkls (default), or merged per keyframe with --merge.",
    )
    parser.add_argument("--csv", required=True, help="official csv, e.g. AR_ava_format/chaos_train_1fps.csv")
    parser.add_argument("--labelmap", required=True, help="label map, e.g. AR_ava_format/list_action.pbtxt")
    parser.add_argument("--out", required=True, help="annotation pkl to write")
    layout = parser.add_mutually_exclusive_group()
    layout.add_argument("--merge", action="store_true",
                        help="one element per keyframe, one multi-label entry per person (opt-in; changes "
                             "training targets, HR2O context and scoring, see DATA.md)")
    layout.add_argument("--per-row", action="store_true",
                        help="one element per csv row: the default, accepted so that older commands still work")
    parser.add_argument("--drop-video", action="append", default=[], metavar="VIDEO",
                        help="leave out the rows of this video (repeatable), e.g. XGXJVBCQ")
    parser.add_argument("--frames-root", default=None,
                        help="frames folder; a row whose video has no folder there is an error")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints a one-line summary. A bad input: one line, exit 2."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    known = None if args.frames_root is None else videos_with_frames(args.frames_root)
    stats = convert_csv_to_pkl(args.csv, args.labelmap, args.out, merge=args.merge,
                               drop_videos=args.drop_video, known_videos=known)
    print(f"{args.out}: {stats['elements']} elements, {stats['keyframes']} keyframes, {stats['boxes']} boxes, "
          f"{stats['persons']} persons, {stats['videos']} videos from {stats['rows']} rows "
          f"({stats['dropped_rows']} dropped), {len(stats['label_histogram'])} labels used, "
          f"{'merged per keyframe' if args.merge else 'one element per csv row'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
