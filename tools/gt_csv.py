"""Official csv (or annotation pkl) -> the evaluator's ground-truth csv, labels shifted to 1..50."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from formats.cli import run_main
from formats.eval_csv import GroundTruth, write_ground_truth_csv
from formats.official_csv import OfficialRow, read_official_csv
from formats.pbtxt import read_label_map

LOGGER = logging.getLogger(__name__)

# The evaluator and the model's output speak class ids 1..50; csv and pkl labels are 0..49.
LABEL_OFFSET = 1
# Person id written for a pkl entry without one (proposal pkls carry [0], but an empty list is legal).
NO_PERSON_ID = -1


def _ground_truth(video: list[str], time: list[int], boxes: list[Sequence[float]], class_id: list[int],
                  person_id: list[int]) -> GroundTruth:
    return GroundTruth(
        video=video,
        time=np.asarray(time, dtype=np.int64),
        boxes=np.asarray(boxes, dtype=np.float64).reshape(-1, 4),
        class_id=np.asarray(class_id, dtype=np.int64),
        person_id=np.asarray(person_id, dtype=np.int64),
    )


def rows_to_ground_truth(rows: Iterable[OfficialRow]) -> GroundTruth:
    """One ground-truth line per official row (duplicate rows kept as given), class id = label + 1.

    Args:
        rows: official csv rows in file order.

    Returns:
        GroundTruth with N = number of rows; ``time`` is ``int(row.time)`` (whole seconds).
    """
    rows = list(rows)
    return _ground_truth(
        video=[row.video for row in rows],
        time=[int(row.time) for row in rows],
        boxes=[row.box for row in rows],
        class_id=[row.label + LABEL_OFFSET for row in rows],
        person_id=[row.person_id for row in rows],
    )


def pkl_to_ground_truth(elements: Iterable[dict]) -> GroundTruth:
    """One ground-truth line per (element, box, label), in element then box then label order.

    Args:
        elements: annotation pkl elements (merged or one per row); ``label`` ids 0..49.

    Returns:
        GroundTruth with class ids ``label + 1`` and the entry's first person id
        (``NO_PERSON_ID`` when its list is empty).
    """
    video, time, boxes, class_id, person_id = [], [], [], [], []
    for element in elements:
        for entry in element["labels"]:
            pid = entry["person_id"][0] if entry["person_id"] else NO_PERSON_ID
            for label in entry["label"]:
                video.append(element["video"])
                time.append(int(element["time"]))
                boxes.append([float(v) for v in entry["bounding_box"]])
                class_id.append(int(label) + LABEL_OFFSET)
                person_id.append(int(pid))
    return _ground_truth(video, time, boxes, class_id, person_id)


def write_evaluator_ground_truth(
    csv_path: str | Path,
    out_csv: str | Path,
    drop_videos: Iterable[str] = (),
    label_map_path: str | Path | None = None,
) -> int:
    """Write the evaluator's ground truth (``chaos_test_t_+1.csv``) from an official csv, atomically.

    Output lines: ``video_id,%04d time,x1,y1,x2,y2,label+1,person_id``, no header, one per csv row.

    Args:
        csv_path: official csv.
        out_csv: ground-truth csv to write.
        drop_videos: videos whose rows are left out.
        label_map_path: optional label map; when given, labels must lie in its range (else 0..49).

    Returns:
        The number of lines written.

    Raises:
        FileNotFoundError: the csv (or label map) is missing.
        FormatError: a malformed csv row (file and line named).
    """
    num_classes = 50 if label_map_path is None else len(read_label_map(label_map_path))
    dropped = set(drop_videos)
    rows = [row for row in read_official_csv(csv_path, num_classes=num_classes) if row.video not in dropped]
    write_ground_truth_csv(out_csv, rows_to_ground_truth(rows))
    LOGGER.info("wrote %s: %d ground-truth lines", out_csv, len(rows))
    return len(rows)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.gt_csv",
        description="Official Chaotic World csv -> evaluator ground-truth csv (labels + 1, time %04d, no header).",
    )
    parser.add_argument("--csv", required=True, help="official csv, e.g. AR_ava_format/chaos_test_1fps.csv")
    parser.add_argument("--out", required=True,
                        help="ground-truth csv to write, e.g. AR_ava_format/chaos_test_t_+1.csv")
    parser.add_argument("--labelmap", default=None, help="label map giving the label range (default 50 classes)")
    parser.add_argument("--drop-video", action="append", default=[], metavar="VIDEO",
                        help="leave out the rows of this video (repeatable)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the number of lines written. A bad input: one line, exit 2."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    count = write_evaluator_ground_truth(args.csv, args.out, drop_videos=args.drop_video,
                                         label_map_path=args.labelmap)
    print(f"{args.out}: {count} ground-truth lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
