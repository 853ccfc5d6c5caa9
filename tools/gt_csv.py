"""Official csv (or annotation pkl) -> the evaluator's ground-truth csv, labels shifted to 1..50; and
Chaotic World's exclusions (keyframe frame numbers) -> the evaluator's exclusions (seconds)."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from common.cli import run_main
from common.errors import FormatError
from evaluation.exclusions import check_exclusion_units, frame_to_second
from formats.eval_csv import GroundTruth, read_exclusion_lines, write_exclusions, write_ground_truth_csv
from formats.official_csv import FRAME_RATE, OfficialRow, read_official_csv
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


def seconds_exclusions_path(path: str | Path) -> Path:
    """Where the converted exclusions go by convention: ``chaos_test_exclude.csv`` -> ``chaos_test_exclude_seconds.csv``."""
    path = Path(path)
    return path.with_name(f"{path.stem}_seconds{path.suffix}")


def exclusions_in_seconds(exclusions_path: str | Path, rows: Sequence[OfficialRow]) -> set[tuple[str, int]]:
    """The keyframes of a Chaotic World exclusions file, named by second as the evaluator names them.

    The published ``chaos_*_exclude.csv`` list keyframes by frame number (column 1 of the official
    csv), one line per ground-truth row. A key that is a keyframe of ``rows`` takes that row's second
    (column 10); any other key must be a whole second at 25 fps (``frame / 25``).

    Args:
        exclusions_path: the exclusions file as downloaded.
        rows: the official csv rows the exclusions belong to.

    Returns:
        ``{(video, second)}``.

    Raises:
        FormatError: the file already reads as seconds (nothing to convert), or a key is neither a
            keyframe of the csv nor a whole second at 25 fps (file and line named).
    """
    lines = read_exclusion_lines(exclusions_path)
    second_of = {(row.video, row.keyframe): int(row.time) for row in rows}
    units = check_exclusion_units({(video, number) for _, video, number in lines},
                                  {(row.video, int(row.time)) for row in rows}, FRAME_RATE)
    if units.keyframes and units.as_seconds >= units.as_frames and units.as_seconds > 0:
        raise FormatError(exclusions_path, f"already in seconds: {units.as_seconds} of {units.keyframes} keyframes "
                                           f"match the csv's seconds and {units.as_frames} its frame numbers; "
                                           f"use it as it is")
    converted: set[tuple[str, int]] = set()
    outside = 0
    for line, video, number in lines:
        second = second_of.get((video, number))
        if second is None:
            second = frame_to_second(number, FRAME_RATE)
            if second is None:
                raise FormatError(exclusions_path, f"{video},{number:06d} is neither a keyframe of the csv nor a "
                                                   f"whole second at {FRAME_RATE} fps", line)
            outside += 1
        converted.add((video, second))
    if outside:
        LOGGER.warning("%s: %d exclusion line(s) name no keyframe of the csv; converted as frame / %d",
                       exclusions_path, outside, FRAME_RATE)
    return converted


def write_evaluator_ground_truth(
    csv_path: str | Path,
    out_csv: str | Path,
    drop_videos: Iterable[str] = (),
    label_map_path: str | Path | None = None,
    exclusions: tuple[str | Path, str | Path] | None = None,
) -> dict[str, int]:
    """Write the evaluator's ground truth (``chaos_test_t_+1.csv``) from an official csv, atomically.

    Output lines: ``video_id,%04d time,x1,y1,x2,y2,label+1,person_id``, no header, one per csv row.

    Args:
        csv_path: official csv.
        out_csv: ground-truth csv to write.
        drop_videos: videos whose rows are left out.
        label_map_path: optional label map; when given, labels must lie in its range (else 0..49).
        exclusions: optional ``(exclusions as downloaded, exclusions to write)``: the keyframes of
            the first (frame numbers) written to the second in seconds (``exclusions_in_seconds``).

    Returns:
        ``{"rows": lines written}``, plus ``"excluded_keyframes"`` and ``"excluded_rows"`` (ground-truth
        rows in them) when converting exclusions.

    Raises:
        FileNotFoundError: the csv (or label map, or exclusions) is missing.
        FormatError: a malformed csv row (file and line named), or exclusions that cannot be converted.
    """
    num_classes = 50 if label_map_path is None else len(read_label_map(label_map_path))
    dropped = set(drop_videos)
    rows = [row for row in read_official_csv(csv_path, num_classes=num_classes) if row.video not in dropped]
    counts = {"rows": len(rows)}
    converted = None
    if exclusions is not None:
        converted = exclusions_in_seconds(exclusions[0], rows)
        counts["excluded_keyframes"] = len(converted)
        counts["excluded_rows"] = sum(1 for row in rows if (row.video, int(row.time)) in converted)
    write_ground_truth_csv(out_csv, rows_to_ground_truth(rows))
    LOGGER.info("wrote %s: %d ground-truth lines", out_csv, len(rows))
    if converted is not None:
        write_exclusions(exclusions[1], converted)
        LOGGER.info("wrote %s: %d keyframes in seconds", exclusions[1], len(converted))
    return counts


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
    parser.add_argument("--exclusions", default=None, metavar="EXCLUDE.csv",
                        help="Chaotic World exclusions as downloaded (keyframe frame numbers, e.g. "
                             "AR_ava_format/chaos_test_exclude.csv); needs --exclusions-out")
    parser.add_argument("--exclusions-out", default=None, metavar="OUT.csv",
                        help="write those keyframes in seconds, as the evaluator reads them "
                             "(e.g. AR_ava_format/chaos_test_exclude_seconds.csv)")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the number of lines written. A bad input: one line, exit 2."""
    return run_main(_parse, _run, argv)


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = build_parser()
    args = parser.parse_args(argv)
    if (args.exclusions is None) != (args.exclusions_out is None):
        parser.error("--exclusions and --exclusions-out go together")
    return args


def _run(args: argparse.Namespace) -> int:
    exclusions = None if args.exclusions is None else (args.exclusions, args.exclusions_out)
    counts = write_evaluator_ground_truth(args.csv, args.out, drop_videos=args.drop_video,
                                          label_map_path=args.labelmap, exclusions=exclusions)
    print(f"{args.out}: {counts['rows']} ground-truth lines")
    if exclusions is not None:
        print(f"{args.exclusions_out}: {counts['excluded_keyframes']} excluded keyframes in seconds "
              f"({counts['excluded_rows']} ground-truth rows in them), from the frame numbers of {args.exclusions}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
