"""A long video through the video demo: frames are decoded in a window and streamed to the output, so
the peak memory of a 3-minute clip is that of a 20-second one (each run in its own process)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import ffmpeg
import pytest

from datasets.ffmpeg_io import run_ffmpeg
from tests.engine_fixtures import write_tiny_config

ROOT = Path(__file__).resolve().parents[1]
# Peak resident memory may grow by this much from the short clip to the long one (the report and
# the tracks grow with the length: a few kB per second). Holding the decoded frames would take
# 4500 x 320 x 180 x 3 bytes = 778 MB more at the model's size alone.
GROWTH_MB = 100


def _clip(path: Path, seconds: int) -> Path:
    source = ffmpeg.input(f"testsrc2=size=160x90:rate=25:duration={seconds}", f="lavfi")
    run_ffmpeg(source.output(str(path), vcodec="libx264", pix_fmt="yuv420p", preset="ultrafast").overwrite_output(),
               "writing", path)
    return path


def _boxes(path: Path, seconds: int) -> Path:
    """Two people, one box each per second, with track ids (pixels of the 160x90 clip)."""
    lines = ["time_s,x1,y1,x2,y2,track_id"]
    for second in range(seconds):
        x = 10 + (second * 7) % 100
        lines += [f"{second},{x},20,{x + 20},80,1", f"{second},{130 - x // 2},25,{150 - x // 2},85,2"]
    path.write_text("\n".join(lines) + "\n")
    return path


def _run(folder: Path, seconds: int, config: Path) -> dict:
    video = _clip(folder / f"clip_{seconds}s.mp4", seconds)
    out = folder / f"clip_{seconds}s_annotated.mp4"
    command = [sys.executable, "-m", "tools.video_demo", "--video", str(video), "--out", str(out), "--boxes",
               str(_boxes(folder / f"boxes_{seconds}s.csv", seconds)), "--random-weights", "--config", str(config),
               "--device", "cpu", "--no-progress"]
    done = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(out.with_suffix(".json").read_text())


@pytest.mark.slow
def test_a_long_video_keeps_memory_flat(tmp_path: Path) -> None:
    config = write_tiny_config(tmp_path / "tiny.yaml", tmp_path / "result")
    short, long = _run(tmp_path, 20, config), _run(tmp_path, 180, config)
    assert short["frames"] == 20 * 25 and long["frames"] == 180 * 25
    assert long["keyframes_count"] == 180 and long["tracks_count"] == 2
    growth = long["peak_rss_mb"] - short["peak_rss_mb"]
    print(f"peak memory: 20 s clip {short['peak_rss_mb']} MB, 180 s clip {long['peak_rss_mb']} MB "
          f"(+{growth:.1f} MB); 180 s took {long['wall_s']} s, {long['keyframes_per_second']} keyframes/s")
    assert growth < GROWTH_MB
