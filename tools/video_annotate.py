"""The video demo's pipeline: frames, person boxes, action scores, drawing and the annotated mp4."""
from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader

from config import load_config, to_dict
from datasets.ava import AVADataset, collate_batch
from datasets.ffmpeg_io import decode_frames, encode_mp4
from datasets.synthetic import HALF_WINDOW, load_cw_classes
from datasets.transforms import build_spatial_views, build_temporal
from detect.infer import detect_to_proposals
from engine.train_loop import move_batch
from formats.annotation_pkl import classes_from_label_map, load_annotation_pkl, save_annotation_pkl
from formats.atomic import write_text_atomic
from formats.pbtxt import read_label_map
from models.build import build_model
from models.weights import load_model_checkpoint, load_state_dict_strict
from tools.extract_frames import extract_video, is_extracted
from tools.video_demo import FRAME_RATE, FRAME_SIZE, PALETTE, TOP_K, DemoInputs

# The video demo logs under one name, whichever of its modules logs.
LOGGER = logging.getLogger("tools.video_demo")


@dataclass
class KeyframeActions:
    """The boxes of one keyframe and the action probabilities of each.

    Attributes:
        time: keyframe time in seconds.
        mid_frame: frame number (1-based, 25 fps) of the keyframe.
        boxes: ``[N, 4]`` normalised (x1, y1, x2, y2).
        detector_scores: ``[N]`` detector confidences (NaN where the boxes carry none).
        actions: ``[N, C]`` action probabilities (model activation), C = number of classes.
    """

    time: int
    mid_frame: int
    boxes: np.ndarray
    detector_scores: np.ndarray
    actions: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.float32))

def keyframe_elements(video_id: str, n_frames: int, fps: int = FRAME_RATE) -> list[dict]:
    """One keyframe per second of a video, as pkl elements without boxes.

    Keyframe ``t`` (seconds, from 0) is frame ``round(t * fps) + 1``. Its clip window spans up to
    ``HALF_WINDOW`` frames either side (as the demo dataset's annotations), shortened symmetrically
    near the ends of the video: the dataset centres a clip on ``start_frame + n_frames // 2``
    (docs/numerics.md quirk 1), which must stay the keyframe, and every frame read must exist.

    Args:
        video_id: the frames' folder name.
        n_frames: frames extracted (numbered 1..n_frames).
        fps: frame rate of the extracted frames.

    Returns:
        Elements in time order with ``labels: []``.
    """
    elements = []
    for time in range(0, n_frames // fps + 1):
        keyframe = int(round(time * fps)) + 1
        if keyframe > n_frames:
            break
        half = min(HALF_WINDOW, keyframe - 1, n_frames - keyframe)
        elements.append({"video": video_id, "time": time, "start_frame": keyframe - half,
                         "n_frames": max(1, 2 * half), "mid_frame": keyframe, "format_str": f"{video_id}_%06d.png",
                         "frame_rate": fps, "labels": []})
    return elements


def default_classes(label_map: str | Path | None = None) -> list[dict]:
    """The pkl ``classes`` list of a label map, or of the 50 Chaotic World classes."""
    return classes_from_label_map(read_label_map(label_map) if label_map is not None else load_cw_classes())


def boxes_from_pkl(boxes_pkl: str | Path, video_id: str, out_pkl: Path) -> int:
    """Copy the elements of ``video_id`` from an annotation/proposals pkl to ``out_pkl`` (boxes given).

    Returns:
        The number of elements copied.

    Raises:
        ValueError: the pkl has no element of that video.
    """
    loaded = load_annotation_pkl(boxes_pkl)
    elements = [element for element in loaded.elements if element["video"] == video_id]
    if not elements:
        videos = sorted({element["video"] for element in loaded.elements})
        raise ValueError(f"{boxes_pkl} has no keyframe of video {video_id!r} (its videos: {videos[:5]})")
    save_annotation_pkl(out_pkl, elements, loaded.classes)
    return len(elements)


def detect_keyframes(detector: Path, video_id: str, n_frames: int, frames_root: Path, work: Path, conf: float,
                     device: str, classes: list[dict], imgsz: int | None = None) -> Path:
    """Run the person detector on one keyframe per second; returns the proposals pkl path."""
    keyframes = work / "keyframes.pkl"
    save_annotation_pkl(keyframes, keyframe_elements(video_id, n_frames), classes)
    proposals = work / "proposals.pkl"
    stats = detect_to_proposals(detector, keyframes, frames_root, proposals, conf=conf, imgsz=imgsz, device=device,
                                resume=False, progress=False)
    LOGGER.info("detector: %d keyframes, %d boxes, %d keyframes without a box", stats["keyframes"],
                stats["boxes"], stats["empty_keyframes"])
    return proposals


def choose_device(device: str = "auto") -> torch.device:
    """``'auto'`` -> the first CUDA GPU if any, else the CPU; other values as ``torch.device``."""
    if device == "auto":
        return torch.device("cuda:0" if torch.cuda.is_available() else "cpu")
    return torch.device(f"cuda:{device}" if device.isdigit() else device)


def load_action_model(config: str | Path, checkpoint: str | Path, device: torch.device):
    """Build the model of a config, load a training checkpoint into it strictly; returns ``(model, cfg)``."""
    cfg = load_config(config)
    model = build_model(cfg.model, cfg.loss)
    state = load_model_checkpoint(checkpoint)
    load_state_dict_strict(model, state["state_dict"], str(checkpoint))
    LOGGER.info("action model from %s, weights %s (epoch %d)", config, checkpoint, state["epoch"])
    return model.to(device).eval(), cfg


def predict_actions(config: str | Path, checkpoint: str | Path, proposals_pkl: Path, frames_root: Path,
                    device: torch.device) -> tuple[list[KeyframeActions], list[str]]:
    """Action probabilities of every box of a proposals pkl, with the config's evaluation transforms.

    Returns:
        ``(keyframes in pkl order, class names)``; class c of ``actions`` is ``names[c]``.

    Raises:
        ValueError: the model's number of classes differs from the pkl's.
    """
    model, cfg = load_action_model(config, checkpoint, device)
    dataset = AVADataset(frames_root, proposals_pkl,
                         build_spatial_views(cfg.val.augmentation.spatial, "val.augmentation.spatial"),
                         build_temporal(cfg.val.augmentation.temporal, "val.augmentation.temporal"), training=False)
    names = [str(entry["name"]) for entry in dataset.classes]
    keyframes = []
    for element in dataset.elements:
        boxes = np.asarray([entry["bounding_box"] for entry in element["labels"]], dtype=np.float64).reshape(-1, 4)
        scores = np.asarray([entry.get("score", np.nan) for entry in element["labels"]], dtype=np.float64)
        actions = np.full((len(boxes), len(names)), np.nan, dtype=np.float32)
        keyframes.append(KeyframeActions(int(element["time"]), int(element["mid_frame"]), boxes, scores, actions))
    loader = DataLoader(dataset, batch_size=cfg.val.batch_size, shuffle=False, num_workers=0,
                        collate_fn=collate_batch)
    with torch.no_grad():
        for batch in loader:
            out = model(move_batch(batch, device), evaluate=True)
            if len(out["filenames"]) == 0:
                continue
            probs = model.activation(out["logits"].float()).cpu().numpy()
            if probs.shape[1] != len(names):
                raise ValueError(f"{config}: the model predicts {probs.shape[1]} classes but {proposals_pkl} "
                                 f"lists {len(names)}")
            for row, (element, box) in enumerate(zip(out["element_index"], out["box_index"])):
                keyframes[int(element)].actions[int(box)] = probs[row]
    return keyframes, names


def top_actions(scores: np.ndarray, names: Sequence[str], k: int = TOP_K) -> list[tuple[str, float]]:
    """The ``k`` most probable actions of one box, highest first (ties: lower class index first).

    Args:
        scores: ``[C]`` probabilities; NaN (a box the model dropped) gives no action.
        names: ``C`` class names.
        k: how many.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0 or np.isnan(scores).all():
        return []
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:k]
    return [(str(names[index]), float(scores[index])) for index in order]


def label_lines(actions: Sequence[tuple[str, float]], detector_score: float | None = None) -> list[str]:
    """Text drawn beside a box: ``'name 0.87'`` per action, after ``'person 0.93'`` when the score is known."""
    lines = [] if detector_score is None or np.isnan(detector_score) else [f"person {detector_score:.2f}"]
    return lines + [f"{name} {score:.2f}" for name, score in actions]


def draw_keyframe(frame: np.ndarray, keyframe: KeyframeActions, names: Sequence[str], k: int = TOP_K) -> np.ndarray:
    """Draw the boxes of a keyframe with their top-``k`` actions on ``frame`` (``[H, W, 3]`` uint8, in place).

    Line widths and text size follow the frame height, so 320x180 and full-HD frames both read well.
    """
    height, width = frame.shape[:2]
    font_scale, thickness = max(0.3, height / 720.0), max(1, round(height / 360))
    line_height = int(round(22 * font_scale)) + 2
    corners = [[int(round(v * size)) for v, size in zip(box, (width, height, width, height))] for box in keyframe.boxes]
    for index, (x1, y1, x2, y2) in enumerate(corners):
        cv2.rectangle(frame, (x1, y1), (x2, y2), PALETTE[index % len(PALETTE)], thickness)
    # Labels after every box, so that no box line crosses a label.
    for index, (x1, y1, _, _) in enumerate(corners):
        colour = PALETTE[index % len(PALETTE)]
        lines = label_lines(top_actions(keyframe.actions[index], names, k), float(keyframe.detector_scores[index]))
        # Text above the box when it fits, otherwise inside its top edge.
        top = y1 - line_height * len(lines) if y1 - line_height * len(lines) >= 0 else y1 + 1
        for row, text in enumerate(lines):
            (text_w, _), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, 1)
            y = top + row * line_height
            cv2.rectangle(frame, (x1, y), (x1 + text_w + 4, y + line_height), colour, cv2.FILLED)
            cv2.putText(frame, text, (x1 + 2, y + line_height - base - 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                        (0, 0, 0), 1, cv2.LINE_AA)
    return frame


def frame_schedule(mid_frames: Sequence[int], n_frames: int, fps: int = FRAME_RATE) -> list[int | None]:
    """Which keyframe each output frame shows: the one within the second around it, nearest first.

    Args:
        mid_frames: keyframe frame numbers (1-based).
        n_frames: output frames (numbered 1..n_frames).
        fps: frames per second.

    Returns:
        ``n_frames`` entries: an index into ``mid_frames``, or None (no keyframe within half a second).
    """
    before, after = fps // 2, fps - fps // 2 - 1  # 12 and 12 frames at 25 fps: 25 frames per keyframe
    schedule: list[int | None] = [None] * n_frames
    distance = [n_frames + fps] * n_frames
    for index, mid in enumerate(mid_frames):
        for frame in range(max(1, mid - before), min(n_frames, mid + after) + 1):
            if abs(frame - mid) < distance[frame - 1]:
                schedule[frame - 1], distance[frame - 1] = index, abs(frame - mid)
    return schedule


def read_video_frames(video: Path, fps: int = FRAME_RATE) -> tuple[tuple[int, int], Iterator[np.ndarray]]:
    """Decode a video at ``fps`` (ffmpeg's fps filter, as the frame extraction), original size, BGR.

    Returns:
        ``((width, height), frames)``; ``frames`` yields ``[H, W, 3]`` uint8 arrays.
    """
    return decode_frames(video, fps=fps, pixel_format="bgr24")


def read_extracted_frames(folder: Path, video_id: str) -> tuple[tuple[int, int], Iterator[np.ndarray]]:
    """The extracted PNG frames of a video in frame order, BGR; returns ``((width, height), frames)``."""
    paths = sorted(folder.glob(f"{video_id}_*.png"))
    first = cv2.imread(str(paths[0]), cv2.IMREAD_COLOR)
    return (first.shape[1], first.shape[0]), (cv2.imread(str(path), cv2.IMREAD_COLOR) for path in paths)


def _annotated(frames: Iterable[np.ndarray], keyframes: list[KeyframeActions], names: Sequence[str],
               schedule: list[int | None]) -> Iterator[np.ndarray]:
    for number, frame in enumerate(frames, start=1):
        shown = schedule[number - 1] if number <= len(schedule) else None
        if shown is not None:
            draw_keyframe(frame, keyframes[shown], names)
        yield frame


def _report(inputs: DemoInputs, out: Path, keyframes: list[KeyframeActions], names: Sequence[str],
            figures: dict) -> dict:
    """JSON-ready record of the run: inputs, counts and, per keyframe and box, the top actions."""
    return {
        "video": str(inputs.video), "out": str(out), "boxes_from": str(inputs.boxes_pkl or inputs.detector),
        "config": str(inputs.config), "checkpoint": str(inputs.checkpoint), **figures,
        "keyframes": [{"time": item.time, "mid_frame": item.mid_frame,
                       "boxes": [{"box": [round(float(v), 4) for v in box],
                                  "detector_score": None if np.isnan(score) else round(float(score), 4),
                                  "actions": [[name, round(p, 4)] for name, p in top_actions(actions, names)]}
                                 for box, score, actions in zip(item.boxes, item.detector_scores, item.actions)]}
                      for item in keyframes],
    }


def run_video_demo(inputs: DemoInputs, out: str | Path, work: str | Path | None = None, conf: float = 0.3,
                   device: str = "auto", display: str = "original", label_map: str | Path | None = None,
                   imgsz: int | None = None) -> dict:
    """Annotate a video with person boxes and their top-3 actions; writes ``out`` (mp4) and ``out``.json.

    Args:
        inputs: video, action config and checkpoint, and either a detector ``.pt`` or a pkl of boxes
            (``boxes_pkl``: its keyframes of this video are used as they are, no detector runs).
        out: the mp4 to write (atomically).
        work: folder for the extracted frames and pkls (kept); default: a temporary folder.
        conf: detector confidence threshold.
        device: ``'auto'``, ``'cpu'``, ``'0'``... for the detector and the action model.
        display: ``'original'`` draws on the video's own frames (its size), ``'frames'`` on the
            320x180 frames the models read.
        label_map: pbtxt of the action classes (default: the 50 Chaotic World classes).
        imgsz: detector inference size (default: the frame size, 320x180; pass the training size of
            a detector trained smaller, as the demo's).

    Returns:
        The report (also saved as ``<out>.json``): counts, timings-free figures, per-keyframe actions.

    Raises:
        FileNotFoundError: a missing input.
        ValueError: neither or both of detector and boxes pkl, an unknown ``display``.
    """
    if (inputs.detector is None) == (inputs.boxes_pkl is None):
        raise ValueError("give exactly one of a detector (.pt) and a boxes pkl")
    if display not in ("original", "frames"):
        raise ValueError(f"display must be 'original' or 'frames', got {display!r}")
    for path in (inputs.video, inputs.config, inputs.checkpoint, inputs.detector or inputs.boxes_pkl):
        if not Path(path).is_file():
            raise FileNotFoundError(f"video demo input not found: {path}")
    out = Path(out)
    with contextlib.ExitStack() as stack:
        folder = Path(work) if work is not None else Path(stack.enter_context(
            tempfile.TemporaryDirectory(prefix="video_demo_")))
        return _run(inputs, out, folder, {"conf": conf, "device": device, "display": display,
                                          "label_map": label_map, "imgsz": imgsz})


def _run(inputs: DemoInputs, out: Path, work: Path, options: dict) -> dict:
    """``run_video_demo`` in a given work folder; ``options`` holds its remaining arguments."""
    video_id = inputs.video.stem
    frames_root = work / "frames"
    if not is_extracted(frames_root, video_id):
        extract_video(inputs.video, frames_root, fps=FRAME_RATE, width=FRAME_SIZE[0], height=FRAME_SIZE[1])
    n_frames = sum(1 for _ in (frames_root / video_id).glob(f"{video_id}_*.png"))
    torch_device = choose_device(options["device"])
    if inputs.boxes_pkl is not None:
        proposals = work / "boxes.pkl"
        boxes_from_pkl(inputs.boxes_pkl, video_id, proposals)
    else:
        detector_device = "cpu" if torch_device.type == "cpu" else str(torch_device.index or 0)
        proposals = detect_keyframes(inputs.detector, video_id, n_frames, frames_root, work, options["conf"],
                                     detector_device, default_classes(options["label_map"]), options["imgsz"])
    keyframes, names = predict_actions(inputs.config, inputs.checkpoint, proposals, frames_root, torch_device)
    schedule = frame_schedule([item.mid_frame for item in keyframes], n_frames)
    size, frames = (read_video_frames(inputs.video) if options["display"] == "original"
                    else read_extracted_frames(frames_root / video_id, video_id))
    written = encode_mp4(_annotated(frames, keyframes, names, schedule), size, out, FRAME_RATE,
                         pixel_format="bgr24", faststart=True)
    if written != n_frames:
        LOGGER.warning("%s: decoded %d frames for display but extracted %d", inputs.video, written, n_frames)
    figures = {"frames": written, "size": list(size), "keyframes_count": len(keyframes),
               "boxes": int(sum(len(item.boxes) for item in keyframes))}
    report = _report(inputs, out, keyframes, names, figures)
    write_text_atomic(out.with_suffix(".json"), json.dumps(report, indent=2) + "\n")
    LOGGER.info("wrote %s: %d frames %dx%d, %d keyframes, %d boxes", out, written, size[0], size[1],
                len(keyframes), figures["boxes"])
    return report
