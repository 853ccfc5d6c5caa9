"""Reliability: tools.check_data decodes every frame by default, says when it samples, and
refuses frames of different sizes within one video."""
from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import pytest
from PIL import Image

from common.errors import FormatError
from tests.test_tools_data import _dataset
from tools import check_data
from tools.check_data import check_dataset


def test_the_command_line_decodes_every_frame_by_default(tmp_path: Path, capsys) -> None:
    pkl, frames = _dataset(tmp_path)
    out = tmp_path / "report.json"
    assert check_data.main(["--pkl", str(pkl), "--frames", str(frames), "--temporal-size", "8",
                            "--json", str(out)]) == 0
    saved = json.loads(out.read_text())
    assert saved["decode_mode"] == "all" and saved["decoded"] == saved["frames_read"] == 8
    assert "SAMPLED" not in capsys.readouterr().out


def test_a_sampled_check_says_so(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    pkl, frames = _dataset(tmp_path)
    caplog.set_level(logging.INFO, logger="tools.check_data")
    report = check_dataset(pkl, frames, decode="sampled", temporal_size=8, temporal_step=2, progress=False)
    assert report.decoded == 3
    assert "SAMPLED: decoded 3 of the 8 existing frames" in report.summary()
    # The one line a pipeline's log keeps says so too.
    assert "8 frames read by the clips, sampled 3 of 8 decoded (first, middle and last per video): OK" in caplog.text
    report = check_dataset(pkl, frames, decode="none", temporal_size=8, temporal_step=2, progress=False)
    assert "NOT DECODED" in report.summary() and "none decoded (existence checked only): OK" in caplog.text
    check_dataset(pkl, frames, decode="all", temporal_size=8, temporal_step=2, progress=False)
    assert "8 frames read by the clips, all 8 decoded: OK" in caplog.text


@pytest.mark.parametrize("workers", [1, 4])
def test_frames_of_another_size_within_one_video_are_an_error(tmp_path: Path, capsys, workers: int) -> None:
    pkl, frames = _dataset(tmp_path)
    Image.new("RGB", (10, 6)).save(frames / "vidA" / "vidA_000019.png")
    with pytest.raises(FormatError, match=r"vidA: frames of several sizes in one video: \{'8x6': 7, '10x6': 1\}.*"
                                          r"vidA_000019\.png is 10x6"):
        check_dataset(pkl, frames, decode="all", temporal_size=8, temporal_step=2, progress=False, workers=workers)
    report = check_dataset(pkl, frames, decode="all", temporal_size=8, temporal_step=2, progress=False,
                           strict=False, workers=workers)
    assert not report.ok and report.mixed_size_videos == {"vidA": {"8x6": 7, "10x6": 1}}
    assert check_data.main(["--pkl", str(pkl), "--frames", str(frames), "--temporal-size", "8"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(r"error: .*several sizes in one video", err), err
