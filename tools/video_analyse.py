"""The video demo's first pass: decode the video once at the model's rate and size, find and track the
people, and classify their actions at every keyframe, keeping only a clip window of frames in memory."""
from __future__ import annotations

import collections
import contextlib
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datasets.ffmpeg_io import decode_frames
from datasets.synthetic import HALF_WINDOW
from tools.video_actions import ActionModel, KeyframeClip, keyframe_clip
from tools.video_boxes import GivenBox
from tools.video_detect import PersonDetector, PersonTracker
from tools.video_options import FRAME_RATE, FRAME_SIZE, KEYFRAME_SECONDS, DemoSettings
from tools.video_tracks import TrackStore

LOGGER = logging.getLogger("tools.video_demo")
PHASES = ("decode", "detect", "track", "classify", "encode")


class Stopwatch:
    """Seconds spent per phase (``PHASES``), summed over the run."""

    def __init__(self) -> None:
        self.seconds = dict.fromkeys(PHASES, 0.0)

    @contextlib.contextmanager
    def phase(self, name: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] += time.perf_counter() - started


@dataclass
class KeyframePeople:
    """The people at one keyframe and what each does.

    Attributes:
        time: keyframe time (s).
        frame: keyframe frame number (1-based, 25 fps).
        track_ids: ``N`` track ids.
        boxes: ``[N, 4]`` normalised (x1, y1, x2, y2).
        sources: ``N`` of ``observed``, ``interpolated``, ``held`` (``tools.video_tracks``).
        detector_scores: ``[N]`` confidences (NaN unless observed by the detector).
        actions: ``[N, C]`` action probabilities (NaN for a box the model dropped).
    """

    time: int
    frame: int
    track_ids: list[int]
    boxes: np.ndarray
    sources: list[str]
    detector_scores: np.ndarray
    actions: np.ndarray


@dataclass
class Analysis:
    """What the first pass found.

    Attributes:
        video_size: ``(width, height)`` of the video in pixels.
        video_fps: its own frame rate (None when ffmpeg's listing does not give it).
        frames: frames decoded at 25 fps.
        keyframes: one per second, in time order.
        tracks: every track's observations.
        names: action class names.
        observations: boxes observed (detected or given) over all frames.
        watch: seconds per phase.
    """

    video_size: tuple[int, int]
    video_fps: float | None
    frames: int
    keyframes: list[KeyframePeople]
    tracks: TrackStore
    names: list[str]
    observations: int = 0
    watch: Stopwatch = field(default_factory=Stopwatch)


class BoxFeed:
    """Where the boxes of a frame come from: a detector on every n-th frame, or given boxes.

    ``observe`` returns ``(boxes [N, 4] normalised, detector scores [N] (NaN when given), track ids
    [N] or None)`` for a frame that has boxes to offer, else None.
    """

    def __init__(self, detector: PersonDetector | None = None, every: int = 1,
                 given: list[GivenBox] | None = None) -> None:
        self.detector, self.every = detector, every
        self.given: dict[int, list[GivenBox]] = {}
        for box in given or []:
            self.given.setdefault(int(round(box.time * FRAME_RATE)) + 1, []).append(box)
        self.with_ids = bool(given) and given[0].track_id is not None

    def last_given_frame(self) -> int:
        return max(self.given, default=0)

    def observe(self, number: int, frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray | None] | None:
        if self.detector is not None:
            if (number - 1) % self.every:
                return None
            boxes, scores = self.detector.detect(frame_bgr)
            return boxes, scores, None
        rows = self.given.get(number)
        if not rows:
            return None
        boxes = np.asarray([row.box for row in rows], dtype=np.float64).reshape(-1, 4)
        ids = np.asarray([row.track_id for row in rows], dtype=np.int64) if self.with_ids else None
        return boxes, np.full(len(rows), np.nan), ids


class _Classifier:
    """Keyframes waiting for their clip window, then batched through the action model."""

    def __init__(self, model: ActionModel, tracks: TrackStore, watch: Stopwatch) -> None:
        self.model, self.tracks, self.watch = model, tracks, watch
        self.waiting: collections.deque[tuple[int, int]] = collections.deque()  # (time, frame)
        self.batch: list[tuple[KeyframePeople, dict]] = []
        self.done: list[KeyframePeople] = []

    def oldest_needed(self, next_keyframe: int) -> int:
        """The smallest frame number a waiting (or the next) keyframe's window may read."""
        return (self.waiting[0][1] if self.waiting else next_keyframe) - HALF_WINDOW

    def ready(self, time_s: int, frame: int, frames: dict[int, np.ndarray], last_frame: int | None) -> None:
        """Take the keyframe's people from the tracks and queue its clip (run the batch when full)."""
        people = [(track, found) for track in self.tracks.near(frame)
                  if (found := self.tracks.box_at(track, frame)) is not None]
        n_classes = len(self.model.names)
        keyframe = KeyframePeople(
            time=time_s, frame=frame, track_ids=[track for track, _ in people],
            boxes=np.asarray([found.box for _, found in people], dtype=np.float64).reshape(-1, 4),
            sources=[found.source for _, found in people],
            detector_scores=np.asarray([found.score for _, found in people], dtype=np.float64),
            actions=np.full((len(people), n_classes), np.nan, dtype=np.float32))
        self.done.append(keyframe)
        if not people:
            return
        clip: KeyframeClip = keyframe_clip(time_s, frame, last_frame)
        with self.watch.phase("classify"):
            item = self.model.item(clip, frames, keyframe.boxes, len(self.done) - 1)
        self.batch.append((keyframe, item))
        if len(self.batch) >= self.model.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.batch:
            return
        with self.watch.phase("classify"):
            scores = self.model.classify([item for _, item in self.batch])
        for keyframe, item in self.batch:
            keyframe.actions = scores[item["element_index"]]
        self.batch = []


def analyse_video(video: Path, model: ActionModel, feed: BoxFeed, tracker: PersonTracker | None,
                  settings: DemoSettings, video_size: tuple[int, int],
                  rate: tuple[float | None, float | None] = (None, None)) -> Analysis:
    """First pass: people, tracks and actions of a video, decoded once in a sliding window.

    Frames come from ffmpeg at 25 fps and 320x180 (the filters and pixels of ``tools.extract_frames``),
    in RGB. The detector (or the given boxes) sees each frame that has boxes to offer, the tracker
    names them, and keyframe t (frame ``round(t * 25) + 1``) is classified once the frames of its
    window and the observations its boxes may be interpolated from have arrived. Only frames a
    waiting keyframe may still read are kept: memory does not grow with the video's length.

    Args:
        video: the video file.
        model: the action model.
        feed: the boxes (detector or given).
        tracker: assigns track ids to boxes that have none (None when the feed carries ids).
        settings: the track rule (``hold_seconds``, ``max_gap_seconds``; ``TrackStore``) and ``progress``
            (a bar over the decoded frames).
        video_size: ``(width, height)`` of the video.
        rate: its own frame rate and duration (s) when known (the duration sizes the progress bar).

    Returns:
        The analysis (every keyframe, every track, the time per phase).
    """
    fps, seconds = rate
    estimate = None if seconds is None else int(round(seconds * FRAME_RATE))
    hold, max_gap = (int(round(span * FRAME_RATE)) for span in (settings.hold_seconds, settings.max_gap_seconds))
    tracks = TrackStore(hold=hold, max_gap=max_gap)
    analysis = Analysis(video_size=video_size, video_fps=fps, frames=0, keyframes=[], tracks=tracks,
                        names=model.names)
    watch = analysis.watch
    classifier = _Classifier(model, tracks, watch)
    lag = max(HALF_WINDOW, hold, max_gap)
    next_time, next_frame = 0, 1
    frames: dict[int, np.ndarray] = {}
    _, decoded = decode_frames(video, fps=FRAME_RATE, pixel_format="rgb24", size=FRAME_SIZE)
    number = 0
    with tqdm(total=estimate, unit="frame", desc="analyse", disable=not settings.progress) as bar:
        while True:
            with watch.phase("decode"):
                rgb = next(decoded, None)
            if rgb is None:
                break
            number += 1
            frames[number] = rgb
            _observe(feed, tracker, tracks, number, rgb, analysis)
            if number == next_frame:
                classifier.waiting.append((next_time, next_frame))
                next_time += KEYFRAME_SECONDS
                next_frame = int(round(next_time * FRAME_RATE)) + 1
            while classifier.waiting and number >= classifier.waiting[0][1] + lag:
                classifier.ready(*classifier.waiting.popleft(), frames, None)
            for old in [key for key in frames if key < classifier.oldest_needed(next_frame)]:
                del frames[old]
            bar.update(1)
    while classifier.waiting:
        classifier.ready(*classifier.waiting.popleft(), frames, number)
    classifier.flush()
    analysis.frames, analysis.keyframes = number, classifier.done
    if number == 0:
        raise ValueError(f"{video}: ffmpeg decoded no frame")
    if feed.given and feed.last_given_frame() > number:
        late = sum(len(rows) for frame, rows in feed.given.items() if frame > number)
        LOGGER.warning("%d given box(es) lie after the end of the video (%d frames at 25 fps): ignored", late, number)
    return analysis


def _observe(feed: BoxFeed, tracker: PersonTracker | None, tracks: TrackStore, number: int, rgb: np.ndarray,
             analysis: Analysis) -> None:
    """Boxes of one frame into the tracks (ids from the feed, or from the tracker)."""
    bgr = np.ascontiguousarray(rgb[..., ::-1])
    with analysis.watch.phase("detect"):
        observed = feed.observe(number, bgr)
    if observed is None:
        return
    boxes, scores, ids = observed
    if ids is None:
        with analysis.watch.phase("track"):
            ids = tracker.update(boxes, np.nan_to_num(scores, nan=1.0), bgr)
    analysis.observations += len(boxes)
    for track, box, score in zip(ids.tolist(), boxes, scores.tolist()):
        if track >= 0:
            tracks.add(int(track), number, box, score)
