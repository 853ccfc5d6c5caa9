"""The assembled action model: backbone -> neck -> head; ``forward`` trains on a batch, ``predict`` evaluates one."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from models.heads import HeadWrapper
from models.losses import AvaCriterion
from models.necks import NO_AUG, BasicNeck, NeckOutput
from structures.batch import AugInfo, ClipView, EvalBatch, Keyframes, TrainBatch


@dataclass(frozen=True)
class TrainOutput:
    """What ``AVAModel.forward`` gives the training loop.

    Attributes:
        logits: ``[N, C]`` for the N kept RoIs of the batch (N may be 0).
        targets: ``[N, C]`` float32 multi-hot (or ``[N, K]`` int64 label lists without ``multi_class``).
    """

    logits: torch.Tensor
    targets: torch.Tensor

    @property
    def num_rois(self) -> int:
        """N, the RoIs the loss is over."""
        return int(self.logits.shape[0])


@dataclass(frozen=True)
class Predictions:
    """What ``AVAModel.predict`` gives the evaluation loop: one entry per kept box, in batch order.

    Attributes:
        logits: ``[N, C]`` float32, the mean over the views where the box survived.
        targets: ``[N, C]`` from the pkl's labels, as in training (for ``val.with_label``).
        filenames: video id of each box.
        mid_times: keyframe time string of each box.
        bboxes: the pkl's own box of each (unclipped, unjittered; 4 floats), as predict.csv prints it.
        element_index: pkl position of each box's element.
        box_index: index of each box in its element's ``labels``.
    """

    logits: torch.Tensor
    targets: torch.Tensor
    filenames: list[str]
    mid_times: list[str]
    bboxes: list[list[float]]
    element_index: list[int]
    box_index: list[int]

    def __len__(self) -> int:
        return len(self.box_index)


class AVAModel(nn.Module):
    """SlowFast + ViT backbone, box neck and RoI head; the original's ``AVA_model``.

    Submodules are registered in the order backbone, neck, head, which is the key order of the
    original's state_dict (``backbone.module.*``, ``backbone.submodule.*``, ``head.module.*``).

    Args:
        backbone: returns a list of feature maps ``[slow, fast, vit]`` for a clip ``[B, 3, T, H, W]``;
            ``has_vit`` says whether it has the ViT stream (``.submodule``).
        neck: boxes -> RoIs (no parameters).
        head: the wrapped head, called with features and RoIs.
        criterion: loss and score activation.
        freeze_bn: keep every BatchNorm under ``backbone`` in eval mode while training.
        vit_eval_mode: keep the frozen ViT in eval mode while training. False reproduces the
            original (quirk 6, kept as the default: drop-path stays active in training).
    """

    def __init__(
        self,
        backbone: nn.Module,
        neck: BasicNeck,
        head: HeadWrapper,
        criterion: AvaCriterion,
        freeze_bn: bool = False,
        vit_eval_mode: bool = False,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.neck = neck
        self.head = head
        self.criterion = criterion
        self.freeze_bn = freeze_bn
        self.vit_eval_mode = vit_eval_mode
        self.train(True)

    @property
    def num_classes(self) -> int:
        """Number of logits per box, C."""
        return self.head.num_classes

    def train(self, mode: bool = True) -> AVAModel:
        """Sets train/eval mode, then re-applies the freezing rules; returns self (quirk 15 fixed).

        Args:
            mode: True for training.

        Returns:
            self.
        """
        super().train(mode)
        if mode and self.freeze_bn:
            # Only BatchNorms under the backbone: the head's BN_vit keeps training on batch
            # statistics (quirk 7, kept for faithful training).
            for module in self.backbone.modules():
                if isinstance(module, _BatchNorm):
                    module.eval()
        if mode and self.vit_eval_mode and self.backbone.has_vit:
            self.backbone.submodule.eval()
        return self

    def activation(self, logits: torch.Tensor) -> torch.Tensor:
        """Scores from logits: ``[N, C]`` -> ``[N, C]`` float32 probabilities (docs/numerics.md §7)."""
        return self.criterion.activation(logits)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Mean BCE of the activated logits against ``[N, C]`` multi-hot targets; a float32 scalar."""
        return self.criterion(logits, targets)

    def box_losses(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Per-box loss, ``[N]`` float32: the mean over classes of the BCE of ``loss``.

        The mean of these over a set of boxes is ``loss`` of that set; per box, they do not depend
        on which other boxes share a batch (the validation loss of ``val.with_label``).
        """
        return self.criterion(logits, targets, reduction="none").mean(dim=1)

    def _features(self, view: ClipView) -> list:
        if view.vit_stats is not None:
            # Cached statistics of the frozen ViT stand in for its forward (models/vit_cache.py);
            # the neck and RoI path only use SlowFast, so only the ViT branch changes.
            slow, fast = self.backbone.module(view.clips)
            return [slow, fast, view.vit_stats]
        features = self.backbone(view.clips)
        return list(features) if isinstance(features, (list, tuple)) else [features]

    def _rois(self, aug_info: Sequence[AugInfo], keyframes: Keyframes) -> NeckOutput:
        return self.neck(aug_info, keyframes.labels, keyframes.filenames, keyframes.mid_times,
                         keyframes.element_index)

    def _run_head(self, features: list[torch.Tensor], rois: NeckOutput) -> torch.Tensor:
        return self.head(
            features, rois.rois.to(features[0].device), rois.roi_ids, rois.sizes_before_padding
        )

    def training_rois(self, batch: TrainBatch) -> NeckOutput:
        """The RoIs ``forward`` would use for ``batch``: its boxes, jittered in training mode.

        The jitter draws from ``np.random`` and nothing before the neck in ``forward`` does, so
        calling this first and passing the result to ``forward`` draws the same numbers as
        ``forward`` alone. The engine uses it to count a micro-batch's RoIs before its forward pass
        (``engine/accumulation.py``).

        Args:
            batch: one view of B clips and their keyframes (only the keyframes and ``aug_info`` are read).
        """
        return self._rois(batch.view.aug_info, batch.keyframes)

    def forward(self, batch: TrainBatch, rois: NeckOutput | None = None) -> TrainOutput:
        """Logits of the (jittered, in training mode) RoIs of a training batch, with their targets.

        Args:
            batch: one view of B clips (with ``vit_stats`` when the ViT cache is on) and their keyframes.
            rois: ``training_rois(batch)`` when already drawn; None draws them here.

        Returns:
            The N kept RoIs' logits ``[N, C]`` and multi-hot targets ``[N, C]`` float32, on the
            clips' device.
        """
        features = self._features(batch.view)
        if rois is None:
            rois = self._rois(batch.view.aug_info, batch.keyframes)
        device = features[0].device
        if rois.num_rois == 0:
            return TrainOutput(features[0].new_zeros((0, self.num_classes)), rois.targets.to(device))
        return TrainOutput(self._run_head(features, rois), rois.targets.to(device))

    @torch.no_grad()
    def predict(self, batch: EvalBatch) -> Predictions:
        """Logits of every box of an evaluation batch, averaged over the views where it survived.

        Multi-view evaluation (docs/numerics.md §7; quirk 20, kept: logits, not scores, are
        averaged). The boxes are the pkl's own, unjittered; a box dropped by every view (zero area
        after the transforms) is left out.

        Args:
            batch: V views of the same B keyframes (each view with ``vit_stats`` when cached).

        Returns:
            The N kept boxes in batch order (keyframe, then box): float32 logits and what each box is.
        """
        keyframes = batch.keyframes
        # The unaugmented pass lists the boxes (and their order) the output is about.
        reference = self._rois([NO_AUG] * len(keyframes), keyframes)
        # Quirk 4 fixed: views are matched by the running box id, not by list position, so a box
        # dropped for zero area no longer shifts (or crashes) the boxes after it.
        row_of = {bbox_id: row for row, bbox_id in enumerate(reference.bbox_ids)}
        device = batch.views[0].clips.device if batch.views else torch.device("cpu")
        sums = torch.zeros((reference.num_rois, self.num_classes), dtype=torch.float32, device=device)
        counts = torch.zeros(reference.num_rois, dtype=torch.int64, device=device)
        for view in batch.views:
            rois = self._rois(view.aug_info, keyframes)
            keep = [(i, row_of[b]) for i, b in enumerate(rois.bbox_ids) if b in row_of]
            if not keep:
                # Nothing to classify in this view: the backbone would run for nothing (the
                # eval neck draws no random numbers, so skipping it changes no other result).
                continue
            logits = self._run_head(self._features(view), rois).float()
            rows = torch.tensor([row for _, row in keep], dtype=torch.int64, device=logits.device)
            picked = torch.tensor([i for i, _ in keep], dtype=torch.int64, device=logits.device)
            # Summed in view order and divided once, as the original (0 + a is exactly a).
            sums.index_add_(0, rows, logits.index_select(0, picked))
            counts.index_add_(0, rows, torch.ones_like(rows))
        survived = torch.nonzero(counts > 0).flatten()
        logits = sums[survived] / counts[survived].unsqueeze(1).to(torch.float32)
        survived = survived.tolist()
        return Predictions(
            logits=logits,
            targets=reference.targets[survived].to(device),
            filenames=[reference.filenames[i] for i in survived],
            mid_times=[reference.mid_times[i] for i in survived],
            bboxes=[reference.bboxes[i] for i in survived],
            element_index=[reference.element_index[i] for i in survived],
            box_index=[reference.box_index[i] for i in survived],
        )
