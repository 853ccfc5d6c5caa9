"""Tests of detect.convert: official csv + frames -> ultralytics dataset (distinct boxes, exact coordinates)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml

from detect.convert import convert_to_yolo, image_size, main, yolo_label_line
from formats.official_csv import read_official_csv

DATA = Path(__file__).resolve().parent / "data" / "detect"
TRAIN_CSV, VAL_CSV = DATA / "tiny_train.csv", DATA / "tiny_val.csv"


def render_frames(csv_path: Path, frames_root: Path, size: tuple[int, int] = (320, 180), seed: int = 0) -> None:
    """Write ``frames/<vid>/<vid>_%06d.png`` for every keyframe of ``csv_path``: noise plus one filled
    rectangle (a 'person') per box, so a detector has something to learn."""
    rng = np.random.default_rng(seed)
    width, height = size
    boxes: dict[tuple[str, int], set] = {}
    for row in read_official_csv(csv_path):
        boxes.setdefault((row.video, row.keyframe), set()).add(row.box)
    for (video, keyframe), frame_boxes in sorted(boxes.items()):
        image = rng.integers(90, 140, size=(height, width, 3), dtype=np.uint8)
        for x1, y1, x2, y2 in sorted(frame_boxes):
            cv2.rectangle(image, (round(x1 * width), round(y1 * height)), (round(x2 * width) - 1,
                          round(y2 * height) - 1), (20, 40, 220), thickness=-1)
        folder = frames_root / video
        folder.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(folder / f"{video}_{keyframe:06d}.png"), image)


@pytest.fixture()
def frames(tmp_path: Path) -> Path:
    root = tmp_path / "frames"
    render_frames(TRAIN_CSV, root)
    render_frames(VAL_CSV, root)
    return root


def test_label_line_is_exact_for_a_hand_made_box() -> None:
    # x1 0.1, y1 0.2, x2 0.3, y2 0.9 -> centre (0.2, 0.55), size (0.2, 0.7).
    assert yolo_label_line((0.1, 0.2, 0.3, 0.9)) == "0 0.200000 0.550000 0.200000 0.700000"


def test_conversion_writes_one_line_per_distinct_person(frames: Path, tmp_path: Path) -> None:
    out = tmp_path / "yolo"
    counts = convert_to_yolo(TRAIN_CSV, VAL_CSV, frames, out)
    assert counts["train"] == {"rows": 16, "duplicates": 4, "images": 8, "boxes": 12}
    assert counts["val"] == {"rows": 6, "duplicates": 3, "images": 3, "boxes": 3}
    lines = (out / "labels" / "train" / "vidT1_000025.txt").read_text().splitlines()
    # Person 1 (two labels, two rows) once; person 2 once.
    assert lines == ["0 0.200000 0.550000 0.200000 0.700000", "0 0.650000 0.600000 0.200000 0.700000"]
    for label_file in (out / "labels").rglob("*.txt"):
        content = label_file.read_text().splitlines()
        assert len(content) == len(set(content)), f"duplicate lines in {label_file}"
    images = sorted(p.name for p in (out / "images" / "train").iterdir())
    assert len(images) == 8 and images[0] == "vidT1_000025.png"
    assert image_size(out / "images" / "val" / "vidV1_000050.png") == (320, 180)
    data = yaml.safe_load((out / "data.yaml").read_text())
    assert data == {"path": str(out.resolve()), "train": "images/train", "val": "images/val", "names": {0: "person"}}


def test_conversion_resizes_frames_of_another_size(tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    render_frames(TRAIN_CSV, frames, size=(640, 360))
    render_frames(VAL_CSV, frames, size=(640, 360))
    out = tmp_path / "yolo"
    convert_to_yolo(TRAIN_CSV, VAL_CSV, frames, out)
    assert image_size(out / "images" / "train" / "vidT2_000100.png") == (320, 180)
    # Labels are normalised: unchanged by the resize.
    assert (out / "labels" / "train" / "vidT2_000025.txt").read_text() == "0 0.400000 0.450000 0.200000 0.700000\n"


def test_missing_frame_is_named_before_anything_is_written(frames: Path, tmp_path: Path) -> None:
    (frames / "vidV1" / "vidV1_000075.png").unlink()
    out = tmp_path / "yolo"
    with pytest.raises(FileNotFoundError, match="vidV1_000075.png"):
        convert_to_yolo(TRAIN_CSV, VAL_CSV, frames, out)
    assert not (out / "images" / "train").exists()


def test_existing_split_needs_overwrite(frames: Path, tmp_path: Path) -> None:
    out = tmp_path / "yolo"
    convert_to_yolo(TRAIN_CSV, VAL_CSV, frames, out)
    with pytest.raises(FileExistsError, match="overwrite"):
        convert_to_yolo(TRAIN_CSV, VAL_CSV, frames, out)
    counts = convert_to_yolo(TRAIN_CSV, VAL_CSV, frames, out, drop_videos=["vidT2"], overwrite=True)
    assert counts["train"]["images"] == 4
    assert len(list((out / "labels" / "train").iterdir())) == 4


def test_cli_converts_and_summarises(frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "yolo"
    assert main(["--train-csv", str(TRAIN_CSV), "--val-csv", str(VAL_CSV), "--frames-root", str(frames),
                 "--out", str(out), "--drop-video", "vidT1"]) == 0
    printed = capsys.readouterr().out
    assert "train: 4 images, 4 boxes" in printed and "val: 3 images, 3 boxes" in printed
    assert (out / "data.yaml").is_file()


def test_prepare_ultralytics_leaves_pil_open_untouched(tmp_path: Path) -> None:
    """A corrupt image must raise PIL's own error after ultralytics is imported (no pi_heif detour)."""
    from PIL import Image, UnidentifiedImageError

    from detect.offline import prepare_ultralytics

    prepare_ultralytics()
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(UnidentifiedImageError):
        Image.open(bad)
