"""The multi-label action loss and the matching score activation (docs/numerics.md §7, §9)."""
from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

# Chaotic World keeps AVA's "pose" convention: class ids 1..13 are mutually exclusive.
DEFAULT_NUM_POSE_CLASSES = 13


class AvaCriterion:
    """BCE over per-class probabilities, with an optional joint softmax over the pose classes.

    With ``pose_softmax`` the first ``num_pose_classes`` logits share one softmax and the others get
    an independent sigmoid; the probabilities are clamped to [0, 1] and fed to
    ``binary_cross_entropy`` (quirk 3, kept: the same activation gives the predict.csv scores).
    Without it, every class is an independent sigmoid and the loss is BCE-with-logits.

    Holds no parameters, so it adds nothing to the model's state_dict.
    """

    def __init__(self, pose_softmax: bool, num_pose_classes: int) -> None:
        if num_pose_classes < 0:
            raise ValueError(f"num_pose_classes must be >= 0, got {num_pose_classes}")
        self.pose_softmax = pose_softmax
        self.num_pose_classes = num_pose_classes

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Turns logits into per-class probabilities.

        Args:
            logits: ``[N, C]`` raw head outputs, any float dtype.

        Returns:
            ``[N, C]`` float32 probabilities in [0, 1].
        """
        logits = logits.float()
        if not self.pose_softmax:
            return torch.sigmoid(logits)
        if logits.shape[1] < self.num_pose_classes:
            raise ValueError(
                f"pose_softmax needs at least {self.num_pose_classes} classes, got logits of shape "
                f"{tuple(logits.shape)}"
            )
        pose = torch.softmax(logits[:, : self.num_pose_classes], dim=1)
        others = torch.sigmoid(logits[:, self.num_pose_classes :])
        # The clamp is the original's; it only matters for rounding just outside [0, 1].
        return torch.cat([pose, others], dim=1).clamp(0.0, 1.0)

    def __call__(self, logits: torch.Tensor, targets: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
        """Binary cross-entropy over the N x C entries.

        Args:
            logits: ``[N, C]`` raw head outputs.
            targets: ``[N, C]`` multi-hot targets (0/1).
            reduction: ``mean`` (the training loss) or ``none`` (the ``[N, C]`` entries).

        Returns:
            A float32 scalar, or ``[N, C]`` float32 with ``reduction='none'``.
        """
        if logits.shape != targets.shape:
            raise ValueError(f"logits {tuple(logits.shape)} and targets {tuple(targets.shape)} differ in shape")
        # binary_cross_entropy refuses autocast on CUDA, and the loss belongs in float32 anyway.
        with torch.autocast(device_type=logits.device.type, enabled=False):
            targets = targets.float()
            if self.pose_softmax:
                return F.binary_cross_entropy(self.activation(logits), targets, reduction=reduction)
            return F.binary_cross_entropy_with_logits(logits.float(), targets, reduction=reduction)


def ava_criterion(pose_softmax: bool = False, num_pose_classes: int = DEFAULT_NUM_POSE_CLASSES) -> AvaCriterion:
    """Builds the ``ava_criterion`` loss of the config (``loss.kwargs`` are these arguments).

    Args:
        pose_softmax: softmax over the first ``num_pose_classes`` classes jointly (the CW configs
            set True); False gives independent sigmoids everywhere.
        num_pose_classes: extension; how many leading classes share the softmax (13 for CW).

    Returns:
        The criterion; ``criterion(logits, targets)`` is the loss, ``criterion.activation`` the scores.
    """
    return AvaCriterion(pose_softmax=pose_softmax, num_pose_classes=num_pose_classes)


LOSSES: dict[str, Callable[..., AvaCriterion]] = {"ava_criterion": ava_criterion}
