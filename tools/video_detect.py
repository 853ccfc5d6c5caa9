"""Who is where in the video demo: the YOLO person detector and ultralytics' own trackers (ByteTrack,
BoT-SORT), fed frame by frame as ``YOLO.track`` feeds them, so that given boxes are tracked the same way."""
from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

import numpy as np

from detect.infer import person_class_index
from detect.offline import prepare_ultralytics
from tools.video_options import UNTRAINED_DETECTOR, MissingPackageError

LOGGER = logging.getLogger("tools.video_demo")


def ultralytics_device(device: str) -> str:
    """ultralytics' spelling of a device: ``cpu``, or the CUDA index (``'0'``)."""
    if device in ("cpu", "auto") or device.isdigit():
        return device if device != "auto" else ("0" if _cuda() else "cpu")
    if device.startswith("cuda"):
        return device.partition(":")[2] or "0"
    return device


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


class PersonDetector:
    """A YOLO detector reduced to person boxes.

    Attributes:
        weights: the ``.pt`` read, or ``yolov8n.yaml`` (untrained).
        untrained: True for the untrained architecture.
        person: index of the person class.
    """

    def __init__(self, weights: Path | None, person_class: int | None, conf: float, imgsz: int | None,
                 device: str) -> None:
        """Load the detector from a local file (None: ``yolov8n.yaml`` built untrained, offline).

        Raises:
            FileNotFoundError: no such weight file (nothing is downloaded).
            ValueError: ``person_class`` is not one of its classes, or none is named 'person'.
        """
        if weights is not None and not Path(weights).is_file():
            raise FileNotFoundError(f"detector weights not found: {weights} (weights are read from local paths "
                                    "only; COCO's yolov8n.pt must be downloaded by you)")
        ultralytics = prepare_ultralytics()
        self.untrained = weights is None
        self.weights = str(weights) if weights is not None else UNTRAINED_DETECTOR
        self.model = ultralytics.YOLO(self.weights)
        names = dict(self.model.names)
        if person_class is None and self.untrained:
            person_class = 0  # yolov8n.yaml is COCO's architecture with unnamed classes: 0 is COCO's person
        if person_class is not None:
            if person_class not in names:
                raise ValueError(f"--person-class {person_class} is not a class of {self.weights}; "
                                 f"its classes are {_short(names)}")
            self.person = person_class
        else:
            try:
                self.person = person_class_index(names)
            except ValueError:
                raise ValueError(f"{self.weights} has no class named 'person' (its classes are {_short(names)}); "
                                 "say which class is the person with --person-class N") from None
        self.conf, self.imgsz, self.device = conf, imgsz, ultralytics_device(device)
        LOGGER.info("detector %s%s, person class %d (%r)", self.weights, " (untrained)" if self.untrained else "",
                    self.person, names[self.person])

    def detect(self, frame_bgr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Person boxes of one frame.

        Args:
            frame_bgr: ``[H, W, 3]`` uint8, BGR (ultralytics' order for arrays).

        Returns:
            ``([N, 4] boxes (x1, y1, x2, y2) normalised to the frame, [N] confidences)``, by
            descending confidence.
        """
        result = self.model.predict(frame_bgr, imgsz=self.imgsz or frame_bgr.shape[1], conf=self.conf,
                                    device=self.device, classes=[self.person], verbose=False)[0]
        boxes = result.boxes
        return (np.clip(boxes.xyxyn.cpu().numpy().astype(np.float64), 0.0, 1.0).reshape(-1, 4),
                boxes.conf.cpu().numpy().astype(np.float64).reshape(-1))


def _short(names: dict) -> str:
    items = list(names.items())
    shown = ", ".join(f"{key}: {value!r}" for key, value in items[:8])
    return "{" + shown + (f", ... ({len(items)} classes)" if len(items) > 8 else "") + "}"


class PersonTracker:
    """One of ultralytics' trackers with its shipped settings (``bytetrack.yaml``, ``botsort.yaml``).

    ``update`` does what ``YOLO.track`` does after each prediction (ultralytics'
    ``trackers.track.on_predict_postprocess_end``): the frame's boxes go to ``tracker.update`` and
    the tracks it returns name the box they matched. Taking the boxes rather than a model lets
    given boxes without ids be tracked by the same tracker. BoT-SORT runs without re-identification
    (its shipped ``with_reid: False``), with global motion compensation on the frames.
    """

    def __init__(self, name: str) -> None:
        """Raises: MissingPackageError: ``lap`` (the trackers' assignment solver) is not installed."""
        if importlib.util.find_spec("lap") is None:
            raise MissingPackageError("ultralytics' trackers need the 'lap' package, which is missing: reinstall "
                                      "the environment from requirements.txt (it pins lap), or give --boxes with "
                                      "a track_id column")
        prepare_ultralytics()
        from ultralytics.trackers.track import TRACKER_MAP
        from ultralytics.utils import YAML, IterableSimpleNamespace
        from ultralytics.utils.checks import check_yaml

        settings = IterableSimpleNamespace(**YAML.load(check_yaml(f"{name}.yaml")))
        self.name = name
        self.tracker = TRACKER_MAP[settings.tracker_type](args=settings)

    def update(self, boxes: np.ndarray, scores: np.ndarray, frame_bgr: np.ndarray) -> np.ndarray:
        """Track one frame's boxes.

        Args:
            boxes: ``[N, 4]`` (x1, y1, x2, y2) normalised.
            scores: ``[N]`` confidences (1.0 for given boxes).
            frame_bgr: ``[H, W, 3]`` uint8, the frame they are on (BoT-SORT's motion compensation).

        Returns:
            ``[N]`` track ids, -1 for a box no confirmed track holds at this frame (a new track is
            confirmed at its second observation, except on the first frame).
        """
        from ultralytics.engine.results import Boxes

        height, width = frame_bgr.shape[:2]
        pixels = np.asarray(boxes, dtype=np.float64).reshape(-1, 4) * np.array([width, height, width, height])
        data = np.column_stack([pixels, np.asarray(scores, dtype=np.float64), np.zeros(len(pixels))])
        tracks = self.tracker.update(Boxes(data.astype(np.float32), (height, width)), frame_bgr)
        ids = np.full(len(pixels), -1, dtype=np.int64)
        for row in np.asarray(tracks).reshape(-1, 8):
            ids[int(row[7])] = int(row[4])
        return ids
