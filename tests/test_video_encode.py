"""The one mp4 encoder (synthetic clips and the video demo): sizes, channel order, atomic failure."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.video_encode import encode_mp4


def _decode(path: Path) -> list[np.ndarray]:
    capture = cv2.VideoCapture(str(path))
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    capture.release()
    return frames


@pytest.mark.parametrize("pixel_format,red_channel", [("rgb24", 0), ("bgr24", 2)])
def test_channel_order_follows_the_pixel_format(tmp_path: Path, pixel_format: str, red_channel: int) -> None:
    frame = np.zeros((36, 64, 3), dtype=np.uint8)
    frame[..., red_channel] = 220
    path = tmp_path / "red.mp4"
    assert encode_mp4([frame] * 5, (64, 36), path, fps=25, pixel_format=pixel_format, threads=1) == 5
    decoded = _decode(path)
    assert len(decoded) == 5 and decoded[0].shape == (36, 64, 3)
    blue, green, red = (float(decoded[2][..., c].mean()) for c in range(3))  # OpenCV decodes to BGR
    assert red > 180 and blue < 40 and green < 40


def test_odd_sizes_are_padded_to_even(tmp_path: Path) -> None:
    frames = [np.full((35, 63, 3), 128, dtype=np.uint8) for _ in range(3)]
    path = tmp_path / "odd.mp4"
    assert encode_mp4(frames, (63, 35), path, fps=25, faststart=True) == 3
    decoded = _decode(path)
    assert len(decoded) == 3 and decoded[0].shape == (36, 64, 3)


def test_failures_leave_no_file_behind(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError, match="no frame to encode"):
        encode_mp4([], (64, 36), tmp_path / "empty.mp4", fps=25)
    with pytest.raises(RuntimeError, match=r"ffmpeg failed \(exit [1-9]\d*\) writing .*bad.mp4"):
        encode_mp4([np.zeros((36, 64, 3), dtype=np.uint8)], (64, 36), tmp_path / "bad.mp4", fps=25,
                   pixel_format="no_such_format")
    assert list(tmp_path.iterdir()) == []
