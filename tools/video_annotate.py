"""The video demo's pipeline: check every input, analyse the video (people, tracks, actions), write the
json, csv and timeline, then stream the annotated mp4 (decode, draw, encode: never the whole video)."""
from __future__ import annotations

import json
import logging
import resource
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from common.atomic import write_text_atomic
from datasets.ffmpeg_io import FFmpegError, decode_frames, encode_mp4, video_rate, video_size
from tools.video_actions import ActionModel
from tools.video_analyse import Analysis, BoxFeed, analyse_video
from tools.video_boxes import GivenBox, boxes_from_pkl, read_boxes_csv
from tools.video_detect import PersonDetector, PersonTracker
from tools.video_draw import Person, Style, class_colours, display_size, draw_panel, draw_people, panel_width
from tools.video_options import FRAME_RATE, UNTRAINED_STAMP, DemoInputs, DemoSettings
from tools.video_report import (actions_by_track, class_order, keyframe_records, timing_figures, track_records,
                                write_csv)
from tools.video_timeline import write_timeline

LOGGER = logging.getLogger("tools.video_demo")


def output_paths(out: str | Path) -> dict[str, Path]:
    """The files of one run: ``out`` (mp4) and, beside it, ``.json``, ``.csv`` and ``_timeline.png``."""
    out = Path(out)
    return {"mp4": out, "json": out.with_suffix(".json"), "csv": out.with_suffix(".csv"),
            "timeline": out.with_name(f"{out.stem}_timeline.png")}


def choose_device(device: str = "auto") -> torch.device:
    """``'auto'`` -> the first CUDA GPU if any, else the CPU; ``'0'`` -> ``cuda:0``; others as given."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return torch.device(f"cuda:{device}" if device.isdigit() else device)


def check_inputs(inputs: DemoInputs, settings: DemoSettings) -> None:
    """Every input file exists and the combination makes sense, before any work.

    Raises:
        FileNotFoundError: a missing file (named).
        ValueError: a bad combination or setting.
    """
    settings.check()
    sources = [source for source in (inputs.detector, inputs.boxes, inputs.boxes_pkl) if source is not None]
    if len(sources) > 1:
        raise ValueError("give one source of boxes: a detector, --boxes or --boxes-pkl")
    if not sources and not settings.random_weights:
        raise ValueError("no boxes: give --detector (a local YOLO .pt), --boxes FILE.csv, or --random-weights "
                         "(an untrained detector)")
    if settings.random_weights and inputs.checkpoint is not None:
        raise ValueError("--random-weights builds the action model untrained: leave --checkpoint out")
    named = {"video": inputs.video, "config": inputs.config, "checkpoint": inputs.checkpoint,
             "detector": inputs.detector, "boxes": inputs.boxes, "boxes pkl": inputs.boxes_pkl,
             "label map": settings.label_map}
    for name, path in named.items():
        if path is not None and not Path(path).is_file():
            raise FileNotFoundError(f"{name} not found: {path}")


def _rate(video: Path) -> tuple[float | None, float | None]:
    """The video's own frame rate and duration, or ``(None, None)`` when ffmpeg's listing lacks them:
    they size the progress bar and convert given frame numbers, nothing else needs them."""
    try:
        return video_rate(video)
    except FFmpegError as error:
        LOGGER.warning("%s: no frame rate in ffmpeg's listing (%s); frames are still decoded at 25 fps",
                       video, error.stderr_tail.splitlines()[-1] if error.stderr_tail else "no detail")
        return None, None


def _given_boxes(inputs: DemoInputs, settings: DemoSettings, size: tuple[int, int],
                 fps: float | None) -> list[GivenBox] | None:
    if inputs.boxes is not None:
        return read_boxes_csv(inputs.boxes, size, fps, settings.boxes_time, settings.boxes_normalised)
    if inputs.boxes_pkl is not None:
        return boxes_from_pkl(inputs.boxes_pkl, inputs.video.stem)
    return None


def run_video_demo(inputs: DemoInputs, out: str | Path, settings: DemoSettings = DemoSettings()) -> dict:
    """Annotate a video: who is where (tracked), doing what (top-k actions per keyframe), when.

    Writes ``out`` (mp4: boxes, track ids, top-k actions, side panel with time and legend) and
    beside it ``.json`` (everything, per keyframe and per track), ``.csv`` (one row per track and
    keyframe) and ``_timeline.png``; each atomically.

    Args:
        inputs: the video, the action model's config and weights, and the boxes' source.
        out: the mp4 to write.
        settings: how to run (``DemoSettings``).

    Returns:
        The report (also ``<out>.json``).

    Raises:
        FileNotFoundError: a missing input.
        ValueError: a bad setting, boxes csv line, config or combination (one line, named).
        FFmpegError: the video cannot be decoded.
    """
    check_inputs(inputs, settings)
    started = time.perf_counter()
    paths = output_paths(out)
    size = video_size(inputs.video)
    rate = _rate(inputs.video)
    given = _given_boxes(inputs, settings, size, rate[0])
    device = choose_device(settings.device)
    model = ActionModel(inputs.config, inputs.checkpoint, device, settings.random_weights, settings.seed,
                        settings.label_map)
    detector = None
    if given is None:
        detector = PersonDetector(inputs.detector, settings.person_class, settings.conf, settings.imgsz,
                                  str(device.index if device.type == "cuda" else "cpu"))
    feed = BoxFeed(detector, settings.detect_every, given)
    tracker = None if feed.with_ids else PersonTracker(settings.tracker)
    untrained = [name for name, flag in (("action model", model.untrained),
                                         ("detector", detector is not None and detector.untrained)) if flag]
    analysis = analyse_video(inputs.video, model, feed, tracker, settings, size, rate)
    if detector is not None and detector.untrained and not analysis.tracks.ids():
        LOGGER.warning("the untrained detector found nobody, as expected (its scores stay near 1e-4): give "
                       "--detector yolov8n.pt or --boxes to see tracks with the untrained action model")
    records = keyframe_records(analysis, settings.top_k)
    write_csv(paths["csv"], records, settings.top_k)
    timeline = write_timeline(paths["timeline"], analysis.keyframes, analysis.names, settings.top_k,
                              inputs.video.name, bool(untrained))
    picture, frames = render_video(inputs.video, paths["mp4"], analysis, records, settings, bool(untrained))
    report = _report(inputs, settings, paths, analysis, records, untrained, detector)
    report["tracker"] = None if tracker is None else tracker.name
    report.update(frames=frames, size=list(picture), timeline_rows=timeline["rows"],
                  wall_s=round(time.perf_counter() - started, 2))
    write_text_atomic(paths["json"], json.dumps(report, indent=2) + "\n")
    LOGGER.info("wrote %s (%d frames), %s, %s, %s", paths["mp4"], frames, paths["json"].name, paths["csv"].name,
                paths["timeline"].name)
    return report


def _report(inputs: DemoInputs, settings: DemoSettings, paths: dict[str, Path], analysis: Analysis,
            records: list[dict], untrained: list[str], detector: PersonDetector | None) -> dict:
    boxes_from = (f"detector {detector.weights}" if detector is not None
                  else f"boxes {inputs.boxes or inputs.boxes_pkl}")
    tracks = track_records(records)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    return {
        "video": str(inputs.video), "out": str(paths["mp4"]), "json": str(paths["json"]), "csv": str(paths["csv"]),
        "timeline": str(paths["timeline"]),
        "untrained": bool(untrained), "untrained_models": untrained,
        "stamp": UNTRAINED_STAMP if untrained else None,
        "config": str(inputs.config), "checkpoint": None if inputs.checkpoint is None else str(inputs.checkpoint),
        "boxes_from": boxes_from,
        "settings": {"conf": settings.conf, "imgsz": settings.imgsz, "detect_every": settings.detect_every,
                     "hold_seconds": settings.hold_seconds, "max_gap_seconds": settings.max_gap_seconds,
                     "top_k": settings.top_k, "seed": settings.seed if untrained else None},
        "video_size": list(analysis.video_size), "video_fps": None if analysis.video_fps is None else round(analysis.video_fps, 3),
        "model_frames": analysis.frames, "keyframes_count": len(records),
        "boxes": sum(len(record["people"]) for record in records), "observations": analysis.observations,
        "tracks_count": len(tracks), "classes": list(analysis.names),
        **timing_figures(analysis, len(records)), "peak_rss_mb": round(peak, 1),
        "tracks": tracks, "keyframes": records,
    }


def _people_at(analysis: Analysis, number: int, actions: dict, picture: tuple[int, int]) -> list[Person]:
    """The people drawn on frame ``number``: the track rule's boxes, the actions of their second."""
    width, height = picture
    second = int(round((number - 1) / FRAME_RATE))
    people = []
    for track in analysis.tracks.near(number):
        found = analysis.tracks.box_at(track, number)
        if found is None:
            continue
        x1, y1, x2, y2 = (int(round(v)) for v in found.box * np.array([width, height, width, height]))
        people.append(Person(track, (min(max(x1, 0), width - 1), min(max(y1, 0), height - 1),
                                     min(max(x2, 0), width - 1), min(max(y2, 0), height - 1)),
                             actions.get((track, second), ())))
    return people


def render_video(video: Path, out: Path, analysis: Analysis, records: list[dict], settings: DemoSettings,
                 untrained: bool) -> tuple[tuple[int, int], int]:
    """Second pass: decode the video at 25 fps and the display size, draw, and stream it into ``out``.

    Returns:
        ``((width, height) of the written frames, frames written)``.
    """
    picture = display_size(analysis.video_size, settings.display_height)
    style = Style.for_height(picture[1])
    order = class_order(records)
    colours = class_colours(order)
    rank = {name: index for index, name in enumerate(order)}
    panel = panel_width(style, order, picture[1])
    actions = actions_by_track(records)
    watch = analysis.watch
    _, decoded = decode_frames(video, fps=FRAME_RATE, pixel_format="bgr24", size=picture)
    decode_before = watch.seconds["decode"]

    def annotated() -> Iterator[np.ndarray]:
        side = np.empty((picture[1], panel, 3), dtype=np.uint8)
        with tqdm(total=analysis.frames, unit="frame", desc="render", disable=not settings.progress) as bar:
            number = 0
            while True:
                with watch.phase("decode"):
                    frame = next(decoded, None)
                if frame is None:
                    return
                number += 1
                people = _people_at(analysis, number, actions, picture)
                draw_people(frame, people, style, colours)
                legend = sorted({name for person in people for name, _ in person.actions}, key=rank.__getitem__)
                draw_panel(side, style, (number - 1) / FRAME_RATE, len(people), legend, colours, untrained)
                bar.update(1)
                yield np.concatenate([frame, side], axis=1)

    started = time.perf_counter()
    written = encode_mp4(annotated(), (picture[0] + panel, picture[1]), out, FRAME_RATE, pixel_format="bgr24",
                         faststart=True)
    watch.seconds["encode"] += time.perf_counter() - started - (watch.seconds["decode"] - decode_before)
    if written != analysis.frames:
        LOGGER.warning("%s: decoded %d frames to draw on but %d to analyse", video, written, analysis.frames)
    return (picture[0] + panel, picture[1]), written
