"""The assembled action model: backbone -> neck -> head, with multi-view evaluation and BN freezing."""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm

from models.heads import HeadWrapper
from models.losses import AvaCriterion
from models.necks import NO_AUG, BasicNeck, NeckOutput
from models.vit_cache import VitStats


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

    def _features(self, clips: torch.Tensor, vit_stats: VitStats | None = None) -> list:
        if vit_stats is not None:
            # Cached statistics of the frozen ViT stand in for its forward (models/vit_cache.py);
            # the neck and RoI path only use SlowFast, so only the ViT branch changes.
            slow, fast = self.backbone.module(clips)
            return [slow, fast, vit_stats]
        features = self.backbone(clips)
        return list(features) if isinstance(features, (list, tuple)) else [features]

    def _run_head(self, features: list[torch.Tensor], rois: NeckOutput) -> torch.Tensor:
        return self.head(
            features, rois.rois.to(features[0].device), rois.roi_ids, rois.sizes_before_padding
        )

    def forward(self, batch: Mapping, evaluate: bool = False) -> dict:
        """Runs the model on one batch (the datasets' batch contract).

        Args:
            batch: ``clips`` (training: ``[B, 3, T, H, W]``; evaluation: a list of V such tensors),
                ``aug_info`` (training: B dicts; evaluation: V lists of B dicts), ``labels``,
                ``filenames``, ``mid_times``, ``element_index``; optionally ``vit_stats``, the cached
                ViT statistics (training: one ``VitStats``; evaluation: a list over the V views).
            evaluate: evaluation (multi-view, no jitter) instead of training.

        Returns:
            Training: ``{'logits': [N, C], 'targets': [N, C] float32, 'num_rois': N}``.
            Evaluation: ``{'logits': [N, C] float32 (mean over the views where the box survived),
            'targets': [N, C] (from the pkl's labels, as in training), 'filenames', 'mid_times',
            'bboxes', 'element_index', 'box_index'}`` (the last five: lists of N).
        """
        if evaluate:
            return self._evaluate(batch)
        features = self._features(batch["clips"], batch.get("vit_stats"))
        rois = self.neck(
            batch["aug_info"], batch["labels"], batch["filenames"], batch["mid_times"], batch.get("element_index")
        )
        device = features[0].device
        if rois.num_rois == 0:
            empty = features[0].new_zeros((0, self.num_classes))
            return {"logits": empty, "targets": rois.targets.to(device), "num_rois": 0}
        logits = self._run_head(features, rois)
        return {"logits": logits, "targets": rois.targets.to(device), "num_rois": rois.num_rois}

    @torch.no_grad()
    def _evaluate(self, batch: Mapping) -> dict:
        """Multi-view evaluation (docs/numerics.md §7; quirk 20, kept: logits are averaged)."""
        clips: Sequence[torch.Tensor] = batch["clips"]
        views_aug: Sequence[Sequence[Mapping]] = batch["aug_info"]
        if isinstance(clips, torch.Tensor) or len(clips) != len(views_aug):
            raise ValueError("evaluation expects 'clips' and 'aug_info' as lists over the same number of views")
        args = (batch["labels"], batch["filenames"], batch["mid_times"], batch.get("element_index"))
        # The unaugmented pass lists the boxes (and their order) the output is about.
        reference = self.neck([NO_AUG] * len(batch["labels"]), *args)
        # Quirk 4 fixed: views are matched by the running box id, not by list position, so a box
        # dropped for zero area no longer shifts (or crashes) the boxes after it.
        row_of = {bbox_id: row for row, bbox_id in enumerate(reference.bbox_ids)}
        device = clips[0].device if len(clips) else torch.device("cpu")
        sums = torch.zeros((reference.num_rois, self.num_classes), dtype=torch.float32, device=device)
        counts = torch.zeros(reference.num_rois, dtype=torch.int64, device=device)
        view_stats = batch.get("vit_stats") or [None] * len(clips)
        for view_clips, view_aug, stats in zip(clips, views_aug, view_stats):
            rois = self.neck(view_aug, *args)
            keep = [(i, row_of[b]) for i, b in enumerate(rois.bbox_ids) if b in row_of]
            if not keep:
                # Nothing to classify in this view: the backbone would run for nothing (the
                # eval neck draws no random numbers, so skipping it changes no other result).
                continue
            features = self._features(view_clips, stats)
            logits = self._run_head(features, rois).float()
            rows = torch.tensor([row for _, row in keep], dtype=torch.int64, device=logits.device)
            picked = torch.tensor([i for i, _ in keep], dtype=torch.int64, device=logits.device)
            # Summed in view order and divided once, as the original (0 + a is exactly a).
            sums.index_add_(0, rows, logits.index_select(0, picked))
            counts.index_add_(0, rows, torch.ones_like(rows))
        survived = torch.nonzero(counts > 0).flatten()
        logits = sums[survived] / counts[survived].unsqueeze(1).to(torch.float32)
        survived = survived.tolist()
        return {
            "logits": logits,
            "targets": reference.targets[survived].to(device),
            "filenames": [reference.filenames[i] for i in survived],
            "mid_times": [reference.mid_times[i] for i in survived],
            "bboxes": [reference.bboxes[i] for i in survived],
            "element_index": [reference.element_index[i] for i in survived],
            "box_index": [reference.box_index[i] for i in survived],
        }
