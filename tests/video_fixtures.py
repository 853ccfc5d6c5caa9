"""Generated clips for the video demo's tests: people who cross each other, rendered by the synthetic
generator, with their true box at every frame (the generator knows who is who)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from datasets.synthetic_motion import PersonSpec
from datasets.synthetic_render import VideoPlan, encode_video, frame_joints, person_box

CROSS_SECONDS = 8


def crossing_plan(width: int = 320, height: int = 180, seconds: int = CROSS_SECONDS, fps: int = 25) -> VideoPlan:
    """Three people: two walkers crossing each other mid-clip (the nearer one hides the other), and
    one person watching at the side. Person ids 1, 2, 3."""
    scale = height / 360
    near = PersonSpec(person_id=1, primary="walking", arm_action=None, x=0.5 * width, y=0.9 * height,
                      height=190 * scale, facing=1, velocity=0.1 * width, t_ref=seconds / 2, freq=1.0,
                      colours=((200, 40, 40), (40, 40, 90), (220, 180, 150), (30, 20, 10)))
    far = PersonSpec(person_id=2, primary="walking", arm_action="waving", x=0.5 * width, y=0.8 * height,
                     height=160 * scale, facing=-1, velocity=-0.1 * width, t_ref=seconds / 2, freq=0.9,
                     colours=((40, 90, 210), (90, 60, 30), (189, 134, 93), (25, 18, 12)))
    watcher = PersonSpec(person_id=3, primary="watching", arm_action="clapping", x=0.12 * width, y=0.78 * height,
                         height=150 * scale, facing=1,
                         colours=((60, 170, 60), (50, 50, 50), (241, 204, 176), (120, 80, 40)))
    n_frames = seconds * fps
    return VideoPlan(video_id="CROSSING", width=width, height=height, fps=fps, n_frames=n_frames,
                     persons=(near, far, watcher), props=(), shake=np.zeros((n_frames, 2), dtype=np.int64),
                     background_seed=7, pad=6)


def true_boxes(plan: VideoPlan) -> np.ndarray:
    """``[n_frames, persons, 4]`` normalised boxes of each person (plan order) at each frame, clipped."""
    scale = np.array([plan.width, plan.height, plan.width, plan.height], dtype=np.float64)
    boxes = np.array([[person_box(spec, frame_joints(plan, spec, index)) for spec in plan.persons]
                      for index in range(plan.n_frames)]) / scale
    return np.clip(boxes, 0.0, 1.0)


def write_crossing_clip(folder: Path, **sizes: int) -> tuple[Path, VideoPlan]:
    plan = crossing_plan(**sizes)
    path = folder / f"{plan.video_id}.mp4"
    encode_video(plan, path)
    return path, plan


def iou(a: np.ndarray, b: np.ndarray) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0.0, x2 - x1) * max(0.0, y2 - y1)
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union if union > 0 else 0.0


def detections_csv(path: Path, plan: VideoPlan, every: int = 5, seed: int = 0, hide_iou: float = 0.4) -> Path:
    """A boxes csv (``time_s,x1,y1,x2,y2``, normalised, no track id) that looks like a detector's output:
    every ``every``-th frame, boxes jittered by a few percent of their size, and the farther of two
    people left out while the nearer one covers it (IoU above ``hide_iou``), as detectors miss them."""
    rng = np.random.default_rng(seed)
    boxes = true_boxes(plan)
    depth = [spec.y for spec in plan.persons]
    lines = ["time_s,x1,y1,x2,y2"]
    for index in range(0, plan.n_frames, every):
        for person, box in enumerate(boxes[index]):
            hidden = any(depth[other] > depth[person] and iou(box, boxes[index][other]) > hide_iou
                         for other in range(len(plan.persons)) if other != person)
            if hidden:
                continue
            size = np.array([box[2] - box[0], box[3] - box[1]] * 2)
            noisy = np.clip(box + rng.normal(0.0, 0.02, 4) * size, 0.0, 1.0)
            lines.append(f"{index / plan.fps:.4f}," + ",".join(f"{v:.4f}" for v in noisy))
    path.write_text("\n".join(lines) + "\n")
    return path


def identity_switches(report: dict, plan: VideoPlan, min_iou: float = 0.5) -> tuple[int, int, dict[int, list]]:
    """Count identity switches of the tracks in a video demo report against the true people.

    At each keyframe, true people and reported people are matched one to one, greedily by IoU
    (highest first, at least ``min_iou``). A switch is a true person's track id changing from one
    matched keyframe to its next.

    Returns:
        ``(switches, matched person-keyframes, {person index: [(time, track id), ...]})``.
    """
    boxes = true_boxes(plan)
    history: dict[int, list] = {}
    for keyframe in report["keyframes"]:
        truth = boxes[min(keyframe["frame"] - 1, plan.n_frames - 1)]
        pairs = sorted(((iou(true_box, np.array(p["box"])), person, p["track_id"])
                        for person, true_box in enumerate(truth) for p in keyframe["people"]), reverse=True)
        used_people, used_tracks = set(), set()
        for overlap, person, track in pairs:
            if overlap < min_iou or person in used_people or track in used_tracks:
                continue
            used_people.add(person)
            used_tracks.add(track)
            history.setdefault(person, []).append((keyframe["time"], track))
    switches = sum(1 for seq in history.values() for a, b in zip(seq, seq[1:]) if a[1] != b[1])
    return switches, sum(len(seq) for seq in history.values()), history
