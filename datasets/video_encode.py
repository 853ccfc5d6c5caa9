"""Find the ffmpeg binary and encode raw frames as an H.264 mp4 through it, atomically."""
from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable
from pathlib import Path

import numpy as np


def ffmpeg_executable() -> str:
    """The ffmpeg binary: the one on PATH, else the static build shipped by imageio-ffmpeg."""
    found = shutil.which("ffmpeg")
    if found:
        return found
    import imageio_ffmpeg  # imported lazily: only needed when no system ffmpeg exists

    return imageio_ffmpeg.get_ffmpeg_exe()


def encode_mp4(
    frames: Iterable[np.ndarray],
    size: tuple[int, int],
    path: str | Path,
    fps: int,
    crf: int = 20,
    pixel_format: str = "rgb24",
    threads: int | None = None,
    faststart: bool = False,
) -> int:
    """Encode frames as an H.264 mp4 (yuv420p); the file appears under ``path`` only on success.

    Frames go to the ffmpeg binary through a pipe. Odd sizes are padded by one pixel (yuv420p needs
    even dimensions); even sizes get no filter at all.

    Args:
        frames: ``[height, width, 3]`` uint8 arrays, channels in ``pixel_format`` order.
        size: ``(width, height)`` of every frame, in pixels.
        path: destination ``.mp4``.
        fps: frame rate.
        crf: x264 constant rate factor (lower = better quality).
        pixel_format: ``rgb24`` or ``bgr24`` (OpenCV frames).
        threads: x264 threads; None lets ffmpeg choose.
        faststart: put the index first, so players can start before the download ends.

    Returns:
        The number of frames written.

    Raises:
        RuntimeError: ffmpeg failed, or there was no frame (its last stderr lines are included).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, partial_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial.mp4", dir=path.parent)
    os.close(handle)
    partial = Path(partial_name)
    width, height = size
    command = [ffmpeg_executable(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y",
               "-f", "rawvideo", "-pix_fmt", pixel_format, "-s", f"{width}x{height}", "-r", str(fps), "-i", "-", "-an"]
    if width % 2 or height % 2:
        command += ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"]
    command += ["-c:v", "libx264", "-preset", "veryfast", "-crf", str(crf), "-pix_fmt", "yuv420p"]
    if threads is not None:
        command += ["-threads", str(threads)]
    if faststart:
        command += ["-movflags", "+faststart"]
    command += ["-f", "mp4", str(partial)]
    count = 0
    try:
        with tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(command, stdin=subprocess.PIPE, stderr=stderr)
            try:
                for frame in frames:
                    process.stdin.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
                    count += 1
            except BrokenPipeError:
                pass  # ffmpeg died; its exit status and stderr below say why
            except BaseException:
                process.kill()
                raise
            finally:
                with contextlib.suppress(BrokenPipeError):
                    process.stdin.close()
                returncode = process.wait()
            stderr.seek(0)
            message = stderr.read().decode(errors="replace").strip()
        if returncode != 0 or count == 0:
            tail = "\n".join(message.splitlines()[-5:]) or "no frame to encode"
            raise RuntimeError(f"ffmpeg failed (exit {returncode}) writing {path}:\n{tail}")
        with partial.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return count
