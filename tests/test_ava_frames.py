"""AVA frame extraction in ACAR-Net's layout: image_%06d.jpg from a start second, fixed count, 30 fps."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from datasets.synthetic import generate_dataset
from tools.ava_frames import NUM_FRAMES, ava_layout, extract_ava_frames
from tools.extract_frames import extract_frames, find_videos, is_extracted


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic30")
    generate_dataset(root, preset="tiny", seed=3, seconds=3, fps=30, progress=False, workers=1)
    return root / "videos"


def test_acar_net_layout_numbering_start_and_count(videos: Path, tmp_path: Path) -> None:
    assert NUM_FRAMES == 27000  # ACAR-Net: ceil((1800 - 900) * 30)
    frames = tmp_path / "data"
    summary = extract_ava_frames(videos, frames, height=120, start_seconds=1, num_frames=30, progress=False)
    assert summary["extracted"] == 2
    whole = tmp_path / "whole"
    extract_frames(videos, whole, ava_layout(start_seconds=0, num_frames=90, height=120), progress=False)
    for video_id in find_videos(videos):
        names = sorted(path.name for path in (frames / video_id).iterdir())
        assert names == [f"image_{index:06d}.jpg" for index in range(1, 31)]
        assert is_extracted(frames, video_id, ava_layout())
        first = cv2.imread(str(frames / video_id / "image_000001.jpg")).astype(np.float32)
        assert first.shape[0] == 120
        # Frame 1 after seeking to second 1 is frame 31 of the whole video (30 fps, numbered from 1).
        same = cv2.imread(str(whole / video_id / "image_000031.jpg")).astype(np.float32)
        other = cv2.imread(str(whole / video_id / "image_000001.jpg")).astype(np.float32)
        assert np.abs(first - same).mean() < np.abs(first - other).mean()
