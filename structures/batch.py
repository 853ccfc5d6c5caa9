"""The batches the collate function makes and the model reads: one view of clips to train, several to evaluate.

``datasets.ava.collate_batch`` makes a ``TrainBatch`` from training items and an ``EvalBatch`` from
evaluation items; ``models.model.AVAModel`` takes the first in ``forward`` and the second in
``predict``. Both hold the batch's keyframes (``Keyframes``: the pkl's boxes and labels and where
they come from) and its pixels (``ClipView``: B clips of one spatial view and how each was
augmented). The ViT-cache loader (``engine/vit_cache_loader.py``) fills ``ClipView.vit_stats``.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TypedDict

import torch

from structures.vit_stats import VitStats


class AugInfo(TypedDict):
    """How one clip was augmented, all normalised to the frame (``models.necks.get_bbox_after_aug``).

    Attributes:
        crop_box: ``[x1, y1, x2, y2]`` of the crop in the original frame.
        flip: whether the clip was mirrored.
        pad_ratio: ``[W / W_i, H / H_i]``, the padding of the clip to the batch's largest size.
    """

    crop_box: list[float]
    flip: bool
    pad_ratio: list[float]


@dataclass(frozen=True)
class Keyframes:
    """The B keyframes (pkl elements) of a batch, in batch order.

    Attributes:
        labels: per keyframe, the element's ``labels`` list as in the pkl (``bounding_box``
            normalised, ``label`` ids 0..C-1, ``person_id``).
        filenames: per keyframe, its video id (the original's name for it).
        mid_times: per keyframe, ``str(element['time'])``.
        element_index: per keyframe, its position in the pkl.
    """

    labels: list[list[dict]]
    filenames: list[str]
    mid_times: list[str]
    element_index: list[int]

    def __len__(self) -> int:
        return len(self.labels)


@dataclass(frozen=True)
class ClipView:
    """B clips of one spatial view of the batch's keyframes.

    Attributes:
        clips: ``[B, 3, T, H, W]`` float32, zero-padded right and bottom to the largest clip.
        aug_info: per clip, its augmentation (``pad_ratio`` set by the collate function).
        vit_stats: the frozen ViT's cached statistics of the B clips (``vit_cache`` runs), which
            the model then uses instead of running the ViT; None otherwise.
    """

    clips: torch.Tensor
    aug_info: list[AugInfo]
    vit_stats: VitStats | None = None

    def to(self, device: torch.device, non_blocking: bool = False) -> ClipView:
        """The same view with its tensors on ``device``."""
        stats = None if self.vit_stats is None else self.vit_stats.to(device, non_blocking=non_blocking)
        return replace(self, clips=self.clips.to(device, non_blocking=non_blocking), vit_stats=stats)

    def pin_memory(self) -> ClipView:
        """The same view with its clips in pinned memory (called by a DataLoader with ``pin_memory``)."""
        return replace(self, clips=self.clips.pin_memory())

    def with_vit_stats(self, stats: VitStats) -> ClipView:
        """The same view carrying ``stats``."""
        return replace(self, vit_stats=stats)


@dataclass(frozen=True)
class TrainBatch:
    """A training batch: one randomly augmented clip per keyframe.

    Attributes:
        view: the B clips.
        keyframes: the B keyframes they show.
    """

    view: ClipView
    keyframes: Keyframes

    def to(self, device: torch.device, non_blocking: bool = False) -> TrainBatch:
        """The same batch with its tensors on ``device``."""
        return replace(self, view=self.view.to(device, non_blocking))

    def pin_memory(self) -> TrainBatch:
        """The same batch with its clips in pinned memory."""
        return replace(self, view=self.view.pin_memory())


@dataclass(frozen=True)
class EvalBatch:
    """An evaluation batch: V test-time views (e.g. plain and flipped) of the same B keyframes.

    Attributes:
        views: the V views, each of B clips in keyframe order.
        keyframes: the B keyframes.
    """

    views: list[ClipView]
    keyframes: Keyframes

    def to(self, device: torch.device, non_blocking: bool = False) -> EvalBatch:
        """The same batch with its tensors on ``device``."""
        return replace(self, views=[view.to(device, non_blocking) for view in self.views])

    def pin_memory(self) -> EvalBatch:
        """The same batch with its clips in pinned memory."""
        return replace(self, views=[view.pin_memory() for view in self.views])
