"""Temporal transforms of the original SFMViT: which frame numbers of a keyframe window a clip reads.

Each maps the candidate frame numbers of a window to the sampled ones (``datasets.transforms`` builds
them from ``augmentation.temporal``). ``check_positive`` is shared with the spatial transforms.
"""
from __future__ import annotations

import random
from collections.abc import Sequence


def _loop_to_length(window: list[int], size: int) -> list[int]:
    """Repeat ``window`` from its start until it holds ``size`` items (original's looping rule)."""
    if len(window) >= size or not window:
        return window
    return [window[k % len(window)] for k in range(size)]


def center_crop_indices(frame_indices: Sequence[int], size: int, step: int = 1) -> list[int]:
    """Centred window of ``size`` items, looped from its start when short, then every ``step``-th.

    Args:
        frame_indices: candidate frame numbers, in order.
        size: window length before striding (64 in the released configs).
        step: stride inside the window (2 in the released configs).

    Returns:
        ``ceil(size / step)`` frame numbers (fewer only when ``frame_indices`` is empty).
    """
    count = len(frame_indices)
    begin = max(0, count // 2 - size // 2)
    end = min(begin + size, count)
    return _loop_to_length(list(frame_indices[begin:end]), size)[::step]


def temporal_center_crop(start_frame: int, n_frames: int, size: int = 64, step: int = 2) -> list[int]:
    """Frame numbers the original samples for a pkl element (docs/numerics.md §1).

    The candidates are ``start_frame .. start_frame + n_frames - 1``; the clip is centred on
    ``start_frame + n_frames // 2`` (not on ``mid_frame``), and a short window loops from its start,
    so the parity of the sampled frames can switch after the loop (quirk 1).

    Args:
        start_frame: first candidate frame number (frame files are numbered from 1).
        n_frames: number of candidate frames (>= 1).
        size: window length before striding.
        step: stride inside the window.

    Returns:
        ``ceil(size / step)`` frame numbers (32 for the defaults).

    Raises:
        ValueError: ``n_frames`` < 1, or ``size`` / ``step`` < 1.
    """
    if n_frames < 1:
        raise ValueError(f"n_frames must be >= 1, got {n_frames}")
    if size < 1 or step < 1:
        raise ValueError(f"size and step must be >= 1, got size={size}, step={step}")
    return center_crop_indices(range(start_frame, start_frame + n_frames), size, step)


def check_positive(**values: int) -> None:
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")


class TemporalCenterCrop:
    """Centred ``size``-frame window, looped when short, strided by ``step`` (the released choice)."""

    def __init__(self, size: int, step: int = 1) -> None:
        check_positive(size=size, step=step)
        self.size = size
        self.step = step

    def __call__(self, frame_indices: Sequence[int]) -> list[int]:
        """Sample frame numbers; see :func:`center_crop_indices`."""
        return center_crop_indices(frame_indices, self.size, self.step)

    def __repr__(self) -> str:
        return f"TemporalCenterCrop(size={self.size}, step={self.step})"


class TemporalRandomCrop:
    """Window of ``size`` frames at a random start (Python ``random``), looped when short, strided.

    As in the original, the start is drawn from ``0 .. max(0, n - size - 1)``, so the very last
    full window is never chosen.
    """

    def __init__(self, size: int, step: int = 1) -> None:
        check_positive(size=size, step=step)
        self.size = size
        self.step = step

    def __call__(self, frame_indices: Sequence[int]) -> list[int]:
        """Sample frame numbers with one ``random.randint`` draw."""
        begin = random.randint(0, max(0, len(frame_indices) - self.size - 1))
        end = min(begin + self.size, len(frame_indices))
        return _loop_to_length(list(frame_indices[begin:end]), self.size)[:: self.step]

    def __repr__(self) -> str:
        return f"TemporalRandomCrop(size={self.size}, step={self.step})"


class TemporalSampling:
    """Every ``step``-th candidate frame, no cropping."""

    def __init__(self, step: int = 1) -> None:
        check_positive(step=step)
        self.step = step

    def __call__(self, frame_indices: Sequence[int]) -> list[int]:
        """Sample frame numbers."""
        return list(frame_indices[:: self.step])

    def __repr__(self) -> str:
        return f"TemporalSampling(step={self.step})"


# Config ``type`` -> class: the original's names, which are the class names.
TEMPORAL_TRANSFORMS: dict[str, type] = {cls.__name__: cls for cls in (
    TemporalCenterCrop, TemporalRandomCrop, TemporalSampling)}
