"""Frame extraction with ffmpeg: count, size and numbering of frames, skip-if-done, errors naming the video."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pytest

from datasets.synthetic import generate_dataset
from tools.extract_frames import FrameExtractionError, extract_frames, find_videos, is_extracted

SECONDS = 2


@pytest.fixture(scope="module")
def videos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic")
    generate_dataset(root, preset="tiny", seed=5, seconds=SECONDS, progress=False, workers=1)
    return root / "videos"


def _copy_videos(videos: Path, tmp_path: Path) -> Path:
    target = tmp_path / "videos"
    shutil.copytree(videos, target)
    return target


def test_frames_have_the_expected_count_size_and_numbering(videos: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    summary = extract_frames(videos, frames, workers=2, progress=False)
    ids = sorted(find_videos(videos))
    assert summary["videos"] == summary["extracted"] == len(ids) == 2 and summary["skipped"] == 0
    for video_id in ids:
        names = sorted(path.name for path in (frames / video_id).iterdir())
        # 25 fps x seconds; ffmpeg's fps filter may round one frame either way at the end of a stream.
        assert abs(len(names) - 25 * SECONDS) <= 1
        assert names[0] == f"{video_id}_000001.png" and f"{video_id}_000000.png" not in names
        assert names == [f"{video_id}_{index:06d}.png" for index in range(1, len(names) + 1)]
        image = cv2.imread(str(frames / video_id / names[len(names) // 2]))
        assert image is not None and image.shape == (180, 320, 3)
    assert summary["frames_written"] == sum(len(list((frames / v).iterdir())) for v in ids)
    assert not [path for path in frames.iterdir() if path.name.startswith(".")], "no partial folders left"


def test_videos_already_done_are_skipped(videos: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    extract_frames(videos, frames, workers=1, progress=False)
    video_id = sorted(find_videos(videos))[0]
    first = frames / video_id / f"{video_id}_000001.png"
    stamp = first.stat().st_mtime_ns
    again = extract_frames(videos, frames, workers=1, progress=False)
    assert again["extracted"] == 0 and again["skipped"] == 2 and again["frames_written"] == 0
    assert first.stat().st_mtime_ns == stamp


def test_a_half_done_video_is_not_mistaken_for_done(videos: Path, tmp_path: Path) -> None:
    frames = tmp_path / "frames"
    video_id = sorted(find_videos(videos))[0]
    stale = frames / f".{video_id}.partial-killed"
    stale.mkdir(parents=True)
    (stale / f"{video_id}_000001.png").write_bytes(b"half")
    assert not is_extracted(frames, video_id)
    summary = extract_frames(videos, frames, workers=1, video_ids=[video_id], progress=False)
    assert summary["extracted"] == 1 and is_extracted(frames, video_id)
    assert not stale.exists()


def test_corrupt_video_error_names_the_file(videos: Path, tmp_path: Path) -> None:
    folder = _copy_videos(videos, tmp_path)
    bad = folder / "BROKEN01.mp4"
    bad.write_bytes(b"\x00\x00\x00\x18ftypmp42 this is not a video" * 20)
    frames = tmp_path / "frames"
    with pytest.raises(FrameExtractionError) as error:
        extract_frames(folder, frames, workers=2, progress=False)
    assert str(bad) in str(error.value) and list(error.value.failures) == [str(bad)]
    assert not (frames / "BROKEN01").exists()
    # The readable videos were still extracted, so a re-run after fixing the file resumes.
    assert all(is_extracted(frames, video_id) for video_id in find_videos(videos))


def test_missing_inputs_are_named(videos: Path, tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="NOSUCHID"):
        extract_frames(videos, tmp_path / "frames", video_ids=["NOSUCHID"], progress=False)
    with pytest.raises(FileNotFoundError, match="videos folder not found"):
        extract_frames(tmp_path / "absent", tmp_path / "frames", progress=False)
