"""Official Chaotic World csv + extracted frames -> an ultralytics (YOLO txt) person-detection dataset."""
from __future__ import annotations

import argparse
import logging
import os
import shutil
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from common.atomic import write_bytes_atomic, write_text_atomic
from common.cli import run_main
from formats.official_csv import OfficialRow, read_official_csv

LOGGER = logging.getLogger(__name__)

# Chaotic World frames are extracted at this size (DATA.md §3); the original trained its YOLO on it.
FRAME_SIZE = (320, 180)
PERSON_CLASS = 0
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass
class _Keyframe:
    """One image of the dataset: its source frame and its distinct person boxes."""

    video: str
    keyframe: int
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    persons: set[tuple[int, tuple[float, float, float, float]]] = field(default_factory=set)

    @property
    def stem(self) -> str:
        return f"{self.video}_{self.keyframe:06d}"


def group_keyframes(rows: Iterable[OfficialRow]) -> tuple[list[_Keyframe], int]:
    """Distinct person boxes per keyframe image, in csv order.

    The official csv repeats a person's box once per action label; such rows (same person id and
    same box at the same keyframe) give one box (docs/numerics.md quirk 27).

    Returns:
        ``(keyframes, duplicates)``: the keyframes in first-appearance order and the number of
        repeated rows dropped.
    """
    keyframes: dict[tuple[str, int], _Keyframe] = {}
    duplicates = 0
    for row in rows:
        item = keyframes.setdefault((row.video, row.keyframe), _Keyframe(row.video, row.keyframe))
        person = (row.person_id, row.box)
        if person in item.persons:
            duplicates += 1
            continue
        item.persons.add(person)
        item.boxes.append(row.box)
    return list(keyframes.values()), duplicates


def yolo_label_line(box: Sequence[float], class_id: int = PERSON_CLASS) -> str:
    """``'class cx cy w h'`` (normalised, 6 decimals like the original) for an (x1, y1, x2, y2) box."""
    x1, y1, x2, y2 = (float(v) for v in box)
    width, height = x2 - x1, y2 - y1
    return f"{class_id} {x1 + width / 2:.6f} {y1 + height / 2:.6f} {width:.6f} {height:.6f}"


def image_size(path: Path) -> tuple[int, int]:
    """``(width, height)`` of an image; PNG headers are read directly (no decoding)."""
    with path.open("rb") as handle:
        head = handle.read(24)
    if head[:8] == _PNG_SIGNATURE and head[12:16] == b"IHDR":
        width, height = struct.unpack(">II", head[16:24])
        return int(width), int(height)
    import cv2

    image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if image is None:
        raise ValueError(f"cannot read image {path}")
    return int(image.shape[1]), int(image.shape[0])


def _place_image(source: Path, target: Path, frame_size: tuple[int, int] | None) -> None:
    """Hard-link (or copy) ``source`` to ``target``; resize first when it is not ``frame_size``."""
    if target.exists():
        target.unlink()
    if frame_size is not None and image_size(source) != tuple(frame_size):
        import cv2

        image = cv2.imread(str(source), cv2.IMREAD_COLOR)
        # Same interpolation as the original conversion (CW_csv2yolo.py: cv2.INTER_LINEAR to 320x180).
        resized = cv2.resize(image, tuple(frame_size), interpolation=cv2.INTER_LINEAR)
        ok, encoded = cv2.imencode(target.suffix or ".png", resized)
        if not ok:
            raise ValueError(f"cannot encode {target}")
        write_bytes_atomic(target, encoded.tobytes())
        return
    try:
        os.link(source, target)
    except OSError:
        # Other filesystem, or links not allowed: a plain copy is equivalent for ultralytics.
        shutil.copyfile(source, target)


def _prepare_split_dirs(out_dir: Path, split: str, overwrite: bool) -> tuple[Path, Path]:
    images, labels = out_dir / "images" / split, out_dir / "labels" / split
    for folder in (images, labels):
        if folder.is_dir() and any(folder.iterdir()):
            if not overwrite:
                raise FileExistsError(f"{folder} is not empty; pass overwrite=True (--overwrite) to rebuild it")
            shutil.rmtree(folder)
        folder.mkdir(parents=True, exist_ok=True)
    # ultralytics caches the parsed labels beside the folder; a stale cache would hide the new labels.
    (out_dir / "labels" / f"{split}.cache").unlink(missing_ok=True)
    return images, labels


def _check_frames(keyframes: list[_Keyframe], frames_root: Path, csv_path: Path) -> None:
    missing = [frames_root / k.video / f"{k.stem}.png" for k in keyframes
               if not (frames_root / k.video / f"{k.stem}.png").is_file()]
    if missing:
        raise FileNotFoundError(f"{len(missing)} keyframe frame(s) listed in {csv_path} are missing, e.g. "
                                f"{missing[0]} (extract the frames first: python -m tools.extract_frames)")


@dataclass
class _Split:
    """A split read and checked, ready to write."""

    name: str
    rows: int
    duplicates: int
    keyframes: list[_Keyframe]


def read_split(csv_path: str | Path, frames_root: str | Path, name: str, drop_videos: Iterable[str] = ()) -> _Split:
    """Read one official csv, group its distinct person boxes and check that every keyframe frame exists."""
    csv_path, frames_root = Path(csv_path), Path(frames_root)
    dropped = set(drop_videos)
    rows = [row for row in read_official_csv(csv_path) if row.video not in dropped]
    keyframes, duplicates = group_keyframes(rows)
    _check_frames(keyframes, frames_root, csv_path)
    return _Split(name, len(rows), duplicates, keyframes)


def write_split(split: _Split, frames_root: str | Path, out_dir: Path, frame_size: tuple[int, int] | None,
                overwrite: bool) -> dict:
    """Write ``images/<split>`` and ``labels/<split>``; return counts (rows, duplicates, images, boxes)."""
    frames_root = Path(frames_root)
    images, labels = _prepare_split_dirs(out_dir, split.name, overwrite)
    for item in split.keyframes:
        _place_image(frames_root / item.video / f"{item.stem}.png", images / f"{item.stem}.png", frame_size)
        write_text_atomic(labels / f"{item.stem}.txt", "".join(yolo_label_line(b) + "\n" for b in item.boxes))
    counts = {"rows": split.rows, "duplicates": split.duplicates, "images": len(split.keyframes),
              "boxes": sum(len(item.boxes) for item in split.keyframes)}
    LOGGER.info("%s: %d images, %d boxes from %d rows (%d repeated rows dropped)", split.name, counts["images"],
                counts["boxes"], counts["rows"], split.duplicates)
    return counts


def convert_to_yolo(train_csv: str | Path, val_csv: str | Path, frames_root: str | Path, out_dir: str | Path,
                    drop_videos: Iterable[str] = (), frame_size: tuple[int, int] | None = FRAME_SIZE,
                    overwrite: bool = False) -> dict:
    """Build an ultralytics dataset from the official train and val csv files.

    Layout: ``images/{train,val}/<vid>_%06d.png`` (the keyframe frame, hard-linked or copied, resized
    to ``frame_size`` only when it differs), ``labels/{train,val}/<vid>_%06d.txt`` with one
    ``0 cx cy w h`` line per distinct person box, and ``data.yaml`` (absolute ``path``, ``train``,
    ``val``, ``names: {0: person}``).

    Args:
        train_csv: official training csv (``chaos_train_1fps.csv``).
        val_csv: official validation csv (``chaos_test_1fps.csv``).
        frames_root: ``frames/`` folder holding ``<vid>/<vid>_%06d.png``.
        out_dir: dataset folder to write (must be writable: ultralytics caches labels there).
        drop_videos: videos left out of both splits (the original trained without XGXJVBCQ).
        frame_size: ``(width, height)`` of the dataset images; None keeps the frames as they are.
        overwrite: replace existing ``images/<split>`` and ``labels/<split>`` folders.

    Returns:
        ``{'train': counts, 'val': counts, 'data_yaml': str}`` with counts as in ``write_split``.

    Raises:
        FileNotFoundError: a csv or a keyframe frame is missing (checked before anything is written).
        FileExistsError: a split folder is not empty and ``overwrite`` is False.
        FormatError: a malformed csv row (file and line named).
    """
    out_dir = Path(out_dir).resolve()
    drop_videos = set(drop_videos)
    # Both splits are read and checked before anything is written.
    splits = [read_split(csv, frames_root, name, drop_videos) for name, csv in (("train", train_csv), ("val", val_csv))]
    counts: dict = {split.name: write_split(split, frames_root, out_dir, frame_size, overwrite) for split in splits}
    data = {"path": str(out_dir), "train": "images/train", "val": "images/val", "names": {PERSON_CLASS: "person"}}
    data_yaml = out_dir / "data.yaml"
    write_text_atomic(data_yaml, yaml.safe_dump(data, sort_keys=False))
    counts["data_yaml"] = str(data_yaml)
    return counts


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m detect.convert",
                                     description="Official Chaotic World csv + frames -> ultralytics dataset.")
    parser.add_argument("--train-csv", required=True, help="e.g. AR_ava_format/chaos_train_1fps.csv")
    parser.add_argument("--val-csv", required=True, help="e.g. AR_ava_format/chaos_test_1fps.csv")
    parser.add_argument("--frames-root", required=True, help="frames/ folder (<vid>/<vid>_%%06d.png)")
    parser.add_argument("--out", required=True, help="dataset folder to write (data.yaml inside)")
    parser.add_argument("--drop-video", action="append", default=[], metavar="VIDEO",
                        help="leave out this video (repeatable), e.g. XGXJVBCQ")
    parser.add_argument("--keep-size", action="store_true", help="do not resize frames to 320x180")
    parser.add_argument("--overwrite", action="store_true", help="rebuild existing split folders")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints a summary line per split."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    counts = convert_to_yolo(args.train_csv, args.val_csv, args.frames_root, args.out, args.drop_video,
                             None if args.keep_size else FRAME_SIZE, args.overwrite)
    for split in ("train", "val"):
        c = counts[split]
        print(f"{split}: {c['images']} images, {c['boxes']} boxes from {c['rows']} rows "
              f"({c['duplicates']} repeated person rows dropped)")
    print(f"dataset: {counts['data_yaml']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
