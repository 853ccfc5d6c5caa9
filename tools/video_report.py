"""The video demo's readable outputs besides the mp4: ``<out>.json``, ``<out>.csv`` (one row per track and
keyframe: box, top-k actions and scores) and the summary printed at the end."""
from __future__ import annotations

import csv
import io
import math
from collections.abc import Sequence
from pathlib import Path

from common.atomic import write_text_atomic
from tools.video_actions import top_actions
from tools.video_analyse import PHASES, Analysis
from tools.video_tracks import longest_actions

# Tracks named one per line in the printed summary; the json has them all.
SUMMARY_TRACKS = 20


def keyframe_records(analysis: Analysis, top_k: int) -> list[dict]:
    """Per keyframe, its people: track id, box (normalised, 4 decimals), where the box came from,
    the detector's score, and the top-k actions."""
    records = []
    for keyframe in analysis.keyframes:
        people = []
        for track, box, source, score, actions in zip(keyframe.track_ids, keyframe.boxes, keyframe.sources,
                                                      keyframe.detector_scores, keyframe.actions):
            people.append({"track_id": int(track), "box": [round(float(v), 4) for v in box], "box_source": source,
                           "detector_score": None if math.isnan(score) else round(float(score), 4),
                           "actions": [[name, round(value, 4)] for name, value in
                                       top_actions(actions, analysis.names, top_k)]})
        records.append({"time": keyframe.time, "frame": keyframe.frame, "people": people})
    return records


def track_records(records: Sequence[dict]) -> list[dict]:
    """Per track (in order of first appearance): first and last keyframe, count, longest actions."""
    timelines: dict[int, list[tuple[int, list]]] = {}
    for record in records:
        for person in record["people"]:
            timelines.setdefault(person["track_id"], []).append((record["time"], person["actions"]))
    tracks = []
    for track, timeline in sorted(timelines.items(), key=lambda item: (item[1][0][0], item[0])):
        runs = longest_actions([(time, [tuple(pair) for pair in actions]) for time, actions in timeline])
        tracks.append({"track_id": track, "first_s": timeline[0][0], "last_s": timeline[-1][0],
                       "keyframes": len(timeline),
                       "longest_actions": [{"action": run.action, "start_s": run.start, "end_s": run.end,
                                            "seconds": run.seconds, "mean_score": round(run.mean_score, 4)}
                                           for run in runs]})
    return tracks


def csv_text(records: Sequence[dict], top_k: int) -> str:
    """One row per (track, keyframe), with a header:
    ``time_s,track_id,x1,y1,x2,y2,box_source,detector_score,action_1,score_1,...`` (boxes normalised)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = ["time_s", "track_id", "x1", "y1", "x2", "y2", "box_source", "detector_score"]
    writer.writerow(header + [f"{kind}_{rank}" for rank in range(1, top_k + 1) for kind in ("action", "score")])
    for record in records:
        for person in record["people"]:
            actions = [value for pair in person["actions"] for value in pair]
            actions += [""] * (2 * top_k - len(actions))
            score = person["detector_score"]
            writer.writerow([record["time"], person["track_id"], *person["box"], person["box_source"],
                             "" if score is None else score, *actions])
    return buffer.getvalue()


def write_csv(path: Path, records: Sequence[dict], top_k: int) -> None:
    write_text_atomic(path, csv_text(records, top_k))


def timing_figures(analysis: Analysis, keyframes: int) -> dict:
    """Seconds per phase, their total and keyframes per second of that total."""
    seconds = {phase: round(analysis.watch.seconds[phase], 2) for phase in PHASES}
    total = sum(analysis.watch.seconds.values())
    return {"timings_s": {**seconds, "total": round(total, 2)},
            "keyframes_per_second": round(keyframes / total, 2) if total > 0 else None}


def _clock(seconds: float) -> str:
    minutes, rest = divmod(int(seconds), 60)
    return f"{minutes}:{rest:02d}"


def summary_lines(report: dict) -> list[str]:
    """The summary printed at the end: outputs, the tracks with their longest actions, the time split."""
    stamp = f" [{report['stamp']}]" if report.get("stamp") else ""
    lines = [f"{report['out']}: {report['frames']} frames {report['size'][0]}x{report['size'][1]}, "
             f"{report['keyframes_count']} keyframes, {report['tracks_count']} tracks, "
             f"{report['boxes']} person-keyframes{stamp}",
             f"  also {report['json']}, {report['csv']}, {report['timeline']}"]
    tracks = report["tracks"]
    lines.append("tracks (first-last seen, keyframes): longest actions" if tracks else "no person was tracked")
    for track in tracks[:SUMMARY_TRACKS]:
        runs = ", ".join(f"{run['action']} {run['seconds']} s ({_clock(run['start_s'])}, {run['mean_score']:.2f})"
                         for run in track["longest_actions"]) or "(not classified)"
        lines.append(f"  #{track['track_id']:<4} {_clock(track['first_s'])}-{_clock(track['last_s'])} "
                     f"({track['keyframes']}): {runs}")
    if len(tracks) > SUMMARY_TRACKS:
        lines.append(f"  ... {len(tracks) - SUMMARY_TRACKS} more tracks in {report['json']}")
    timings = report["timings_s"]
    split = ", ".join(f"{phase} {timings[phase]:.1f} s" for phase in PHASES)
    rate = report["keyframes_per_second"]
    lines.append(f"time: {split}; total {timings['total']:.1f} s, "
                 f"{rate if rate is not None else '-'} keyframes/s; peak memory {report['peak_rss_mb']} MB")
    return lines


def class_order(records: Sequence[dict]) -> list[str]:
    """Action names in the order of how often they are shown (then name): the legend's colours."""
    counts: dict[str, int] = {}
    for record in records:
        for person in record["people"]:
            for name, _ in person["actions"]:
                counts[name] = counts.get(name, 0) + 1
    return sorted(counts, key=lambda name: (-counts[name], name))


def actions_by_track(records: Sequence[dict]) -> dict[tuple[int, int], tuple[tuple[str, float], ...]]:
    """``{(track id, keyframe time): top-k}`` for drawing."""
    return {(person["track_id"], record["time"]): tuple((name, float(score)) for name, score in person["actions"])
            for record in records for person in record["people"]}
