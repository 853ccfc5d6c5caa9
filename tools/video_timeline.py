"""The video demo's timeline picture: who did what when, one band of rows per track id, one row per
action the person showed, one cell per keyframe coloured by the action's score."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from evaluation.plot import new_figure, write_figure

# More tracks make rows too thin to read at the saved size: the longest-seen tracks are kept.
MAX_TRACKS = 20
# Rows per track: the actions it showed most (summed score over its keyframes in its top-k).
MAX_ACTIONS_PER_TRACK = 4
ROW_INCHES = 0.24


@dataclass(frozen=True)
class TimelineRow:
    """One row of the picture.

    Attributes:
        track_id: the person.
        action: the class name.
        scores: ``[T]`` the action's probability at each keyframe second (NaN: person not there).
    """

    track_id: int
    action: str
    scores: np.ndarray


def timeline_rows(keyframes: Sequence, names: Sequence[str], top_k: int) -> tuple[list[TimelineRow], int, int]:
    """The rows of the timeline.

    Args:
        keyframes: ``KeyframePeople`` in time order (``tools.video_analyse``).
        names: class names.
        top_k: actions a person shows per keyframe (an action gets a row when it was among them once).

    Returns:
        ``(rows, tracks shown, tracks in all)``: bands in order of first appearance.
    """
    seconds = (max((keyframe.time for keyframe in keyframes), default=-1) + 1)
    per_track: dict[int, np.ndarray] = {}
    shown: dict[int, dict[int, float]] = {}
    for keyframe in keyframes:
        for track, actions in zip(keyframe.track_ids, keyframe.actions):
            if np.isnan(actions).all():
                continue
            matrix = per_track.setdefault(track, np.full((len(names), seconds), np.nan, dtype=np.float32))
            matrix[:, keyframe.time] = actions
            for index in np.argsort(-np.nan_to_num(actions, nan=-1.0), kind="stable")[:top_k]:
                bucket = shown.setdefault(track, {})
                bucket[int(index)] = bucket.get(int(index), 0.0) + float(actions[index])
    seen = {track: int(np.isfinite(matrix[0]).sum()) for track, matrix in per_track.items()}
    kept = sorted(seen, key=lambda track: (-seen[track], track))[:MAX_TRACKS]
    first = {track: int(np.argmax(np.isfinite(per_track[track][0]))) for track in kept}
    rows = []
    for track in sorted(kept, key=lambda track: (first[track], track)):
        ranked = sorted(shown[track].items(), key=lambda item: (-item[1], item[0]))[:MAX_ACTIONS_PER_TRACK]
        rows += [TimelineRow(track, names[index], per_track[track][index]) for index, _ in ranked]
    return rows, len(kept), len(per_track)


def _clock(seconds: float, _position: object = None) -> str:
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes}:{rest:02d}" if minutes < 60 else f"{minutes // 60}:{minutes % 60:02d}:{rest:02d}"


def write_timeline(path: str | Path, keyframes: Sequence, names: Sequence[str], top_k: int, title: str,
                   untrained: bool) -> dict:
    """Draw the timeline and write it as a PNG, atomically.

    Args:
        path: the PNG.
        keyframes: ``KeyframePeople`` in time order.
        names: class names.
        top_k: actions per person per keyframe.
        title: the picture's title (the video's name).
        untrained: add ``UNTRAINED WEIGHTS`` to the title.

    Returns:
        ``{'rows', 'tracks_shown', 'tracks', 'size'}`` (size in pixels).
    """
    from matplotlib import colormaps
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    rows, shown, total = timeline_rows(keyframes, names, top_k)
    seconds = max((keyframe.time for keyframe in keyframes), default=0) + 1
    height = 1.6 + ROW_INCHES * max(len(rows), 2)
    figure = new_figure(12, height)
    axis = figure.add_subplot(1, 1, 1)
    cmap = colormaps["viridis"].with_extremes(bad=(0.93, 0.93, 0.93))
    matrix = np.stack([row.scores for row in rows]) if rows else np.full((1, seconds), np.nan)
    image = axis.imshow(matrix, aspect="auto", cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest",
                        extent=(-0.5, seconds - 0.5, len(matrix) - 0.5, -0.5))
    labels, previous = [], None
    for index, row in enumerate(rows):
        labels.append(f"#{row.track_id}  {row.action}" if row.track_id != previous else row.action)
        if previous is not None and row.track_id != previous:
            axis.axhline(index - 0.5, color="black", linewidth=1.2)
        previous = row.track_id
    axis.set_yticks(range(len(rows)), labels, fontsize=9)
    axis.xaxis.set_major_locator(MaxNLocator(nbins=12, integer=True))
    axis.xaxis.set_major_formatter(FuncFormatter(_clock))
    axis.set_xlabel("time (min:s); one cell per keyframe (1 per second), grey: person not there", fontsize=9)
    more = f" (the {shown} longest-seen of {total} tracks)" if shown < total else ""
    stamp = "UNTRAINED WEIGHTS: " if untrained else ""
    axis.set_title(f"{stamp}who did what when: {title}{more}", fontsize=10, color="red" if untrained else "black")
    if not rows:
        axis.text(seconds / 2 - 0.5, 0, "no person was tracked", ha="center", va="center", fontsize=11)
        axis.set_yticks([])
    colorbar = figure.colorbar(image, ax=axis, fraction=0.025, pad=0.01)
    colorbar.set_label("action score", fontsize=9)
    write_figure(path, figure)
    return {"rows": len(rows), "tracks_shown": shown, "tracks": total,
            "size": [int(round(12 * 100)), int(round(height * 100))]}
