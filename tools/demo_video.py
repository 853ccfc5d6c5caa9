"""Which val video the demo annotates: the one that shows the pipeline best (most people and actions,
where the detector finds the people), not the first by index."""
from __future__ import annotations

from pathlib import Path

from detect.quality import proposal_quality
from formats.official_csv import read_official_csv


def choose_demo_video(val_csv: Path, proposals: Path, videos: Path) -> dict:
    """Rank the val videos by people x distinct actions x detector recall; return the best.

    People and actions are counted in the ground truth (distinct person ids, distinct labels); the
    recall is the detector's person recall at IoU 0.5 on the video's keyframes. A video with many
    people and actions where the detector misses most of them would show empty boxes; one the
    detector reads well but with one person would show no tracking: the product favours neither.

    Args:
        val_csv: the official val csv (ground truth).
        proposals: the detector's val proposals pkl.
        videos: folder of ``<video id>.mp4``.

    Returns:
        ``{'video': path, 'video_id', 'people', 'actions', 'recall', 'score', 'ranking': [...]}``
        (ranking: every video's figures, best first; ties broken by video id).

    Raises:
        ValueError: the csv has no row.
    """
    rows = read_official_csv(val_csv)
    if not rows:
        raise ValueError(f"{val_csv}: no row, no video to choose")
    people: dict[str, set] = {}
    actions: dict[str, set] = {}
    for row in rows:
        people.setdefault(row.video, set()).add(row.person_id)
        actions.setdefault(row.video, set()).add(row.label)
    per_video = proposal_quality(proposals, val_csv).per_video
    ranking = []
    for video in sorted(people):
        stats = per_video.get(video)
        recall = stats.recall.get("0.5", 0.0) if stats is not None else 0.0
        ranking.append({"video_id": video, "people": len(people[video]), "actions": len(actions[video]),
                        "recall": round(recall, 4),
                        "score": round(len(people[video]) * len(actions[video]) * recall, 4)})
    ranking.sort(key=lambda entry: (-entry["score"], entry["video_id"]))
    best = ranking[0]
    return {**best, "video": str(videos / f"{best['video_id']}.mp4"), "ranking": ranking}
