"""The one ffmpeg module: the mp4 encoder (sizes, channel order, atomic failure), the decoder, a missing binary."""
from __future__ import annotations

import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets import ffmpeg_io
from datasets.ffmpeg_io import FFmpegError, decode_frames, encode_mp4, video_rate, video_size


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


def test_decoding_gives_the_size_the_frames_and_the_fps_resampling(tmp_path: Path) -> None:
    ramp = np.linspace(0, 255, 64, dtype=np.uint8)
    frames = [np.stack([np.tile(ramp, (36, 1))] * 3, axis=-1) for _ in range(10)]
    frames[0][..., 2] = 200  # red in BGR order
    path = tmp_path / "clip.mp4"
    encode_mp4(frames, (64, 36), path, fps=25, pixel_format="bgr24", threads=1)
    assert video_size(path) == (64, 36)
    size, decoded = decode_frames(path)
    decoded = list(decoded)
    assert size == (64, 36) and len(decoded) == 10 and decoded[0].shape == (36, 64, 3)
    assert decoded[0][..., 2].mean() > 180 and np.abs(decoded[5].astype(int) - frames[5]).mean() < 8
    rgb = list(decode_frames(path, pixel_format="rgb24")[1])
    assert all(np.array_equal(a, b[..., ::-1]) for a, b in zip(rgb, decoded))
    assert len(list(decode_frames(path, fps=5)[1])) == 2  # 0.4 s at 5 fps


def test_decoding_stops_when_closed_early_and_names_an_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    encode_mp4([np.zeros((36, 64, 3), dtype=np.uint8)] * 50, (64, 36), path, fps=25, threads=1)
    _, frames = decode_frames(path)
    assert next(frames).shape == (36, 64, 3)
    frames.close()  # kills ffmpeg; no error, no process left waiting on a full pipe
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    with pytest.raises(FFmpegError, match=r"ffmpeg failed \(exit [1-9]\d*\) reading .*broken\.mp4") as error:
        decode_frames(bad)
    assert error.value.path == str(bad) and error.value.stderr_tail


def test_a_missing_ffmpeg_binary_is_named(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(ffmpeg_io.shutil, "which", lambda name: None)
    monkeypatch.setitem(sys.modules, "imageio_ffmpeg", None)  # the import fails
    with pytest.raises(FileNotFoundError, match=r"no ffmpeg binary: none on PATH, and the imageio-ffmpeg package"):
        encode_mp4([np.zeros((36, 64, 3), dtype=np.uint8)], (64, 36), tmp_path / "clip.mp4", fps=25)
    assert list(tmp_path.iterdir()) == []


def test_scaled_decoding_and_the_rate_of_a_video(tmp_path: Path) -> None:
    path = tmp_path / "clip.mp4"
    encode_mp4([np.full((36, 64, 3), 90, dtype=np.uint8)] * 14, (64, 36), path, fps=28, threads=1)
    rate, seconds = video_rate(path)
    assert rate == pytest.approx(28.0) and seconds == pytest.approx(0.5, abs=0.05)
    size, frames = decode_frames(path, fps=25, size=(32, 18))
    frames = list(frames)
    assert size == (32, 18) and frames[0].shape == (18, 32, 3) and len(frames) in (12, 13)
    with pytest.raises(FFmpegError, match=r"reading .*missing\.mp4:\nno video stream with a frame rate"):
        video_rate(tmp_path / "missing.mp4")
