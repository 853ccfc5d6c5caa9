"""Synthetic Chaotic World generator: rendered H.264 clips plus official-format csv, exclusions and label map."""
from __future__ import annotations

import argparse
import colorsys
import json
import logging
import time
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import numpy as np
from tqdm import tqdm

from datasets.synthetic_motion import FIGHT_ACTIONS, PersonSpec, person_labels
from datasets.synthetic_render import Prop, VideoPlan, encode_video, frame_joints, person_box
from formats.atomic import write_text_atomic
from formats.cli import run_main
from formats.eval_csv import write_exclusions
from formats.official_csv import OfficialRow, write_official_csv
from formats.pbtxt import write_label_map

LOGGER = logging.getLogger(__name__)

CLASSES_FILE = Path(__file__).with_name("cw_classes.txt")
MANIFEST_NAME = "synthetic_manifest.json"
# Bump when a change makes the same seed produce different data (invalidates cached demo data).
GENERATOR_VERSION = 1
# Clip window of a keyframe: +-32 frames around it (CW annotates at 1 fps, clips of 64 frames).
HALF_WINDOW = 32
# A person whose box keeps less than this share of its area inside the frame is not annotated
# (annotators do not box a sliver at the border).
MIN_VISIBLE_FRACTION = 0.25
# Excluded keyframes per split: this share of the keyframes, at least one.
EXCLUDED_SHARE = 0.05
# One person per clip, in turn, does one of these (primary, arm action), so that rare classes occur.
SHOWCASES = (("watching", "clapping"), ("running", None), ("walking", "waving"), ("kneeling", "raising"),
             ("injured", None), ("watching", "raising"), ("running", None), ("kneeling", None))
SPLITS = {"train": "train", "val": "test"}  # split -> file stem (chaos_<stem>_1fps.csv)
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


def load_cw_classes(path: str | Path = CLASSES_FILE) -> dict[int, str]:
    """The 50 Chaotic World classes ``{id (1..50): name}`` from the tab-separated list shipped here."""
    classes: dict[int, str] = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            class_id, name = line.split("\t", 1)
            classes[int(class_id)] = name.strip()
    return classes


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
        # At least one, but never every keyframe: a split without rows would not be a dataset.
        n_excluded = min(max(1, int(round(EXCLUDED_SHARE * len(keys)))), len(keys) - 1)
        excluded[split] = {keys[i] for i in rng.choice(len(keys), size=n_excluded, replace=False)}
    return DatasetPlan(config=config, seed=seed, videos=videos, excluded=excluded)


# ----------------------------------------------------------------------------------------------
# Annotation rows (official csv) from a plan.
# ----------------------------------------------------------------------------------------------


def keyframe_times(seconds: int) -> range:
    """Keyframe times in whole seconds: 1 .. seconds-1 (Chaotic World annotates at 1 fps)."""
    return range(1, seconds)


def visible_box(box: np.ndarray, width: int, height: int) -> tuple[float, float, float, float] | None:
    """Normalised box clipped to the frame, or None when too little of it is inside.

    Args:
        box: ``[x1, y1, x2, y2]`` in pixels.
        width, height: frame size in pixels.

    Returns:
        (x1, y1, x2, y2) in [0, 1], rounded to 4 decimals, or None.
    """
    x1, y1, x2, y2 = (float(v) for v in box)
    cx1, cy1, cx2, cy2 = max(x1, 0.0), max(y1, 0.0), min(x2, float(width)), min(y2, float(height))
    if cx2 - cx1 < 4 or cy2 - cy1 < 4:
        return None
    if (cx2 - cx1) * (cy2 - cy1) < MIN_VISIBLE_FRACTION * (x2 - x1) * (y2 - y1):
        return None
    return (round(cx1 / width, 4), round(cy1 / height, 4), round(cx2 / width, 4), round(cy2 / height, 4))


def annotate_video(plan: VideoPlan, excluded_times: set[int]) -> list[OfficialRow]:
    """Official csv rows of one clip: one per (keyframe, visible person, label), labels 0-based.

    Args:
        plan: the clip.
        excluded_times: keyframe times (s) left unannotated (listed in the exclusion csv instead).

    Returns:
        Rows ordered by time, person id, label.
    """
    rows = []
    extra = (str(plan.width), str(plan.height))
    for t in keyframe_times(plan.n_frames // plan.fps):
        if t in excluded_times:
            continue
        index = int(round(t * plan.fps))
        keyframe = index + 1
        start, end = max(1, keyframe - HALF_WINDOW), min(plan.n_frames, keyframe + HALF_WINDOW)
        for spec in sorted(plan.persons, key=lambda person: person.person_id):
            box = visible_box(person_box(spec, frame_joints(plan, spec, index)), plan.width, plan.height)
            if box is None:
                continue
            for class_id in person_labels(spec, float(t)):
                rows.append(OfficialRow(video=plan.video_id, keyframe=keyframe, box=box, label=class_id - 1,
                                        person_id=spec.person_id, start_frame=start, end_frame=end,
                                        time=float(t), extra=extra))
    return rows


def annotate_dataset(plan: DatasetPlan) -> dict[str, list[OfficialRow]]:
    """Rows of both splits, ``{'train': rows, 'val': rows}``."""
    result = {}
    for split, videos in plan.videos.items():
        rows = []
        for video in videos:
            times = {t for vid, t in plan.excluded[split] if vid == video.video_id}
            rows += annotate_video(video, times)
        result[split] = rows
    return result


def split_counts(rows: list[OfficialRow], videos: int, excluded: int, names: dict[int, str]) -> dict:
    """Counts of one split: videos, keyframes, persons (boxes), rows, label counts by class name."""
    labels = Counter(row.label + 1 for row in rows)
    return {
        "videos": videos,
        "keyframes": len({(row.video, row.time) for row in rows}),
        "excluded_keyframes": excluded,
        "persons": len({(row.video, row.time, row.person_id) for row in rows}),
        "multi_label_persons": sum(1 for n in Counter((r.video, r.time, r.person_id) for r in rows).values() if n > 1),
        "rows": len(rows),
        "label_counts": {names[class_id]: labels[class_id] for class_id in sorted(labels)},
    }


# ----------------------------------------------------------------------------------------------
# Writing: csv files, label map, videos (encode_video), manifest.
# ----------------------------------------------------------------------------------------------


def _remove_stale_videos(root: Path, keep: set[str]) -> None:
    """Delete clips listed by an earlier generation into ``root`` that the new plan does not contain."""
    manifest = root / MANIFEST_NAME
    if not manifest.is_file():
        return
    try:
        previous = json.loads(manifest.read_text(encoding="utf-8")).get("video_ids", [])
    except (json.JSONDecodeError, AttributeError):
        return
    for video_id in set(previous) - keep:
        (root / "videos" / f"{video_id}.mp4").unlink(missing_ok=True)


def write_annotations(plan: DatasetPlan, root: str | Path) -> dict[str, list[OfficialRow]]:
    """Write the csv files, exclusion files and label map of a plan under ``root/AR_ava_format``."""
    folder = Path(root) / "AR_ava_format"
    rows = annotate_dataset(plan)
    for split, stem in SPLITS.items():
        write_official_csv(folder / f"chaos_{stem}_1fps.csv", rows[split])
        write_exclusions(folder / f"chaos_{stem}_exclude.csv", plan.excluded[split])
    write_label_map(folder / "list_action.pbtxt", load_cw_classes())
    return rows


def _encode_all(plan: DatasetPlan, root: Path, progress: bool) -> None:
    videos = [video for split in plan.videos.values() for video in split]
    workers = min(plan.config.workers, len(videos))
    # One x264 thread per clip when several clips encode at once: the cores are shared anyway.
    threads = 1 if workers > 1 else 0
    with ThreadPoolExecutor(max_workers=workers) as pool, \
            tqdm(total=len(videos), unit="video", desc="render+encode", disable=not progress) as bar:
        futures = [pool.submit(encode_video, video, root / "videos" / f"{video.video_id}.mp4", plan.config.crf,
                               threads) for video in videos]
        for future in futures:
            future.result()
            bar.update(1)


def generate_dataset(out_dir: str | Path, preset: str = "demo", seed: int = 0, progress: bool = True,
                     **overrides: int) -> dict:
    """Generate a synthetic Chaotic World dataset in the official layout.

    Writes ``videos/<vid>.mp4`` and ``AR_ava_format/`` (``chaos_{train,test}_1fps.csv``,
    ``chaos_{train,test}_exclude.csv``, ``list_action.pbtxt``), then ``synthetic_manifest.json``
    last, so a manifest means a complete dataset.

    Args:
        out_dir: dataset root.
        preset: ``'tiny'`` (unit tests) or ``'demo'``.
        seed: random seed; the same seed gives the same csv bytes and the same rendered frames.
        progress: show a tqdm bar over clips.
        **overrides: SyntheticConfig fields replacing the preset's (train_videos, val_videos, seconds, ...).

    Returns:
        Counts: ``videos``, ``keyframes``, ``persons``, ``rows`` (totals), ``label_counts``
        ({class name: rows}), ``splits`` (the same per split, plus excluded keyframes and
        multi-label persons), ``seconds`` (wall time of the generation), ``config`` and ``seed``.
    """
    started = time.perf_counter()
    config = resolve_config(preset, **overrides)
    root = Path(out_dir)
    plan = plan_dataset(config, seed)
    video_ids = [video.video_id for split in plan.videos.values() for video in split]
    _remove_stale_videos(root, set(video_ids))
    (root / MANIFEST_NAME).unlink(missing_ok=True)
    rows = write_annotations(plan, root)
    _encode_all(plan, root, progress)
    names = load_cw_classes()
    splits = {split: split_counts(rows[split], len(plan.videos[split]), len(plan.excluded[split]), names)
              for split in plan.videos}
    totals = Counter()
    for counts in splits.values():
        totals.update(counts["label_counts"])
    summary = {
        "preset": preset, "seed": seed, "config": asdict(config),
        **{key: sum(counts[key] for counts in splits.values()) for key in ("videos", "keyframes", "persons", "rows")},
        "label_counts": dict(sorted(totals.items(), key=lambda item: -item[1])),
        "splits": splits,
        "seconds": round(time.perf_counter() - started, 2),
    }
    manifest = {"generator_version": GENERATOR_VERSION, "video_ids": video_ids, **summary}
    write_text_atomic(root / MANIFEST_NAME, json.dumps(manifest, indent=2) + "\n")
    LOGGER.info("generated %d videos, %d keyframes, %d person boxes under %s in %.1f s", summary["videos"],
                summary["keyframes"], summary["persons"], root, summary["seconds"])
    return summary


def read_manifest(root: str | Path) -> dict | None:
    """The manifest of a complete generated dataset under ``root``, or None."""
    path = Path(root) / MANIFEST_NAME
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        return None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m datasets.synthetic",
                                     description="Generate a synthetic Chaotic World dataset (videos + official csv).")
    parser.add_argument("--out", required=True, help="dataset root to write")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="demo", help="size preset (default: demo)")
    parser.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    parser.add_argument("--train-videos", type=int, help="clips in the train split")
    parser.add_argument("--val-videos", type=int, help="clips in the validation split")
    parser.add_argument("--seconds", type=int, help="clip length in seconds")
    parser.add_argument("--width", type=int, help="frame width in pixels (default 640)")
    parser.add_argument("--height", type=int, help="frame height in pixels (default 360)")
    parser.add_argument("--crf", type=int, help="x264 quality (default 20)")
    parser.add_argument("--workers", type=int, help="clips encoded at once (default 2)")
    return parser


_OVERRIDES = ("train_videos", "val_videos", "seconds", "width", "height", "crf", "workers")


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments; a size the preset cannot take is an argument error (exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        resolve_config(args.preset, **{key: getattr(args, key) for key in _OVERRIDES})
    except ValueError as error:
        parser.error(str(error))
    return args


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: generate and print the counts."""
    return run_main(parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    overrides = {key: getattr(args, key) for key in _OVERRIDES}
    summary = generate_dataset(args.out, preset=args.preset, seed=args.seed, **overrides)
    print(f"{summary['videos']} videos, {summary['keyframes']} keyframes, {summary['persons']} person boxes, "
          f"{summary['rows']} csv rows in {summary['seconds']} s under {args.out}")
    for name, count in summary["label_counts"].items():
        print(f"  {count:6d}  {name}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
