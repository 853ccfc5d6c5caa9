"""Exact cached form of the frozen ViT branch of the ACAR head: clip statistics in, adapted features out.

The head uses the ViT feature ``v [B, C, T, H, W]`` only through ``BN_vit`` (a per-channel affine
BatchNorm3d), ``conv_auto`` (a per-frame 1x3x3 convolution with bias) and an adaptive average pool
whose temporal part is a plain mean over T. All three are linear in v once the BatchNorm statistics
are fixed, so they commute with the temporal mean:

    mean_t conv(gamma * (v_t - mu) / sqrt(var + eps) + beta) = conv(gamma * (m - mu) / sqrt(var + eps) + beta)

with ``m = mean_t v``. The batch statistics of a training step follow from per-clip channel sums
``S1 = sum_{t,h,w} v`` and ``S2 = sum_{t,h,w} v^2`` (kept in float64, since ``S2 / N - mu^2``
cancels): ``mu = sum_b S1 / N``, ``var = sum_b S2 / N - mu^2`` (biased, for normalising) and
``var * N / (N - 1)`` (unbiased, for ``running_var``), N = B * T * H * W. A clip thus needs
``m [C, H, W]`` plus ``2 C`` numbers, about 1/T of the full feature. Exact only for a ViT in eval
mode: in train mode its drop-path makes every forward different (docs/numerics.md quirk 6).
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from structures.vit_stats import VitStats

# Bumped whenever what the statistics mean changes, so that older cached values never match.
STATS_VERSION = 1


def compute_vit_stats(features: torch.Tensor) -> VitStats:
    """Reduce ViT features to the statistics the head needs.

    Args:
        features: ``[B, C, T, H, W]`` ViT output (any float dtype).

    Returns:
        ``VitStats`` on the device of ``features``; sums in float64, the mean map in float32.
    """
    if features.dim() != 5:
        raise ValueError(f"expected ViT features [B, C, T, H, W], got {list(features.shape)}")
    wide = features.detach().to(torch.float64)
    time_steps, height, width = features.shape[2:]
    return VitStats(
        mean_map=wide.mean(dim=2).to(torch.float32),
        sums=wide.sum(dim=(2, 3, 4)),
        sq_sums=wide.square().sum(dim=(2, 3, 4)),
        count=int(time_steps * height * width),
    )


def _normalising_statistics(norm: nn.BatchNorm3d, stats: VitStats) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and variance ``[C]`` that ``norm`` would normalise with, updating its running buffers
    exactly as ``nn.BatchNorm3d.forward`` does (same momentum rule, unbiased running variance)."""
    use_batch = norm.training or (norm.running_mean is None and norm.running_var is None)
    if not use_batch:
        return norm.running_mean, norm.running_var
    total = stats.count * stats.batch_size
    if total <= 1:
        raise ValueError(f"Expected more than 1 value per channel when training, got {total} for BN_vit")
    mean = stats.sums.sum(dim=0) / total
    var = (stats.sq_sums.sum(dim=0) / total - mean.square()).clamp_min(0.0)
    if norm.training and norm.track_running_stats and norm.running_mean is not None:
        with torch.no_grad():
            factor = 0.0 if norm.momentum is None else norm.momentum
            if norm.num_batches_tracked is not None:
                norm.num_batches_tracked.add_(1)
                factor = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
            dtype = norm.running_mean.dtype
            norm.running_mean.mul_(1.0 - factor).add_(mean.to(dtype), alpha=factor)
            norm.running_var.mul_(1.0 - factor).add_((var * (total / (total - 1))).to(dtype), alpha=factor)
    return mean, var


def adapt_cached_vit(norm: nn.BatchNorm3d, conv: nn.Conv3d, stats: VitStats) -> torch.Tensor:
    """``conv(norm(v))`` averaged over time, computed from the statistics of v alone.

    Equal (up to float rounding) to ``conv(norm(v)).mean(dim=2, keepdim=True)`` for the features v
    the statistics came from, including the update of ``norm``'s running statistics in training.

    Args:
        norm: the head's ``BN_vit`` (train mode: batch statistics; eval mode: running ones).
        conv: the head's ``conv_auto`` (kernel ``(1, k, k)``: acts on each frame alone).
        stats: statistics of the B clips of the batch.

    Returns:
        ``[B, C_out, 1, H', W']`` where ``conv`` maps ``[B, C, 1, H, W]`` to that shape.
    """
    if conv.kernel_size[0] != 1 or conv.stride[0] != 1 or conv.padding[0] != 0:
        raise ValueError(f"the cached ViT path needs a per-frame conv (temporal kernel 1), got {conv}")
    mean, var = _normalising_statistics(norm, stats)
    dtype = stats.mean_map.dtype
    scale = torch.rsqrt(var.to(torch.float64) + norm.eps).to(dtype)
    normed = (stats.mean_map - mean.to(dtype)[None, :, None, None]) * scale[None, :, None, None]
    if norm.affine:
        normed = normed * norm.weight[None, :, None, None] + norm.bias[None, :, None, None]
    return conv(normed.unsqueeze(2))


def describe_vit(vit: nn.Module) -> str:
    """Text describing everything about the ViT that shapes its output besides its weights.

    Layer structure (``repr``), input geometry, output grid and the attention implementation.
    """
    blocks = getattr(vit, "blocks", [])
    attn = sorted({str(getattr(getattr(block, "attn", None), "attn_impl", "?")) for block in blocks})
    geometry = {name: getattr(vit, name, None) for name in ("img_size", "all_frames", "grid_size", "embed_dim")}
    # The parameters' own dtype, since state_dict() may report float32 for weights kept in bf16.
    dtypes = sorted({str(param.dtype) for param in vit.parameters()})
    return f"{type(vit).__name__}|{geometry}|attn={attn}|dtypes={dtypes}|{vit!r}"


def vit_fingerprint(vit: nn.Module) -> str:
    """Digest of the ViT's description and of every weight and buffer, bit for bit.

    Args:
        vit: the frozen ViT (any device; tensors are copied to the CPU one at a time).

    Returns:
        32 hex digits; any change of a weight, shape, dtype or layer changes it.
    """
    digest = hashlib.blake2b(digest_size=16)
    digest.update(f"stats-v{STATS_VERSION}|{describe_vit(vit)}".encode())
    for name, tensor in vit.state_dict().items():
        flat = tensor.detach().to("cpu").contiguous().reshape(-1)
        digest.update(f"|{name}|{tensor.dtype}|{list(tensor.shape)}|".encode())
        digest.update(flat.view(torch.uint8).numpy())
    return digest.hexdigest()
