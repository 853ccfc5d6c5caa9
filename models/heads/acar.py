"""The ACAR head with HR2O relation layers on SlowFast features, with or without the ViT stream (docs/numerics.md §5)."""
from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align

from models.vit_cache import adapt_cached_vit
from structures.vit_stats import VitStats


def pool_rois(features: torch.Tensor, rois: torch.Tensor, roi_spatial: int) -> torch.Tensor:
    """RoIAlign on a 2-D map with normalised boxes, then a max over the RoI grid.

    Args:
        features: ``[B, C, h, w]`` feature map.
        rois: ``[N, 5]`` rows ``[sample index, x1, y1, x2, y2]`` normalised to [0, 1]; not modified.
        roi_spatial: RoIAlign output size (square).

    Returns:
        ``[N, C]`` in the dtype of ``features``.
    """
    height, width = features.shape[-2:]
    # Scale a copy: the caller's rois are reused for every view and every head call.
    scaled = rois.detach().to(dtype=torch.float32, copy=True)
    scaled[:, [1, 3]] *= width
    scaled[:, [2, 4]] *= height
    # torchvision's defaults (spatial_scale 1, adaptive sampling_ratio, aligned False) are the
    # original's; float32 because roi_align has no bf16 CPU kernel under autocast.
    pooled = roi_align(features.float(), scaled, (roi_spatial, roi_spatial), 1.0, -1, False)
    pooled = F.max_pool2d(pooled, roi_spatial)
    return pooled.reshape(rois.shape[0], -1).to(features.dtype)


class HR2O(nn.Module):
    """High-order relation reasoning: non-local attention among the actors of ONE clip.

    Attention is computed per pixel: actor i attends to every actor j of the clip (itself
    included) with ``softmax_j(<q_i, k_j> / sqrt(hidden_dim))``.

    Args:
        hidden_dim: channels of the input and output.
        kernel_size: of the q/k/v convs (and of the output conv unless ``mlp_1x1``).
        mlp_1x1: use a 1x1 output conv instead.
    """

    def __init__(self, hidden_dim: int = 512, kernel_size: int = 3, mlp_1x1: bool = False) -> None:
        super().__init__()
        self.hidden_dim = hidden_dim
        padding = kernel_size // 2
        self.conv_q = nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=padding, bias=False)
        self.conv_k = nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=padding, bias=False)
        self.conv_v = nn.Conv2d(hidden_dim, hidden_dim, kernel_size, padding=padding, bias=False)
        out_kernel = 1 if mlp_1x1 else kernel_size
        self.conv = nn.Conv2d(hidden_dim, hidden_dim, out_kernel, padding=out_kernel // 2, bias=False)
        self.norm = nn.GroupNorm(1, hidden_dim, affine=True)
        self.dp = nn.Dropout(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Refines actor-context features.

        Args:
            x: ``[n, D, s, s]``, the n actors of one clip.

        Returns:
            ``[n, D, s, s]``, ``x`` plus the attended residual.
        """
        query, key, value = self.conv_q(x), self.conv_k(x), self.conv_v(x)
        logits = torch.einsum("icyx,jcyx->ijyx", query, key) / (self.hidden_dim**0.5)
        attention = logits.softmax(dim=1)
        virtual = torch.einsum("ijyx,jcyx->icyx", attention, value)
        virtual = self.dp(self.conv(F.relu(self.norm(virtual))))
        return x + virtual


class ACARHead(nn.Module):
    """Actor-context-actor relation head over ``[slow, fast, vit]`` (SFMViT) or ``[slow, fast]`` (ACAR-Net).

    Attribute names (and their creation order) give the originals' state_dict keys:
    ``BN_vit``, ``conv_auto`` (SFMViT only), ``conv_reduce``, ``conv1``, ``conv2``, ``hr2o.{i}.*``,
    ``fc1``, ``fc2``. Without a ViT stream (``vit_channels=None``) this is ACAR-Net's own head: its
    code is SFMViT's less the ViT adapter (``BN_vit``, ``conv_auto``), nothing else changes.

    Args:
        width: channels after concatenating slow, fast and the adapted ViT features.
        roi_spatial: RoIAlign output size.
        num_classes: number of logits per RoI.
        dropout: dropout before ``fc2`` (0 = none).
        bias: whether ``fc2`` has a bias.
        reduce_dim: channels after ``conv_reduce``.
        hidden_dim: channels of the actor-context path and HR2O.
        downsample: ``'max2x2'`` (3x3 max-pool, stride 2) or ``'none'`` before HR2O.
        depth: number of HR2O layers.
        kernel_size: of ``conv2``'s successors in HR2O.
        mlp_1x1: HR2O output conv is 1x1.
        vit_channels: channels of the ViT feature; set by the model builder from the backbone
            (1408 for ViT-g, which the original hard-codes); None for a backbone without ViT
            (ACAR-Net): no adapter, two input streams.
    """

    def __init__(
        self,
        width: int,
        roi_spatial: int = 7,
        num_classes: int = 60,
        dropout: float = 0.0,
        bias: bool = False,
        reduce_dim: int = 1024,
        hidden_dim: int = 512,
        downsample: str = "max2x2",
        depth: int = 2,
        kernel_size: int = 3,
        mlp_1x1: bool = False,
        vit_channels: int | None = 1408,
    ) -> None:
        super().__init__()
        if downsample not in ("none", "max2x2"):
            raise ValueError(f"downsample must be 'none' or 'max2x2', got {downsample!r}")
        self.roi_spatial = roi_spatial
        self.num_classes = num_classes
        self.has_vit = vit_channels is not None
        if vit_channels is not None:
            # Adapter of the ViT stream: its statistics and scale differ from SlowFast's.
            self.BN_vit = nn.BatchNorm3d(vit_channels)
            self.conv_auto = nn.Conv3d(vit_channels, vit_channels, kernel_size=(1, 3, 3), stride=1, padding=0)
        self.conv_reduce = nn.Conv2d(width, reduce_dim, 1, bias=False)
        self.conv1 = nn.Conv2d(reduce_dim * 2, hidden_dim, 1, bias=False)
        self.conv2 = nn.Conv2d(hidden_dim, hidden_dim, 3, bias=False)
        if downsample == "max2x2":
            self.downsample: nn.Module = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        else:
            self.downsample = nn.Identity()
        self.hr2o = nn.Sequential(*[HR2O(hidden_dim, kernel_size, mlp_1x1) for _ in range(depth)])
        self.gap = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Linear(reduce_dim, hidden_dim, bias=False)
        self.fc2 = nn.Linear(hidden_dim * 2, num_classes, bias=bias)
        self.dp = nn.Dropout(dropout) if dropout > 0 else None

    def fuse_features(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Adapts the ViT stream (if any), averages each stream over time, concatenates and reduces.

        Args:
            features: ``[slow [B, Cs, Ts, h, w], fast [B, Cf, Tf, h, w], vit [B, Cv, Tv, hv, wv]]``;
                the ViT entry may instead be its cached ``VitStats`` (``models/vit_cache.py``),
                which gives the same result without the ViT's full feature map. Without a ViT
                stream (ACAR-Net), ``[slow, fast]``.

        Returns:
            ``[B, reduce_dim, h, w]``, with h, w those of the slow feature.
        """
        expected = 3 if self.has_vit else 2
        if len(features) != expected:
            names = "[slow, fast, vit]" if self.has_vit else "[slow, fast]"
            raise ValueError(f"the ACAR head expects {names} features, got {len(features)} tensors")
        streams = list(features)
        if self.has_vit:
            vit = streams[2]
            if isinstance(vit, VitStats):
                # Already averaged over time: the temporal part of the pooling below is then a no-op.
                streams[2] = adapt_cached_vit(self.BN_vit, self.conv_auto, vit)
            else:
                streams[2] = self.conv_auto(self.BN_vit(vit))
        height, width = streams[0].shape[-2:]
        # Adaptive pooling to (1, h, w) is a plain temporal mean when the spatial sizes agree (the
        # shipped sizes); for other sizes it resamples the ViT grid to the slow grid.
        pooled = [F.adaptive_avg_pool3d(f, (1, height, width)).flatten(2, 3) for f in streams]
        return self.conv_reduce(torch.cat(pooled, dim=1))

    def relate(self, context: torch.Tensor, actors: torch.Tensor) -> torch.Tensor:
        """Actor-context features of ONE clip, refined by HR2O.

        Args:
            context: ``[reduce_dim, eh, ew]`` the clip's reduced map, cropped to its unpadded part.
            actors: ``[n, reduce_dim]`` the RoI features of that clip's actors.

        Returns:
            ``[n, hidden_dim]``.
        """
        count = actors.shape[0]
        tiled_context = context.unsqueeze(0).expand(count, -1, -1, -1)
        tiled_actors = actors[:, :, None, None].expand(-1, -1, context.shape[1], context.shape[2])
        fused = torch.cat([tiled_context, tiled_actors], dim=1)
        fused = F.relu(self.conv2(F.relu(self.conv1(fused))))
        fused = self.hr2o(self.downsample(fused))
        return self.gap(fused).flatten(1)

    def forward(
        self,
        features: Sequence[torch.Tensor],
        rois: torch.Tensor,
        roi_ids: Sequence[int],
        sizes_before_padding: Sequence[Sequence[float]],
    ) -> torch.Tensor:
        """Classifies every RoI.

        Args:
            features: ``[slow, fast, vit]`` backbone outputs (see ``fuse_features``).
            rois: ``[N, 5]`` rows ``[sample index, x1, y1, x2, y2]``, normalised, grouped by sample.
            roi_ids: ``B + 1`` cumulative RoI counts per sample.
            sizes_before_padding: per sample ``[1 / pw, 1 / ph]``.

        Returns:
            ``[N, num_classes]`` logits.
        """
        fused = self.fuse_features(features)
        height, width = fused.shape[-2:]
        actors = pool_rois(fused, rois, self.roi_spatial)
        relations = []
        for sample in range(fused.shape[0]):
            start, stop = roi_ids[sample], roi_ids[sample + 1]
            if stop == start:
                continue
            eff_h = math.ceil(height * sizes_before_padding[sample][1])
            eff_w = math.ceil(width * sizes_before_padding[sample][0])
            relations.append(self.relate(fused[sample, :, :eff_h, :eff_w], actors[start:stop]))
        relation = torch.cat(relations, dim=0) if relations else actors.new_zeros((0, self.fc1.out_features))
        outputs = torch.cat([F.relu(self.fc1(actors)), relation], dim=1)
        if self.dp is not None:
            outputs = self.dp(outputs)
        return self.fc2(outputs)
