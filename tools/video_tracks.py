"""Tracks of the video demo: each person's observed boxes, the box at any frame (observed, interpolated
or held, by the documented rule), and the longest runs of each action (no tracker here: ids come from
ultralytics' trackers or from the given boxes)."""
from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

OBSERVED, INTERPOLATED, HELD = "observed", "interpolated", "held"


@dataclass(frozen=True)
class TrackBox:
    """A track's box at one frame.

    Attributes:
        box: ``[4]`` (x1, y1, x2, y2) normalised to [0, 1].
        score: the detector's confidence when observed (NaN for given, interpolated or held boxes).
        source: ``observed``, ``interpolated`` or ``held``.
    """

    box: np.ndarray
    score: float
    source: str


class TrackStore:
    """Observations per track id, and the box of a track at any frame.

    The rule, for frame n of a track (frames at 25 fps, numbered from 1): the observation at n if there
    is one; else the linear interpolation between the observations just before and just after n when
    they are at most ``max_gap`` frames apart; else the nearest observation when it is at most
    ``hold`` frames away; else the track is not there. The same rule gives the keyframe boxes the
    action model reads and the boxes drawn on every frame.
    """

    def __init__(self, hold: int, max_gap: int, bucket: int = 25) -> None:
        """Args: hold and max_gap in frames; bucket: frames per index bucket (a second)."""
        self.hold, self.max_gap, self.bucket = hold, max_gap, bucket
        self._frames: dict[int, list[int]] = {}
        self._boxes: dict[int, list[np.ndarray]] = {}
        self._scores: dict[int, list[float]] = {}
        # bucket -> ids that may have a box in it: every frame a track reaches lies within
        # max(hold, max_gap) of one of its observations.
        self._near: dict[int, set[int]] = {}

    def add(self, track_id: int, frame: int, box: Sequence[float], score: float = float("nan")) -> None:
        """Record an observation; frames of one track arrive in increasing order (a repeat replaces)."""
        frames = self._frames.setdefault(track_id, [])
        if frames and frame < frames[-1]:
            raise ValueError(f"track {track_id}: frame {frame} arrives after frame {frames[-1]}")
        array = np.asarray(box, dtype=np.float64).reshape(4)
        if frames and frames[-1] == frame:
            self._boxes[track_id][-1], self._scores[track_id][-1] = array, float(score)
            return
        frames.append(frame)
        self._boxes.setdefault(track_id, []).append(array)
        self._scores.setdefault(track_id, []).append(float(score))
        reach = max(self.hold, self.max_gap)
        for index in range((frame - reach) // self.bucket, (frame + reach) // self.bucket + 1):
            self._near.setdefault(index, set()).add(track_id)

    def ids(self) -> list[int]:
        """Track ids in order of first observation (then id)."""
        return sorted(self._frames, key=lambda track: (self._frames[track][0], track))

    def observations(self, track_id: int) -> int:
        return len(self._frames[track_id])

    def span(self, track_id: int) -> tuple[int, int]:
        """First and last observed frame of a track."""
        frames = self._frames[track_id]
        return frames[0], frames[-1]

    def near(self, frame: int) -> list[int]:
        """Ids of the tracks that may have a box at ``frame`` (a superset; ``box_at`` decides), sorted."""
        return sorted(self._near.get(frame // self.bucket, ()))

    def box_at(self, track_id: int, frame: int) -> TrackBox | None:
        """The track's box at ``frame`` by the rule of the class docstring, or None."""
        frames = self._frames.get(track_id)
        if not frames:
            return None
        index = bisect.bisect_left(frames, frame)
        boxes, scores = self._boxes[track_id], self._scores[track_id]
        if index < len(frames) and frames[index] == frame:
            return TrackBox(boxes[index], scores[index], OBSERVED)
        before = index - 1 if index > 0 else None
        after = index if index < len(frames) else None
        if before is not None and after is not None and frames[after] - frames[before] <= self.max_gap:
            weight = (frame - frames[before]) / (frames[after] - frames[before])
            return TrackBox((1 - weight) * boxes[before] + weight * boxes[after], float("nan"), INTERPOLATED)
        candidates = [i for i in (before, after) if i is not None and abs(frames[i] - frame) <= self.hold]
        if not candidates:
            return None
        nearest = min(candidates, key=lambda i: (abs(frames[i] - frame), i))
        return TrackBox(boxes[nearest], float("nan"), HELD)


@dataclass(frozen=True)
class ActionRun:
    """Consecutive keyframes at which an action is among a person's top-k.

    Attributes:
        action: class name.
        start, end: first and last keyframe time (s); the run lasts ``end - start + 1`` seconds.
        mean_score: its mean probability over the run.
    """

    action: str
    start: int
    end: int
    mean_score: float

    @property
    def seconds(self) -> int:
        return self.end - self.start + 1


def longest_actions(timeline: Sequence[tuple[int, Sequence[tuple[str, float]]]], count: int = 3) -> list[ActionRun]:
    """The ``count`` longest runs of distinct actions in one person's keyframes.

    Args:
        timeline: ``(keyframe time in s, top-k [(name, score)])`` in time order; a missing second
            (the person not there) ends every run.
        count: how many runs to keep (one per action, its longest).

    Returns:
        Runs, longest first (ties: higher mean score, then earlier, then name).
    """
    open_runs: dict[str, list] = {}
    best: dict[str, ActionRun] = {}
    previous: int | None = None

    def close(name: str) -> None:
        start, end, scores = open_runs.pop(name)
        run = ActionRun(name, start, end, float(np.mean(scores)))
        kept = best.get(name)
        if kept is None or (run.seconds, run.mean_score) > (kept.seconds, kept.mean_score):
            best[name] = run

    for time, actions in timeline:
        present = {name: score for name, score in actions}
        for name in list(open_runs):
            if name not in present or previous is None or time != previous + 1:
                close(name)
        for name, score in present.items():
            if name in open_runs:
                open_runs[name][1] = time
                open_runs[name][2].append(score)
            else:
                open_runs[name] = [time, time, [score]]
        previous = time
    for name in list(open_runs):
        close(name)
    ranked = sorted(best.values(), key=lambda run: (-run.seconds, -run.mean_score, run.start, run.action))
    return ranked[:count]
