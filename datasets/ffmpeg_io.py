"""The one way to ffmpeg: the binary, ffmpeg-python stream building, and running it to encode, decode and extract.

Every ffmpeg process of the project starts here (frame extraction, the synthetic clips, the video
demo): streams are built with ffmpeg-python (the project's chosen package) and run by the binary
`ffmpeg_executable` finds. The process is started here rather than by ffmpeg-python's `run`, so
its stderr goes to a file (a pipe that nobody reads could fill and stall ffmpeg while frames are
written to or read from it) and every failure names the file and ffmpeg's last words.
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import struct
import subprocess
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO

import ffmpeg
import numpy as np

# ffmpeg's last stderr lines kept in an error message.
STDERR_LINES = 8
# Options of every ffmpeg run: never read the terminal, print errors only.
_QUIET = ("-nostdin", "-hide_banner", "-loglevel", "error")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


class FFmpegError(RuntimeError):
    """ffmpeg failed on a file; the message names it, the exit status and ffmpeg's last stderr lines.

    Attributes:
        path: the file ffmpeg was reading or writing.
        returncode: ffmpeg's exit status.
        stderr_tail: the last `STDERR_LINES` lines of its stderr ('' when it printed nothing).
    """

    def __init__(self, action: str, path: str | Path, returncode: int, stderr: str, reason: str = "") -> None:
        self.path = str(path)
        self.returncode = returncode
        self.stderr_tail = "\n".join(stderr.strip().splitlines()[-STDERR_LINES:])
        status = f" (exit {returncode})" if returncode else ""
        details = "\n".join(part for part in (reason, self.stderr_tail) if part) or "ffmpeg printed no error"
        super().__init__(f"ffmpeg failed{status} {action} {path}:\n{details}")


def ffmpeg_executable() -> str:
    """The ffmpeg binary: the one on PATH, else the static build shipped by imageio-ffmpeg (requirements.txt).

    imageio-ffmpeg is used only for that binary's path; all streams are built with ffmpeg-python.

    Raises:
        FileNotFoundError: no ffmpeg on PATH, and imageio-ffmpeg is missing or has no binary for
            this platform.
    """
    found = shutil.which("ffmpeg")
    if found:
        return found
    try:
        import imageio_ffmpeg  # imported lazily: only needed when no system ffmpeg exists

        return imageio_ffmpeg.get_ffmpeg_exe()
    except (ImportError, RuntimeError) as error:
        raise FileNotFoundError(
            "no ffmpeg binary: none on PATH, and the imageio-ffmpeg package (requirements.txt) provides none "
            f"({type(error).__name__}: {error}); install ffmpeg or re-create the virtual environment") from None


def ffmpeg_command(stream: ffmpeg.nodes.OutputStream) -> list[str]:
    """The command line of an ffmpeg-python output stream: the found binary, quiet, no terminal input."""
    return stream.global_args(*_QUIET).compile(cmd=ffmpeg_executable())


def _read(stderr: IO[bytes]) -> str:
    stderr.seek(0)
    return stderr.read().decode(errors="replace")


def run_ffmpeg(stream: ffmpeg.nodes.OutputStream, action: str, path: str | Path) -> bytes:
    """Run a stream to its end and return what it wrote to stdout (b'' unless its output is 'pipe:').

    Args:
        stream: an ffmpeg-python output stream.
        action: what it does to ``path``, for the error message ('reading', 'writing').
        path: the file named in the error message.

    Raises:
        FFmpegError: ffmpeg exited with an error.
        FileNotFoundError: no ffmpeg binary (see `ffmpeg_executable`).
    """
    with tempfile.TemporaryFile() as stderr:
        done = subprocess.run(ffmpeg_command(stream), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                              stderr=stderr, check=False)
        if done.returncode != 0:
            raise FFmpegError(action, path, done.returncode, _read(stderr))
    return done.stdout


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
        FFmpegError: ffmpeg failed, or there was no frame (its last stderr lines are included).
        FileNotFoundError: no ffmpeg binary.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    width, height = size
    stream = ffmpeg.input("pipe:", format="rawvideo", pix_fmt=pixel_format, s=f"{width}x{height}", r=fps)
    options: dict[str, object] = {"an": None, "vcodec": "libx264", "preset": "veryfast", "crf": crf,
                                  "pix_fmt": "yuv420p", "format": "mp4"}
    if width % 2 or height % 2:
        options["vf"] = "pad=ceil(iw/2)*2:ceil(ih/2)*2"
    if threads is not None:
        options["threads"] = threads
    if faststart:
        options["movflags"] = "+faststart"
    handle, partial_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".partial.mp4", dir=path.parent)
    os.close(handle)
    partial = Path(partial_name)
    count = 0
    try:
        # -y: the temporary file exists already (mkstemp reserved its name).
        command = ffmpeg_command(stream.output(str(partial), **options).overwrite_output())
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
            if returncode != 0 or count == 0:
                raise FFmpegError("writing", path, returncode, _read(stderr),
                                  reason="" if count else "no frame to encode")
        with partial.open("rb") as written:
            os.fsync(written.fileno())
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return count


def extract_images(video: str | Path, pattern: str | Path, fps: int, size: tuple[int, int],
                   start_seconds: float | None = None, **image_options: object) -> None:
    """Decode a video into numbered image files, resampled to ``fps`` and scaled to ``size``.

    Args:
        video: the video file.
        pattern: printf pattern of the files, numbered from 1 (``.../<vid>_%06d.png``); its folder exists.
        fps: output frame rate (ffmpeg's fps filter duplicates or drops frames to reach it).
        size: ``(width, height)`` in pixels (scaled, not cropped); -1 keeps the aspect ratio.
        start_seconds: seek to this second first (input seek, as ``ffmpeg -ss S -i V``), None = 0.
        image_options: further ffmpeg output options, e.g. ``compression_level`` (png),
            ``**{"qscale:v": 2}`` (jpg) or ``**{"frames:v": 100}``.

    Raises:
        FFmpegError: ffmpeg could not decode the video.
        FileNotFoundError: no ffmpeg binary.
    """
    seek = {} if start_seconds is None else {"ss": start_seconds}
    stream = ffmpeg.input(str(video), **seek).filter("fps", fps=fps).filter("scale", *size)
    run_ffmpeg(stream.output(str(pattern), start_number=1, **image_options), "reading", video)


def video_size(video: str | Path) -> tuple[int, int]:
    """``(width, height)`` of a video's decoded frames (rotation applied, as decoding does).

    Read from the header of its first frame encoded as PNG: the ffmpeg binary comes without
    ffprobe, and a raw frame does not carry its size.

    Raises:
        FFmpegError: ffmpeg cannot decode a frame of it.
    """
    stream = ffmpeg.input(str(video)).output("pipe:", vframes=1, format="image2pipe", vcodec="png")
    png = run_ffmpeg(stream, "reading", video)
    if png[:8] != _PNG_SIGNATURE or png[12:16] != b"IHDR":
        raise FFmpegError("reading", video, 0, "", reason="no frame decoded (empty or unreadable video)")
    width, height = struct.unpack(">II", png[16:24])
    return width, height


def decode_frames(video: str | Path, fps: int | None = None, pixel_format: str = "bgr24",
                  size: tuple[int, int] | None = None) -> tuple[tuple[int, int], Iterator[np.ndarray]]:
    """Decode a video, optionally resampled to ``fps`` and scaled to ``size`` by ffmpeg's filters.

    The filters are those of the frame extraction (``extract_images``: fps, then scale), so frames
    decoded at 25 fps and 320x180 hold the pixels of the extracted PNG frames.

    Args:
        video: the video file.
        fps: output frame rate (frames duplicated or dropped, as the frame extraction); None = as stored.
        pixel_format: ``bgr24`` (OpenCV order) or ``rgb24``.
        size: ``(width, height)`` in pixels to scale to (not cropped); None = the video's own size.

    Returns:
        ``((width, height), frames)``; ``frames`` yields ``[H, W, 3]`` uint8 arrays and stops ffmpeg
        when closed early.

    Raises:
        FFmpegError: ffmpeg cannot read the video (from this call, or while iterating).
        FileNotFoundError: no ffmpeg binary.
    """
    width, height = video_size(video) if size is None else size
    stream = ffmpeg.input(str(video))
    if fps is not None:
        stream = stream.filter("fps", fps=fps)
    if size is not None:
        stream = stream.filter("scale", *size)
    command = ffmpeg_command(stream.output("pipe:", format="rawvideo", pix_fmt=pixel_format))
    frame_bytes = width * height * 3

    def frames() -> Iterator[np.ndarray]:
        with tempfile.TemporaryFile() as stderr:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=stderr)
            try:
                while len(raw := process.stdout.read(frame_bytes)) == frame_bytes:
                    yield np.frombuffer(raw, dtype=np.uint8).reshape(height, width, 3).copy()
            except BaseException:  # closed early, or the consumer failed: stop decoding the rest
                process.kill()
                raise
            finally:
                process.stdout.close()
                returncode = process.wait()
            if returncode != 0:
                raise FFmpegError("reading", video, returncode, _read(stderr))

    return (width, height), frames()


_RATE = re.compile(r"Stream #[^\n]*Video:[^\n]*?(\d+(?:\.\d+)?) (fps|tbr)")
_DURATION = re.compile(r"Duration: (\d+):(\d\d):(\d\d(?:\.\d+)?)")


def video_rate(video: str | Path) -> tuple[float, float | None]:
    """Frame rate and duration of a video's first video stream, from ffmpeg's listing of the file.

    The ffmpeg binary comes without ffprobe; ``ffmpeg -i FILE`` with no output lists the streams on
    stderr (and exits 1, which is expected here).

    Returns:
        ``(frames per second, duration in seconds or None when the container does not say)``.

    Raises:
        FFmpegError: the file cannot be opened or has no video stream with a frame rate.
    """
    command = [ffmpeg_executable(), "-hide_banner", "-nostdin", "-i", str(video)]
    listing = subprocess.run(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             check=False).stderr.decode(errors="replace")
    rate = _RATE.search(listing)
    if rate is None or float(rate.group(1)) <= 0:
        raise FFmpegError("reading", video, 0, listing, reason="no video stream with a frame rate")
    duration = _DURATION.search(listing)
    seconds = None if duration is None else (int(duration.group(1)) * 3600 + int(duration.group(2)) * 60
                                             + float(duration.group(3)))
    return float(rate.group(1)), seconds
