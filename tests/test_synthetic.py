"""The synthetic Chaotic World generator: determinism, official formats, action signatures, real mp4 files."""
from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import imageio_ffmpeg
import numpy as np
import pytest

from datasets.synthetic import (annotate_dataset, generate_dataset, load_cw_classes, read_manifest, visible_box,
                                write_annotations)
from datasets.synthetic_plan import DatasetPlan, keyframe_times, make_video_ids, plan_dataset, resolve_config
from datasets.synthetic_motion import (CLAPPING, FIGHTING, INJURED, KNEELING, PUNCHING, RAISING_HANDS,
                                       RENDERED_CLASSES, RUNNING, WALKING, WATCHING, WAVING_HANDS, J, PersonSpec,
                                       person_joints, person_labels)
from datasets.synthetic_render import make_background, render_frame
from formats.eval_csv import read_exclusion_lines
from formats.official_csv import is_header, read_official_csv
from formats.pbtxt import read_label_map_entries

TINY = resolve_config("tiny")
DEMO = resolve_config("demo")


def _write(plan: DatasetPlan, root: Path) -> dict[str, bytes]:
    write_annotations(plan, root)
    folder = root / "AR_ava_format"
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


def _frames(plan: DatasetPlan, indices: tuple[int, ...]) -> list[np.ndarray]:
    video = plan.videos["val"][0]
    background = make_background(video.background_seed, video.width, video.height, video.pad)
    return [render_frame(video, index, background) for index in indices]


@pytest.fixture(scope="module")
def demo_rows() -> tuple[DatasetPlan, dict]:
    plan = plan_dataset(DEMO, seed=0)
    return plan, annotate_dataset(plan)


def test_same_seed_gives_identical_csv_bytes_and_frames(tmp_path: Path) -> None:
    first = _write(plan_dataset(TINY, seed=3), tmp_path / "a")
    second = _write(plan_dataset(TINY, seed=3), tmp_path / "b")
    assert set(first) == {"chaos_train_1fps.csv", "chaos_test_1fps.csv", "chaos_train_exclude.csv",
                          "chaos_test_exclude.csv", "list_action.pbtxt"}
    assert first == second
    frames_a = _frames(plan_dataset(TINY, seed=3), (0, 40))
    frames_b = _frames(plan_dataset(TINY, seed=3), (0, 40))
    for a, b in zip(frames_a, frames_b):
        assert a.shape == (360, 640, 3) and a.dtype == np.uint8
        assert np.array_equal(a, b)
    assert not np.array_equal(frames_a[0], frames_a[1]), "the clip must move"


def test_different_seed_gives_different_data(tmp_path: Path) -> None:
    first = _write(plan_dataset(TINY, seed=0), tmp_path / "a")
    second = _write(plan_dataset(TINY, seed=1), tmp_path / "b")
    assert first["chaos_train_1fps.csv"] != second["chaos_train_1fps.csv"]
    frame_0, frame_1 = _frames(plan_dataset(TINY, seed=0), (10,))[0], _frames(plan_dataset(TINY, seed=1), (10,))[0]
    assert not np.array_equal(frame_0, frame_1)


def test_video_ids_look_like_chaotic_world_ids() -> None:
    ids = make_video_ids(0, 40)
    assert len(set(ids)) == 40
    assert all(re.fullmatch(r"[A-Z0-9]{8}", video_id) for video_id in ids)
    assert ids == make_video_ids(0, 40) and ids != make_video_ids(1, 40)


def test_demo_files_are_in_the_published_layout(tmp_path: Path, demo_rows: tuple[DatasetPlan, dict]) -> None:
    """Headerless csvs, keyframe 25 t, window seconds, exclusions by frame number per row, `label {}` map."""
    plan, _ = demo_rows
    write_annotations(plan, tmp_path)
    folder = tmp_path / "AR_ava_format"
    seen: Counter = Counter()
    for split, stem in (("train", "train"), ("val", "test")):
        ids = {video.video_id for video in plan.videos[split]}
        path = folder / f"chaos_{stem}_1fps.csv"
        assert is_header(path.read_text().splitlines()[0].split(",")) is False, "no header line, as published"
        rows = read_official_csv(path, known_videos=ids)
        # One exclusion line per ground-truth row of an excluded keyframe, named by frame number.
        lines = read_exclusion_lines(folder / f"chaos_{stem}_exclude.csv")
        excluded_rows = [row for row in rows if (row.video, int(row.time)) in plan.excluded[split]]
        assert excluded_rows, "excluded keyframes are annotated, as in the published files"
        assert [(video, number) for _, video, number in lines] == [(row.video, row.keyframe) for row in excluded_rows]
        n_frames = DEMO.seconds * DEMO.fps
        for row in rows:
            assert row.time.is_integer() and int(row.time) in keyframe_times(DEMO.seconds)
            assert row.keyframe == round(row.time * 25)
            assert row.start_frame == max(1, row.keyframe - 32) and row.end_frame == min(n_frames, row.keyframe + 32)
            assert row.n_frames >= 1
            assert row.label + 1 in RENDERED_CLASSES
            assert row.window_seconds == (round(row.start_frame / 25, 2), round(row.end_frame / 25, 2))
        seen.update(row.label + 1 for row in rows)
        # Every rendered class occurs in each split (SHOWCASES rotate through them).
        assert {row.label + 1 for row in rows} == set(RENDERED_CLASSES), split
    assert len(seen) >= 8
    entries = read_label_map_entries(folder / "list_action.pbtxt")
    assert {entry.class_id: entry.name for entry in entries} == load_cw_classes()
    assert sorted(entry.class_id for entry in entries) == list(range(1, 51))
    assert {entry.label_type for entry in entries} == {"PERSON_MOVEMENT"}
    assert (folder / "list_action.pbtxt").read_text().startswith('label {\n  name: "aiming weapon"\n  label_id: 1\n')


def test_label_ids_name_the_rendered_actions() -> None:
    names = load_cw_classes()
    expected = {CLAPPING: "clapping", FIGHTING: "fighting", INJURED: "injured", KNEELING: "kneeling",
                PUNCHING: "punching", RAISING_HANDS: "raising hands", RUNNING: "running/escaping",
                WALKING: "walking", WATCHING: "watching", WAVING_HANDS: "waving hands"}
    assert {class_id: names[class_id] for class_id in expected} == expected
    assert any(class_id <= 13 for class_id in RENDERED_CLASSES), "one pose class (softmax group 1..13)"


def test_multi_label_persons_and_scene_variety(demo_rows: tuple[DatasetPlan, dict]) -> None:
    plan, rows = demo_rows
    per_person = Counter((row.video, row.time, row.person_id) for split in rows.values() for row in split)
    assert sum(1 for count in per_person.values() if count > 1) >= 20
    people = [len(video.persons) for split in plan.videos.values() for video in split]
    assert min(people) >= 2 and max(people) <= 6 and len(set(people)) >= 3
    heights = [person.height for split in plan.videos.values() for video in split for person in video.persons]
    assert max(heights) / min(heights) > 1.5, "person sizes vary"
    assert any(video.props for split in plan.videos.values() for video in split), "some clips have occluders"


def test_visible_box_clips_and_drops_people_outside() -> None:
    assert visible_box(np.array([-300.0, 10.0, -200.0, 100.0]), 640, 360) is None
    assert visible_box(np.array([-95.0, 10.0, 5.0, 100.0]), 640, 360) is None  # a 5% sliver
    assert visible_box(np.array([-20.0, -10.0, 80.0, 200.0]), 640, 360) == (0.0, 0.0, 0.125, round(200 / 360, 4))


def _person(primary: str, arm_action: str | None = None, **fields: float) -> PersonSpec:
    base = dict(person_id=1, primary=primary, arm_action=arm_action, x=320.0, y=330.0, height=200.0, facing=1)
    return PersonSpec(**{**base, **fields})


def _track(spec: PersonSpec, joint: str, times: np.ndarray) -> np.ndarray:
    return np.array([person_joints(spec, float(t))[J[joint]] for t in times])


def test_actions_differ_over_time() -> None:
    times = np.arange(0.0, 2.0, 0.04)
    walker = _person("walking", velocity=140.0, freq=0.85)
    runner = _person("running", velocity=460.0, freq=1.5)
    walk_speed = np.ptp(_track(walker, "hip", times)[:, 0]) / 2.0
    run_speed = np.ptp(_track(runner, "hip", times)[:, 0]) / 2.0
    assert run_speed > 2.5 * walk_speed
    # Waving keeps the hand moving; raising hands lifts it once and then holds it above the head.
    waver = _track(_person("watching", "waving", arm_freq=1.6), "hand1", times)
    raiser = _person("watching", "raising", arm_onset=0.2)
    held = _track(raiser, "hand1", times[times > 1.0])
    head_y = person_joints(raiser, 1.5)[J["head"], 1]
    assert np.ptp(waver[:, 0]) > 20 and np.ptp(held[:, 0]) < 5 and held[:, 1].max() < head_y
    assert person_labels(raiser, 0.0) == (WATCHING,) and person_labels(raiser, 1.0) == (RAISING_HANDS, WATCHING)
    # Kneeling lowers the head by a quarter of the height; injured people lie flat.
    kneeler = _person("kneeling", onset=0.5)
    drop = person_joints(kneeler, 1.5)[J["head"], 1] - person_joints(kneeler, 0.0)[J["head"], 1]
    assert drop > 0.2 * kneeler.height and person_labels(kneeler, 1.5) == (KNEELING,)
    lying = person_joints(_person("injured"), 1.0)
    assert np.ptp(lying[:, 0]) > 2.5 * np.ptp(lying[:, 1])
    # Brawlers alternate: their striking hands are not extended at the same time.
    left = _person("brawl", freq=1.0, role=0)
    right = _person("brawl", freq=1.0, role=1, facing=-1, x=444.0)
    reach = [(person_joints(left, t)[[J["hand0"], J["hand1"]], 0].max() - person_joints(left, t)[J["neck"], 0],
              person_joints(right, t)[J["neck"], 0] - person_joints(right, t)[[J["hand0"], J["hand1"]], 0].min())
             for t in times]
    reach = np.array(reach)
    assert np.ptp(reach[:, 0]) > 0.1 * left.height and np.corrcoef(reach[:, 0], reach[:, 1])[0, 1] < 0
    assert person_labels(left, 0.3) == (FIGHTING, PUNCHING)


def test_resolve_config_rejects_bad_options() -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        resolve_config("huge")
    with pytest.raises(ValueError, match="secs"):
        resolve_config("tiny", secs=3)
    with pytest.raises(ValueError, match="seconds"):
        resolve_config("tiny", seconds=1)
    assert resolve_config("demo", train_videos=3).train_videos == 3


def test_tiny_preset_writes_decodable_h264(tmp_path: Path) -> None:
    counts = generate_dataset(tmp_path, preset="tiny", seed=0, progress=False, workers=1)
    assert counts["videos"] == 2 and counts["splits"]["val"]["excluded_keyframes"] >= 1
    assert counts["rows"] > 0 and counts["label_counts"]
    manifest = read_manifest(tmp_path)
    assert manifest is not None and manifest["seed"] == 0
    plan = plan_dataset(TINY, seed=0)
    video = plan.videos["train"][0]
    path = tmp_path / "videos" / f"{video.video_id}.mp4"
    assert sorted(p.name for p in (tmp_path / "videos").iterdir()) == sorted(
        f"{v.video_id}.mp4" for split in plan.videos.values() for v in split)
    n_frames, seconds = imageio_ffmpeg.count_frames_and_secs(str(path))
    assert n_frames == TINY.seconds * 25 and abs(seconds - TINY.seconds) < 0.1
    reader = imageio_ffmpeg.read_frames(str(path))
    meta = next(reader)
    assert meta["size"] == (640, 360) and "h264" in meta["codec"]
    decoded = np.frombuffer(next(reader), np.uint8).reshape(360, 640, 3)
    reader.close()
    background = make_background(video.background_seed, video.width, video.height, video.pad)
    rendered = render_frame(video, 0, background)
    # Lossy, but colours survive: the mean error is a few grey levels.
    assert np.abs(decoded.astype(int) - rendered.astype(int)).mean() < 6
