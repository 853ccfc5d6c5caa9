"""Planning of the synthetic Chaotic World clips: sizes, presets, who does what and where (no pixels).

``datasets.synthetic`` turns a plan into official-format annotation rows and rendered clips; this
module only draws the plan, deterministically for a seed. Kept apart from the writing side so that
each file has one concern (the generator was one 572-line file).
"""
from __future__ import annotations

import colorsys
from dataclasses import dataclass, replace

import numpy as np

from datasets.synthetic_motion import FIGHT_ACTIONS, PersonSpec
from datasets.synthetic_render import Prop, VideoPlan

# Excluded keyframes per split: this share of the keyframes, at least one.
EXCLUDED_SHARE = 0.05
# One person per clip, in turn, does one of these (primary, arm action), so that rare classes occur.
SHOWCASES = (("watching", "clapping"), ("running", None), ("walking", "waving"), ("kneeling", "raising"),
             ("injured", None), ("watching", "raising"), ("running", None), ("kneeling", None))
_ID_ALPHABET = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"))
_SKIN = ((241, 204, 176), (224, 172, 132), (189, 134, 93), (141, 94, 62), (96, 63, 43))
_HAIR = ((25, 18, 12), (70, 45, 25), (120, 80, 40), (205, 170, 100), (90, 90, 90))


@dataclass(frozen=True)
class SyntheticConfig:
    """Size and encoding of a synthetic dataset.

    Attributes:
        train_videos: clips in the train split (``chaos_train_1fps.csv``).
        val_videos: clips in the validation split (``chaos_test_1fps.csv``).
        seconds: clip length in seconds (keyframes at 1 .. seconds-1 s).
        width, height: frame size in pixels.
        fps: frame rate.
        crf: x264 constant rate factor (lower = better quality).
        workers: clips rendered and encoded at the same time.
    """

    train_videos: int
    val_videos: int
    seconds: int
    width: int = 640
    height: int = 360
    fps: int = 25
    crf: int = 20
    workers: int = 2


PRESETS = {
    "tiny": SyntheticConfig(train_videos=1, val_videos=1, seconds=3),
    "demo": SyntheticConfig(train_videos=40, val_videos=10, seconds=6),
}


@dataclass(frozen=True)
class DatasetPlan:
    """The whole dataset before rendering: clip plans per split and the excluded keyframes."""

    config: SyntheticConfig
    seed: int
    videos: dict[str, list[VideoPlan]]
    excluded: dict[str, set[tuple[str, int]]]


def resolve_config(preset: str = "demo", **overrides: int) -> SyntheticConfig:
    """A preset with some fields replaced.

    Args:
        preset: a key of PRESETS.
        **overrides: SyntheticConfig fields; ``None`` values are ignored.

    Raises:
        ValueError: unknown preset or field, or a size below its minimum.
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {sorted(PRESETS)}")
    fields = set(SyntheticConfig.__dataclass_fields__)
    unknown = set(overrides) - fields
    if unknown:
        raise ValueError(f"unknown generator option(s) {sorted(unknown)}; known: {sorted(fields)}")
    config = replace(PRESETS[preset], **{k: v for k, v in overrides.items() if v is not None})
    if config.seconds < 2:
        raise ValueError(f"seconds must be >= 2 (keyframes lie at 1 .. seconds-1), got {config.seconds}")
    if config.train_videos < 1 or config.val_videos < 1:
        raise ValueError("train_videos and val_videos must be >= 1")
    if config.width < 64 or config.height < 64 or config.width % 2 or config.height % 2:
        raise ValueError(f"width and height must be even and >= 64 (H.264 yuv420p), got {config.width}x{config.height}")
    if config.fps < 1 or config.workers < 1:
        raise ValueError(f"fps and workers must be >= 1, got {config.fps} and {config.workers}")
    return config


def make_video_ids(seed: int, count: int) -> list[str]:
    """``count`` distinct 8-character ids of uppercase letters and digits, deterministic for ``seed``."""
    rng = np.random.default_rng([seed, 7])
    ids: list[str] = []
    while len(ids) < count:
        candidate = "".join(rng.choice(_ID_ALPHABET, size=8))
        if candidate not in ids:
            ids.append(candidate)
    return ids


# ----------------------------------------------------------------------------------------------
# Planning: who does what, where (no pixels).
# ----------------------------------------------------------------------------------------------


def _colours(rng: np.random.Generator, hue: float) -> tuple[tuple[int, int, int], ...]:
    def rgb(h: float, s: float, v: float) -> tuple[int, int, int]:
        return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h % 1.0, s, v))

    shirt = rgb(hue, rng.uniform(0.55, 0.95), rng.uniform(0.6, 0.95))
    trousers = rgb(rng.random(), rng.uniform(0.3, 0.7), rng.uniform(0.25, 0.55))
    return shirt, trousers, _SKIN[rng.integers(len(_SKIN))], _HAIR[rng.integers(len(_HAIR))]


def _choose_roles(rng: np.random.Generator, clip_index: int) -> list[tuple[str, str | None]]:
    """(primary action, arm action) of the 2-6 people of a clip.

    Every other clip has a fighting pair (brawl and scuffle alternate) and every clip one person
    from SHOWCASES in turn, so each rendered class occurs in every split of 8 clips or more; the
    rest are drawn at random.
    """
    count = int(rng.integers(2, 7))
    roles: list[tuple[str, str | None]] = []
    if clip_index % 2 == 0:
        roles += [(FIGHT_ACTIONS[(clip_index // 2) % 2], None)] * 2
    roles.append(SHOWCASES[clip_index % len(SHOWCASES)])
    if rng.random() < 0.15:
        roles.append(("injured", None))
    while len(roles) < count:
        # Runners cross the frame in about two seconds, so they need a higher share to be seen as often.
        primary = str(rng.choice(["walking", "running", "watching", "kneeling"], p=[0.25, 0.3, 0.25, 0.2]))
        roles.append((primary, _arm_action(rng, primary)))
    return roles


def _arm_action(rng: np.random.Generator, primary: str) -> str | None:
    if primary == "watching" and rng.random() < 0.6:
        return str(rng.choice(["clapping", "waving", "raising"], p=[0.4, 0.3, 0.3]))
    if primary == "walking" and rng.random() < 0.4:
        return str(rng.choice(["waving", "raising"], p=[0.6, 0.4]))
    if primary == "kneeling" and rng.random() < 0.4:
        return "raising"
    return None


def _depth(rng: np.random.Generator, config: SyntheticConfig) -> tuple[float, float]:
    """Ground y (pixels) and standing height (pixels): lower in the frame = closer = taller."""
    near = rng.uniform(0.0, 1.0)
    ground_y = (0.62 + 0.35 * near) * config.height
    return ground_y, (0.3 + 0.3 * near) * config.height * rng.uniform(0.92, 1.08)


def _free_x(rng: np.random.Generator, config: SyntheticConfig, taken: list[float]) -> float:
    # The best of a few random spots: people spread out but may still overlap a little.
    candidates = rng.uniform(0.08, 0.92, size=8) * config.width
    if not taken:
        return float(candidates[0])
    gaps = [min(abs(c - x) for x in taken) for c in candidates]
    return float(candidates[int(np.argmax(gaps))])


def _common_fields(rng: np.random.Generator, config: SyntheticConfig, index: int, role: tuple[str, str | None],
                   hue0: float) -> dict:
    primary, arm_action = role
    # Oscillations stay at or below ~2.6 Hz so a clip sampled every 4th frame (6.25 fps) still sees them.
    arm_freq = rng.uniform(1.8, 2.6) if arm_action == "clapping" else rng.uniform(1.2, 2.0)
    return dict(person_id=index + 1, primary=primary, arm_action=arm_action,
                colours=_colours(rng, hue0 + 0.618 * index), phase=rng.uniform(0, 2 * np.pi),
                arm_freq=arm_freq, arm_phase=rng.uniform(0, 2 * np.pi),
                arm_onset=rng.uniform(-0.5, config.seconds - 1.5), wave_both=bool(rng.random() < 0.4))


def _plan_pair(rng: np.random.Generator, config: SyntheticConfig, first: dict, second: dict) -> list[PersonSpec]:
    """Two fighters facing each other at the same depth, sharing one rhythm (they alternate)."""
    primary = first["primary"]
    ground_y, height = _depth(rng, config)
    centre = rng.uniform(0.25, 0.75) * config.width
    gap = (0.55 if primary == "scuffle" else 0.62) * height
    freq = rng.uniform(0.8, 1.2) if primary == "scuffle" else rng.uniform(0.8, 1.1)
    role = int(rng.integers(2))
    shared = dict(primary=primary, arm_action=None, y=ground_y, height=height, freq=freq, phase=first["phase"])
    left = PersonSpec(**{**first, **shared}, x=centre - gap / 2, facing=1, role=role)
    right = PersonSpec(**{**second, **shared}, x=centre + gap / 2, facing=-1, role=1 - role)
    return [left, right]


def _plan_mover(rng: np.random.Generator, config: SyntheticConfig, fields: dict) -> PersonSpec:
    """A walker or runner crossing the frame; it passes ``x`` at time ``t_ref`` and may enter or leave."""
    walking = fields["primary"] == "walking"
    ground_y, height = _depth(rng, config)
    speed = (rng.uniform(0.55, 0.8) if walking else rng.uniform(2.0, 2.6)) * height
    # Stride frequency follows speed (about 0.82 H covered per gait cycle walking, 1.5 H running).
    freq = speed / height / (0.82 if walking else 1.5)
    facing = 1 if rng.random() < 0.5 else -1
    if walking:
        x_ref, t_ref = rng.uniform(0.15, 0.85), rng.uniform(0.5, config.seconds - 0.5)
    else:
        # A runner is near the middle close to a keyframe, so it is annotated at least once.
        x_ref, t_ref = rng.uniform(0.3, 0.7), rng.integers(1, config.seconds) + rng.uniform(-0.3, 0.3)
    return PersonSpec(**fields, x=x_ref * config.width, y=ground_y, height=height, facing=facing,
                      velocity=facing * speed, freq=freq, t_ref=float(t_ref))


def _plan_people(rng: np.random.Generator, config: SyntheticConfig, clip_index: int) -> list[PersonSpec]:
    roles = _choose_roles(rng, clip_index)
    hue0 = rng.random()
    fields = [_common_fields(rng, config, index, role, hue0) for index, role in enumerate(roles)]
    people: list[PersonSpec] = []
    taken: list[float] = []
    focus: float | None = None
    index = 0
    while index < len(roles):
        primary = roles[index][0]
        if primary in FIGHT_ACTIONS:
            pair = _plan_pair(rng, config, fields[index], fields[index + 1])
            people += pair
            taken += [pair[0].x, pair[1].x]
            focus = (pair[0].x + pair[1].x) / 2
            index += 2
            continue
        if primary in ("walking", "running"):
            people.append(_plan_mover(rng, config, fields[index]))
        else:
            ground_y, height = _depth(rng, config)
            x = _free_x(rng, config, taken)
            taken.append(x)
            people.append(PersonSpec(**fields[index], x=x, y=ground_y, height=height,
                                     facing=1 if rng.random() < 0.5 else -1,
                                     onset=rng.uniform(-0.7, config.seconds - 1.5)))
        index += 1
    return _face_the_action(people, focus)


def _face_the_action(people: list[PersonSpec], focus: float | None) -> list[PersonSpec]:
    """Watchers and kneelers turn towards the fight, or towards the others when there is none."""
    result = []
    for person in people:
        if person.primary in ("watching", "kneeling"):
            others = [p.x for p in people if p.person_id != person.person_id]
            target = focus if focus is not None else (float(np.mean(others)) if others else person.x + 1)
            person = replace(person, facing=1 if target >= person.x else -1)
        result.append(person)
    return result


def _plan_props(rng: np.random.Generator, config: SyntheticConfig, pad: int) -> tuple[Prop, ...]:
    """Occluders in front of the people: maybe a pole, maybe a striped barrier on the ground."""
    props = []
    if rng.random() < 0.5:
        x = rng.uniform(0.1, 0.9) * config.width
        width = rng.uniform(10, 22)
        grey = int(rng.integers(50, 110))
        props.append(Prop("pole", (x, -pad, x + width, config.height + pad), (grey, grey, grey + 10),
                          (grey + 60, grey + 60, grey + 70)))
    if rng.random() < 0.35:
        x = rng.uniform(-0.05, 0.75) * config.width
        top = config.height - rng.uniform(35, 70)
        colours = [((200, 40, 40), (235, 235, 235)), ((230, 190, 30), (30, 30, 30))][int(rng.integers(2))]
        props.append(Prop("barrier", (x, top, x + rng.uniform(120, 260), config.height + pad), *colours))
    return tuple(props)


def _plan_shake(rng: np.random.Generator, n_frames: int, fps: int, pad: int) -> np.ndarray:
    """Camera offsets ``[n_frames, 2]`` (int pixels): two slow sines per axis plus a little jitter."""
    times = np.arange(n_frames) / fps
    amplitude = rng.uniform(1.0, 4.0)
    offsets = np.zeros((n_frames, 2))
    for axis in range(2):
        f1, f2 = rng.uniform(0.5, 3.0, size=2)
        p1, p2 = rng.uniform(0, 2 * np.pi, size=2)
        offsets[:, axis] = amplitude * (0.6 * np.sin(2 * np.pi * f1 * times + p1)
                                        + 0.4 * np.sin(2 * np.pi * f2 * times + p2))
    offsets += rng.normal(0.0, 0.4, size=offsets.shape)
    return np.clip(np.round(offsets), -pad, pad).astype(np.int64)


def plan_video(rng: np.random.Generator, video_id: str, config: SyntheticConfig, clip_index: int = 0) -> VideoPlan:
    """Plan one clip: 2-6 people with their actions, props, camera shake and background seed.

    Args:
        rng: the clip's random generator.
        video_id: its id.
        config: sizes.
        clip_index: position of the clip in its split (picks the fight and showcase roles).
    """
    pad = 6
    n_frames = config.seconds * config.fps
    return VideoPlan(
        video_id=video_id, width=config.width, height=config.height, fps=config.fps, n_frames=n_frames,
        persons=tuple(_plan_people(rng, config, clip_index)), props=_plan_props(rng, config, pad),
        shake=_plan_shake(rng, n_frames, config.fps, pad), background_seed=int(rng.integers(2**31)), pad=pad,
    )


def plan_dataset(config: SyntheticConfig, seed: int = 0) -> DatasetPlan:
    """Plan every clip and the excluded keyframes of both splits (deterministic for ``seed``)."""
    ids = make_video_ids(seed, config.train_videos + config.val_videos)
    counts = {"train": config.train_videos, "val": config.val_videos}
    videos: dict[str, list[VideoPlan]] = {}
    excluded: dict[str, set[tuple[str, int]]] = {}
    start = 0
    for split_index, (split, count) in enumerate(counts.items()):
        videos[split] = [plan_video(np.random.default_rng([seed, 1, start + i]), ids[start + i], config, i)
                         for i in range(count)]
        start += count
        keys = [(plan.video_id, t) for plan in videos[split] for t in keyframe_times(config.seconds)]
        rng = np.random.default_rng([seed, 2, split_index])
        # At least one, but never every keyframe: the evaluation needs keyframes that are not excluded.
        n_excluded = min(max(1, int(round(EXCLUDED_SHARE * len(keys)))), len(keys) - 1)
        excluded[split] = {keys[i] for i in rng.choice(len(keys), size=n_excluded, replace=False)}
    return DatasetPlan(config=config, seed=seed, videos=videos, excluded=excluded)


def keyframe_times(seconds: int) -> range:
    """Keyframe times in whole seconds: 1 .. seconds-1 (Chaotic World annotates at 1 fps)."""
    return range(1, seconds)
