"""What the video demo runs on and how: its inputs, settings and fixed rates (no heavy import, so that
``python -m tools.video_demo --help`` answers at once and every stage of the demo shares one record)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from formats.official_csv import FRAME_RATE

# Chaotic World frames: FRAME_RATE (25) fps, 320x180. The action model reads clips sampled at this rate
# and size (tools.extract_frames made its training frames so), the detector reads the same frames.
FRAME_SIZE = (320, 180)
# Keyframes: one per second (Chaotic World annotates at 1 fps), frame round(t * FRAME_RATE) + 1.
KEYFRAME_SECONDS = 1
TRACKERS = ("bytetrack", "botsort")
# The untrained detector of --random-weights when no --detector is given: built from ultralytics'
# own architecture file, offline (no weight file).
UNTRAINED_DETECTOR = "yolov8n.yaml"
UNTRAINED_STAMP = "UNTRAINED WEIGHTS"


class MissingPackageError(RuntimeError):
    """A package the run needs is not installed (the message says which and how to get it)."""


@dataclass(frozen=True)
class DemoInputs:
    """The files the video demo reads.

    Attributes:
        video: any video ffmpeg reads (any size, frame rate and length).
        config: action model config (YAML, the original schema).
        checkpoint: training checkpoint of that config; None with ``random_weights`` (random init)
            or when the config's top-level ``pretrain`` holds the weights (ACAR-Net's eval configs).
        detector: YOLO ``.pt`` (local path); None when the boxes are given or with ``random_weights``
            (then ``yolov8n.yaml`` untrained).
        boxes: csv of given boxes (``tools.video_boxes``), instead of a detector.
        boxes_pkl: annotation or proposals pkl whose keyframes of this video are the given boxes.
    """

    video: Path
    config: Path
    checkpoint: Path | None = None
    detector: Path | None = None
    boxes: Path | None = None
    boxes_pkl: Path | None = None


@dataclass(frozen=True)
class DemoSettings:
    """How the video demo runs (the command line's options; defaults are the documented ones).

    Attributes:
        conf: detector confidence threshold.
        imgsz: detector inference size in pixels; None = the frame width (320).
        person_class: index of the person class in the detector; None = the class named 'person'
            (COCO weights as they are), or the only class of a one-class detector.
        tracker: ``bytetrack`` or ``botsort`` (ultralytics' trackers, their shipped settings).
        detect_every: run the detector on every n-th frame at 25 fps (5: five times a second); the
            keyframes are always among them.
        hold_seconds: a track's box is held this long before and after an observation that has no
            neighbour to interpolate with.
        max_gap_seconds: two observations of a track at most this far apart are interpolated between.
        top_k: actions listed per person.
        device: ``auto``, ``cpu``, ``0``, ``cuda:1``...
        random_weights: untrained models (action model from the config with random init; detector
            ``yolov8n.yaml`` unless one is given), stamped ``UNTRAINED WEIGHTS``.
        seed: seed of the random init.
        label_map: pbtxt of the action classes (default: the 50 Chaotic World classes).
        display_height: height of the annotated video; None = the video's, clamped to 360..1080.
        boxes_time: the given boxes' first column: ``seconds`` or ``frame`` (0-based, at the
            video's own rate); None = from the csv's header, else seconds.
        boxes_normalised: the given boxes are in [0, 1] (else pixels of the video).
        progress: show progress bars.
    """

    conf: float = 0.3
    imgsz: int | None = None
    person_class: int | None = None
    tracker: str = "bytetrack"
    detect_every: int = 5
    hold_seconds: float = 0.5
    max_gap_seconds: float = 1.0
    top_k: int = 3
    device: str = "auto"
    random_weights: bool = False
    seed: int = 0
    label_map: Path | None = None
    display_height: int | None = None
    boxes_time: str | None = None
    boxes_normalised: bool = False
    progress: bool = True

    def check(self) -> None:
        """Raise ValueError naming the first setting out of range."""
        if self.tracker not in TRACKERS:
            raise ValueError(f"tracker must be one of {TRACKERS}, got {self.tracker!r}")
        if not 0.0 <= self.conf <= 1.0:
            raise ValueError(f"conf must lie in [0, 1], got {self.conf}")
        if self.detect_every < 1 or FRAME_RATE % self.detect_every:
            raise ValueError(f"detect_every must divide {FRAME_RATE} (so that keyframes are detected on), "
                             f"got {self.detect_every}")
        if self.top_k < 1:
            raise ValueError(f"top_k must be >= 1, got {self.top_k}")
        if self.hold_seconds < 0 or self.max_gap_seconds < 0:
            raise ValueError("hold_seconds and max_gap_seconds must be >= 0")
        if self.display_height is not None and not 64 <= self.display_height <= 4320:
            raise ValueError(f"display_height must lie in 64..4320, got {self.display_height}")
        if self.boxes_time not in (None, "seconds", "frame"):
            raise ValueError(f"boxes_time must be 'seconds' or 'frame', got {self.boxes_time!r}")
        if self.person_class is not None and self.person_class < 0:
            raise ValueError(f"person_class must be >= 0, got {self.person_class}")
