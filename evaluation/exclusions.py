"""Which unit an exclusions file is in: keyframe seconds (AVA, the evaluator) or frame numbers (Chaotic World).

``check_exclusion_units`` matches a file's keys against the ground truth's keyframes read both ways, so
that the evaluator, which applies the file as written (in seconds, as the original did), can say when a
file names frame numbers instead: Chaotic World's published exclusion files do (docs/numerics.md §11,
quirk 24; DATA.md, sections 1 and 4). ``tools.gt_csv --exclusions`` converts such a file to seconds.
"""
from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from formats.official_csv import FRAME_RATE  # Chaotic World's: frame f is second f / 25

_EXAMPLES = 3


@dataclass(frozen=True)
class ExclusionUnits:
    """How the keyframes of an exclusions file match the ground truth's keyframes.

    Attributes:
        keyframes: distinct ``(video, number)`` keys in the file.
        as_seconds: keys that are ground-truth keyframes when read as seconds (the evaluator's reading).
        as_frames: keys that are ground-truth keyframes when read as frame numbers at ``fps``.
        fps: the frame rate tried.
        examples: a few keys that read as frames and not as seconds, ``"VID,000250 = second 10"``.
    """

    keyframes: int
    as_seconds: int
    as_frames: int
    fps: int
    examples: tuple[str, ...]

    @property
    def look_like_frames(self) -> bool:
        """More keys match as frame numbers than as seconds: the file is most likely in frames."""
        return self.as_frames > self.as_seconds

    def message(self, path: object) -> str:
        """One line saying what was found and what the evaluator does with it."""
        return (f"{path}: {self.keyframes - self.as_seconds} of {self.keyframes} excluded keyframes match no "
                f"ground-truth keyframe; they look like frame numbers at {self.fps} fps ({self.as_frames} match "
                f"as frame / {self.fps}, e.g. {', '.join(self.examples)}). They are applied as written, as the "
                f"original evaluator did, so {self.as_seconds} keyframe(s) are excluded; to exclude the "
                f"keyframes meant, convert the file: python -m tools.gt_csv --csv <official csv> --out <gt csv> "
                f"--exclusions {path} --exclusions-out <exclusions in seconds>")


def frame_to_second(frame: int, fps: int = FRAME_RATE) -> int | None:
    """The second of a keyframe frame number (``250 -> 10`` at 25 fps), None when not a whole second."""
    return frame // fps if frame % fps == 0 else None


def check_exclusion_units(excluded: Iterable[tuple[str, int]], gt_keyframes: Iterable[tuple[str, int]],
                          fps: int = FRAME_RATE) -> ExclusionUnits:
    """Match an exclusions file's keys against the ground truth as seconds and as frame numbers.

    Args:
        excluded: ``(video, number)`` keys as read (``formats.eval_csv.read_exclusions``).
        gt_keyframes: ``(video, second)`` keyframes of the ground truth.
        fps: frame rate for the frame-number reading.

    Returns:
        The counts of both readings, with examples of keys that only the frame reading explains.
    """
    keys = set(excluded)
    truth = set(gt_keyframes)
    as_seconds = {key for key in keys if key in truth}
    examples: list[str] = []
    as_frames = 0
    for video, number in sorted(keys):
        second = frame_to_second(number, fps)
        if second is not None and (video, second) in truth:
            as_frames += 1
            if (video, number) not in as_seconds and len(examples) < _EXAMPLES:
                examples.append(f"{video},{number:06d} = second {second}")
    return ExclusionUnits(len(keys), len(as_seconds), as_frames, fps, tuple(examples))
