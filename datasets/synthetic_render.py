"""Drawing and encoding of the synthetic Chaotic World clips: backgrounds, stick figures, props, shake, mp4."""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from datasets.synthetic_motion import HEAD_RADIUS, J, PersonSpec, person_joints
from datasets.ffmpeg_io import encode_mp4

# Stroke widths in units of the person's height H.
TORSO_WIDTH = 0.16
LEG_WIDTH = 0.085
UPPER_ARM_WIDTH = 0.065
FOREARM_WIDTH = 0.055
SHOE_LENGTH = 0.06
# Largest half stroke width: the margin a person's box adds around its joints.
BOX_MARGIN = TORSO_WIDTH / 2
# cv2 draws with sub-pixel precision through fixed-point coordinates (4 fractional bits).
_SHIFT = 4
_SCALE = 1 << _SHIFT
# Limbs on the far side of the body are drawn darker, which reads as depth.
_FAR_SHADE = 0.72


@dataclass(frozen=True)
class Prop:
    """A static foreground object drawn over the people (occluder).

    Attributes:
        kind: ``'pole'`` (vertical bar over the full height) or ``'barrier'`` (striped block on the ground).
        box: (x1, y1, x2, y2) in pixels, frame coordinates without camera shake.
        colour: RGB main colour.
        stripe: RGB stripe colour (barrier) or highlight (pole).
    """

    kind: str
    box: tuple[float, float, float, float]
    colour: tuple[int, int, int]
    stripe: tuple[int, int, int]


@dataclass(frozen=True)
class VideoPlan:
    """Everything needed to render one clip and annotate it.

    Attributes:
        video_id: 8-character id (also the file and frame-folder name).
        width, height: frame size in pixels.
        fps: frames per second.
        n_frames: frames in the video (frame i, 0-based, shows time i / fps).
        persons: the people, any order (drawn far to near by their ground y).
        props: foreground objects, drawn last.
        shake: ``[n_frames, 2]`` int camera offsets (dx, dy) in pixels, within ``[-pad, pad]``.
        background_seed: seed of the background texture.
        pad: margin of the background around the frame (room for the shake).
    """

    video_id: str
    width: int
    height: int
    fps: int
    n_frames: int
    persons: tuple[PersonSpec, ...]
    props: tuple[Prop, ...]
    shake: np.ndarray
    background_seed: int
    pad: int


def _muted_colour(rng: np.random.Generator, low: float, high: float, saturation: float) -> np.ndarray:
    grey = rng.uniform(low, high)
    tint = rng.uniform(-1.0, 1.0, size=3) * saturation * grey
    return np.clip(grey + tint, 0, 255)


def _smooth_noise(rng: np.random.Generator, height: int, width: int, cells: int, amplitude: float) -> np.ndarray:
    """Low-frequency noise ``[height, width, 1]``: a coarse random grid upsampled bicubically."""
    coarse = rng.uniform(-amplitude, amplitude, size=(cells, max(2, cells * width // height))).astype(np.float32)
    return cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC)[:, :, None]


def make_background(seed: int, width: int, height: int, pad: int) -> np.ndarray:
    """A textured scene background, different for every seed.

    Upper part: a wall or sky with a gradient and building blocks with windows; lower part: ground
    with tiles or blotchy texture; plus smooth and fine noise everywhere.

    Args:
        seed: texture seed.
        width, height: frame size in pixels.
        pad: margin added on every side (room for camera shake).

    Returns:
        ``[height + 2 pad, width + 2 pad, 3]`` uint8 RGB.
    """
    rng = np.random.default_rng(seed)
    rows, cols = height + 2 * pad, width + 2 * pad
    horizon = int(rows * rng.uniform(0.3, 0.5))
    top, ground = _muted_colour(rng, 110, 210, 0.25), _muted_colour(rng, 70, 160, 0.2)
    gradient = np.linspace(0.0, 1.0, rows, dtype=np.float32)[:, None, None]
    image = np.empty((rows, cols, 3), np.float32)
    image[:horizon] = top * (1.0 - 0.3 * gradient[:horizon])
    image[horizon:] = ground * (0.85 + 0.3 * gradient[horizon:])
    for _ in range(int(rng.integers(3, 8))):
        x1 = int(rng.uniform(-0.1, 0.9) * cols)
        block_w, block_h = int(rng.uniform(0.1, 0.3) * cols), int(rng.uniform(0.3, 1.0) * horizon)
        colour = _muted_colour(rng, 60, 200, 0.3)
        cv2.rectangle(image, (x1, horizon - block_h), (x1 + block_w, horizon), colour.tolist(), -1)
        window = (colour * 0.55).tolist()
        for wy in range(horizon - block_h + 8, horizon - 16, 22):
            for wx in range(x1 + 8, x1 + block_w - 12, 20):
                cv2.rectangle(image, (wx, wy), (wx + 9, wy + 12), window, -1)
    if rng.random() < 0.5:
        step = int(rng.integers(24, 48))
        line = (ground * 0.7).tolist()
        for y in range(horizon, rows, step):
            cv2.line(image, (0, y), (cols, y), line, 2)
        for x in range(int(rng.integers(0, step)), cols, step):
            cv2.line(image, (x, horizon), (x, rows), line, 2)
    else:
        image[horizon:] += _smooth_noise(rng, rows - horizon, cols, 12, 30.0)
    image += _smooth_noise(rng, rows, cols, 5, 18.0)
    image += rng.normal(0.0, 4.0, size=(rows, cols, 1)).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _point(xy: np.ndarray) -> tuple[int, int]:
    return int(round(xy[0] * _SCALE)), int(round(xy[1] * _SCALE))


def _line(canvas: np.ndarray, start: np.ndarray, end: np.ndarray, colour: tuple, width: float) -> None:
    cv2.line(canvas, _point(start), _point(end), colour, max(1, int(round(width))), cv2.LINE_AA, _SHIFT)


def _shade(colour: tuple[int, int, int], factor: float) -> tuple[int, int, int]:
    return tuple(int(c * factor) for c in colour)


def _draw_limbs(canvas: np.ndarray, spec: PersonSpec, joints: np.ndarray, side: int, shade: float) -> None:
    shirt, trousers, skin = (_shade(c, shade) for c in spec.colours[:3])
    size = spec.height
    shoe_colour = _shade((35, 30, 30), shade)
    hip, knee, foot = joints[J[f"hip{side}"]], joints[J[f"knee{side}"]], joints[J[f"foot{side}"]]
    _line(canvas, hip, knee, trousers, LEG_WIDTH * size)
    _line(canvas, knee, foot, trousers, LEG_WIDTH * size)
    toe = foot + np.array([spec.facing * SHOE_LENGTH * size, 0.0])
    _line(canvas, foot, toe, shoe_colour, LEG_WIDTH * size * 0.8)
    shoulder, elbow, hand = joints[J[f"shoulder{side}"]], joints[J[f"elbow{side}"]], joints[J[f"hand{side}"]]
    _line(canvas, shoulder, elbow, shirt, UPPER_ARM_WIDTH * size)
    _line(canvas, elbow, hand, skin, FOREARM_WIDTH * size)
    cv2.circle(canvas, _point(hand), int(0.035 * size * _SCALE), skin, -1, cv2.LINE_AA, _SHIFT)


def draw_person(canvas: np.ndarray, spec: PersonSpec, joints: np.ndarray) -> None:
    """Draw one stick figure in place.

    Args:
        canvas: ``[H, W, 3]`` uint8 RGB frame (C-contiguous), modified in place.
        spec: the person (colours, size, facing).
        joints: ``[15, 2]`` pixel coordinates in this frame (shake already applied).
    """
    size = spec.height
    _draw_limbs(canvas, spec, joints, 0, _FAR_SHADE)
    shirt, _, skin, hair = spec.colours
    _line(canvas, joints[J["hip"]], joints[J["neck"]], shirt, TORSO_WIDTH * size)
    _draw_limbs(canvas, spec, joints, 1, 1.0)
    head, neck = joints[J["head"]], joints[J["neck"]]
    radius = HEAD_RADIUS * size
    cv2.circle(canvas, _point(head), int(radius * _SCALE), skin, -1, cv2.LINE_AA, _SHIFT)
    # Hair over the back and top of the head shows which way the person faces.
    up = math.degrees(math.atan2(head[1] - neck[1], head[0] - neck[0]))
    start, end = sorted((up - spec.facing * 110.0, up + spec.facing * 35.0))
    axes = (int(radius * _SCALE), int(radius * _SCALE))
    cv2.ellipse(canvas, _point(head), axes, 0.0, start, end, hair, -1, cv2.LINE_AA, _SHIFT)


def person_box(spec: PersonSpec, joints: np.ndarray) -> np.ndarray:
    """Pixel box ``[x1, y1, x2, y2]`` around everything drawn for a person (strokes, head, shoes)."""
    size = spec.height
    margin = BOX_MARGIN * size
    head = joints[J["head"]]
    toes = joints[[J["foot0"], J["foot1"]]] + np.array([spec.facing * SHOE_LENGTH * size, 0.0])
    low = np.minimum(joints.min(axis=0) - margin, head - HEAD_RADIUS * size)
    high = np.maximum(joints.max(axis=0) + margin, head + HEAD_RADIUS * size)
    low, high = np.minimum(low, toes.min(axis=0)), np.maximum(high, toes.max(axis=0))
    return np.concatenate([low, high])


def draw_prop(canvas: np.ndarray, prop: Prop, offset: np.ndarray) -> None:
    """Draw a foreground object, moved by the camera offset ``(dx, dy)`` (pixels)."""
    x1, y1, x2, y2 = (int(round(v)) for v in np.asarray(prop.box) - np.tile(offset, 2))
    cv2.rectangle(canvas, (x1, y1), (x2, y2), prop.colour, -1)
    if prop.kind == "barrier":
        for y in range(y1 + 6, y2, 16):
            cv2.rectangle(canvas, (x1, y), (x2, min(y + 7, y2)), prop.stripe, -1)
    else:
        cv2.line(canvas, (x1 + (x2 - x1) // 3, y1), (x1 + (x2 - x1) // 3, y2), prop.stripe, 2)


def frame_joints(plan: VideoPlan, spec: PersonSpec, index: int) -> np.ndarray:
    """Joints ``[15, 2]`` of a person in frame ``index`` (0-based), camera shake applied (pixels)."""
    return person_joints(spec, index / plan.fps) - plan.shake[index]


def render_frame(plan: VideoPlan, index: int, background: np.ndarray) -> np.ndarray:
    """Render frame ``index`` (0-based; time ``index / fps``).

    Args:
        plan: the clip.
        index: frame index, 0 <= index < plan.n_frames.
        background: ``make_background(plan.background_seed, plan.width, plan.height, plan.pad)``.

    Returns:
        ``[height, width, 3]`` uint8 RGB.
    """
    dx, dy = (int(v) for v in plan.shake[index])
    top, left = plan.pad + dy, plan.pad + dx
    canvas = background[top:top + plan.height, left:left + plan.width].copy()
    # Far people (higher up in the image) first, so nearer people occlude them.
    for spec in sorted(plan.persons, key=lambda person: (person.y, person.person_id)):
        draw_person(canvas, spec, frame_joints(plan, spec, index))
    for prop in plan.props:
        draw_prop(canvas, prop, plan.shake[index])
    return canvas


def encode_video(plan: VideoPlan, path: str | Path, crf: int = 20, threads: int = 1) -> None:
    """Render a clip and encode it as H.264 mp4 (yuv420p), written atomically (``encode_mp4``).

    Args:
        plan: the clip.
        path: destination ``.mp4``.
        crf: x264 constant rate factor.
        threads: x264 threads (0: ffmpeg chooses).

    Raises:
        RuntimeError: ffmpeg failed (its last stderr lines are included).
    """
    background = make_background(plan.background_seed, plan.width, plan.height, plan.pad)
    frames = (render_frame(plan, index, background) for index in range(plan.n_frames))
    encode_mp4(frames, (plan.width, plan.height), path, plan.fps, crf=crf, threads=threads)
