"""The `basic` neck: turns per-clip person boxes into RoIs, multi-hot targets and per-box metadata."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

# The augmentation of a clip that was neither cropped, flipped nor padded (the eval reference pass).
NO_AUG: dict = {"crop_box": [0.0, 0.0, 1.0, 1.0], "flip": False, "pad_ratio": [1.0, 1.0]}


def bbox_jitter(box: Sequence[float], num: int, scale: float) -> list[list[float]]:
    """Random box perturbations for training (docs/numerics.md §6).

    Offsets are drawn from ``np.random`` (global state) so that a run seeded like the original
    draws the same numbers in the same order.

    Args:
        box: ``[x1, y1, x2, y2]`` normalised to [0, 1].
        num: 1 -> one jittered box replaces the original; > 1 -> the original plus ``num - 1``
            jittered copies.
        scale: maximum offset as a fraction of the box width (x) or height (y).

    Returns:
        The list of boxes, each ``[x1, y1, x2, y2]`` as python floats.
    """
    width, height = box[2] - box[0], box[3] - box[1]

    def shifted(offsets: np.ndarray) -> list[float]:
        # Quirk 5, kept: y1 is bounded with min(., 1) and x2 with max(., 0); the later clip to the
        # crop box makes the swap harmless, and keeping it keeps the numbers identical.
        return [
            float(max(box[0] + offsets[0] * width, 0.0)),
            float(min(box[1] + offsets[1] * height, 1.0)),
            float(max(box[2] + offsets[2] * width, 0.0)),
            float(min(box[3] + offsets[3] * height, 1.0)),
        ]

    if num == 1:
        return [shifted(np.random.uniform(-scale, scale, 4))]
    offsets = np.random.uniform(-scale, scale, [num - 1, 4])
    return [[float(v) for v in box]] + [shifted(row) for row in offsets]


def get_bbox_after_aug(
    aug_info: Mapping | None, box: Sequence[float], aug_threshold: float = 0.0
) -> list[float] | None:
    """Maps an original-frame box into the coordinates of an augmented clip.

    The box is clipped to the crop; if what is left has an area <= ``aug_threshold`` x the
    original area, the box is dropped. Otherwise it is expressed in crop coordinates, mirrored when
    the clip was flipped, and divided by the padding ratio.

    Args:
        aug_info: ``{'crop_box': [x1, y1, x2, y2], 'flip': bool, 'pad_ratio': [pw, ph]}``, all
            normalised; None means no augmentation.
        box: ``[x1, y1, x2, y2]`` normalised to the original frame.
        aug_threshold: minimum kept fraction of the area.

    Returns:
        ``[x1, y1, x2, y2]`` normalised to the padded clip, or None when the box is dropped.
    """
    if aug_info is None:
        return [float(v) for v in box]
    crop = aug_info["crop_box"]
    crop_w, crop_h = crop[2] - crop[0], crop[3] - crop[1]
    left = max(min(box[0], crop[2]), crop[0])
    right = max(min(box[2], crop[2]), crop[0])
    top = max(min(box[1], crop[3]), crop[1])
    bottom = max(min(box[3], crop[3]), crop[1])
    # A box inverted in both x and y has a positive product here and is kept, as in the original.
    if (bottom - top) * (right - left) <= (box[3] - box[1]) * (box[2] - box[0]) * aug_threshold:
        return None
    out = [(left - crop[0]) / crop_w, (top - crop[1]) / crop_h, (right - crop[0]) / crop_w, (bottom - crop[1]) / crop_h]
    if aug_info["flip"]:
        out = [1.0 - out[2], out[1], 1.0 - out[0], out[3]]
    pad_w, pad_h = aug_info["pad_ratio"]
    return [float(out[0] / pad_w), float(out[1] / pad_h), float(out[2] / pad_w), float(out[3] / pad_h)]


@dataclass
class NeckOutput:
    """RoIs of a batch and what each one belongs to (one entry per kept RoI, in batch order).

    Attributes:
        rois: ``[N, 5]`` float32 rows ``[sample index, x1, y1, x2, y2]``, normalised to the clip.
        roi_ids: ``B + 1`` cumulative counts: the RoIs of sample b are ``rois[roi_ids[b]:roi_ids[b+1]]``.
        targets: ``[N, C]`` float32 multi-hot (multi_class) or ``[N, K]`` int64 label lists.
        sizes_before_padding: per sample ``[1 / pw, 1 / ph]``, the unpadded fraction of the clip.
        filenames: video id of each RoI.
        mid_times: keyframe time string of each RoI.
        bboxes: the original pkl box of each RoI (unclipped, unjittered; 4 python floats).
        bbox_ids: running number of the box over the whole batch, dropped boxes included; the
            same box has the same id in every view, which is how views are matched.
        element_index: pkl position of the element each RoI comes from.
        box_index: index of the box in its element's ``labels``.
    """

    rois: torch.Tensor
    roi_ids: list[int]
    targets: torch.Tensor
    sizes_before_padding: list[list[float]]
    filenames: list[str] = field(default_factory=list)
    mid_times: list[str] = field(default_factory=list)
    bboxes: list[list[float]] = field(default_factory=list)
    bbox_ids: list[int] = field(default_factory=list)
    element_index: list[int] = field(default_factory=list)
    box_index: list[int] = field(default_factory=list)

    @property
    def num_rois(self) -> int:
        """Number of kept RoIs, N."""
        return len(self.bbox_ids)


class BasicNeck(nn.Module):
    """Boxes -> RoIs, targets and metadata; jitters boxes in training only. Has no parameters.

    Args:
        aug_threshold: a box whose clipped area is <= this fraction of its area is dropped.
        bbox_jitter: ``{'num': int (default 1), 'scale': float}``, or None for no jitter.
        num_classes: width C of the multi-hot targets.
        multi_class: True -> multi-hot float targets; False -> the raw label lists as int64.
    """

    def __init__(
        self,
        aug_threshold: float = 0.0,
        bbox_jitter: Mapping[str, float] | None = None,
        num_classes: int = 60,
        multi_class: bool = True,
    ) -> None:
        super().__init__()
        if bbox_jitter is not None:
            unknown = set(bbox_jitter) - {"num", "scale"}
            if unknown or "scale" not in bbox_jitter:
                raise ValueError(
                    f"bbox_jitter must be a mapping with 'scale' and optionally 'num', got {dict(bbox_jitter)}"
                )
            bbox_jitter = {"num": int(bbox_jitter.get("num", 1)), "scale": float(bbox_jitter["scale"])}
            if bbox_jitter["num"] < 1:
                raise ValueError(f"bbox_jitter.num must be >= 1, got {bbox_jitter['num']}")
        self.aug_threshold = aug_threshold
        self.bbox_jitter = bbox_jitter
        self.num_classes = num_classes
        self.multi_class = multi_class

    def _target(self, labels: Sequence[int]) -> torch.Tensor:
        if not self.multi_class:
            return torch.tensor(list(labels), dtype=torch.int64)
        target = torch.zeros(self.num_classes, dtype=torch.float32)
        if len(labels):
            index = torch.tensor(list(labels), dtype=torch.int64)
            if int(index.min()) < 0 or int(index.max()) >= self.num_classes:
                raise ValueError(f"label {list(labels)} outside 0..{self.num_classes - 1}")
            target[index] = 1.0
        return target

    def forward(
        self,
        aug_info: Sequence[Mapping | None],
        labels: Sequence[Sequence[Mapping]],
        filenames: Sequence[str],
        mid_times: Sequence[str],
        element_index: Sequence[int] | None = None,
    ) -> NeckOutput:
        """Lists the RoIs of a batch.

        Args:
            aug_info: per sample, the augmentation dict of its clip (see ``get_bbox_after_aug``).
            labels: per sample, the pkl element's ``labels`` entries (``bounding_box``, ``label``).
            filenames: per sample, the video id.
            mid_times: per sample, ``str(element['time'])``.
            element_index: per sample, its position in the pkl (default: 0..B-1).

        Returns:
            The RoIs, on the CPU; the caller moves them to the feature device.
        """
        if element_index is None:
            element_index = list(range(len(labels)))
        rows: list[list[float]] = []
        targets: list[torch.Tensor] = []
        out = NeckOutput(rois=torch.empty(0), roi_ids=[0], targets=torch.empty(0), sizes_before_padding=[])
        bbox_id = -1
        for sample, sample_aug in enumerate(aug_info):
            pad_ratio = sample_aug["pad_ratio"] if sample_aug is not None else [1.0, 1.0]
            out.sizes_before_padding.append([1.0 / pad_ratio[0], 1.0 / pad_ratio[1]])
            for box_no, entry in enumerate(labels[sample]):
                # Counts every box, kept or not, so that ids match between views (quirk 4 is fixed
                # in the model, which indexes views by this id instead of by list position).
                bbox_id += 1
                box = [float(v) for v in entry["bounding_box"]]
                if self.training and self.bbox_jitter is not None:
                    candidates = bbox_jitter(box, self.bbox_jitter["num"], self.bbox_jitter["scale"])
                else:
                    candidates = [box]
                for candidate in candidates:
                    kept = get_bbox_after_aug(sample_aug, candidate, self.aug_threshold)
                    if kept is None:
                        continue
                    rows.append([float(sample)] + kept)
                    targets.append(self._target(entry["label"]))
                    out.filenames.append(filenames[sample])
                    out.mid_times.append(mid_times[sample])
                    out.bboxes.append(box)  # quirk 19, kept: the pkl box, not the clipped RoI
                    out.bbox_ids.append(bbox_id)
                    out.element_index.append(int(element_index[sample]))
                    out.box_index.append(box_no)
            out.roi_ids.append(len(rows))
        out.rois = torch.tensor(rows, dtype=torch.float32).reshape(len(rows), 5)
        if targets and not self.multi_class and len({len(t) for t in targets}) > 1:
            raise ValueError("multi_class False needs the same number of labels on every box of a batch")
        if targets:
            out.targets = torch.stack(targets)
        else:
            out.targets = torch.zeros((0, self.num_classes if self.multi_class else 1), dtype=torch.float32)
        return out


def basic(
    aug_threshold: float = 0.0,
    bbox_jitter: Mapping[str, float] | None = None,
    num_classes: int = 60,
    multi_class: bool = True,
) -> BasicNeck:
    """Builds the `basic` neck from ``model.neck.kwargs`` (see ``BasicNeck``)."""
    return BasicNeck(
        aug_threshold=aug_threshold, bbox_jitter=bbox_jitter, num_classes=num_classes, multi_class=multi_class
    )
