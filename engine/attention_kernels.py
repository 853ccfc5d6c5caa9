"""Which SDPA kernel (flash, efficient, cudnn, math) torch runs for the ViT's attention, asked without running it.

Reads torch's private dispatcher choice (`torch._fused_sdp_choice`, `torch._C._get_sdp_priority_order`)
where they exist, so it lives with the engine, which logs the kernel of a run; the ViT itself
(`models.backbones.vit`) only calls `F.scaled_dot_product_attention`.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from models.backbones.vit import VisionTransformer


# Names used in logs for torch's SDPA kernels. On the CPU "flash" is torch's CPU flash kernel
# (``_scaled_dot_product_flash_attention_for_cpu``), the only fused CPU path.
SDPA_BACKEND_NAMES: dict[SDPBackend, str] = {
    SDPBackend.FLASH_ATTENTION: "flash",
    SDPBackend.EFFICIENT_ATTENTION: "efficient",
    SDPBackend.CUDNN_ATTENTION: "cudnn",
    SDPBackend.MATH: "math",
    SDPBackend.OVERRIDEABLE: "overrideable",
}
# The operator each kernel is on each device type, and what it is, for the run's log: "flash" on a
# CPU is torch's fused CPU kernel, not the CUDA FlashAttention the bare word makes a reader expect.
SDPA_OPERATORS: dict[tuple[str, str], tuple[str, str]] = {
    ("cpu", "flash"): ("aten::_scaled_dot_product_flash_attention_for_cpu", "torch's fused CPU attention"),
    ("cuda", "flash"): ("aten::_scaled_dot_product_flash_attention", "FlashAttention, CUDA"),
    ("cuda", "efficient"): ("aten::_scaled_dot_product_efficient_attention", "memory-efficient attention, CUDA"),
    ("cuda", "cudnn"): ("aten::_scaled_dot_product_cudnn_attention", "cuDNN attention"),
}


def describe_sdpa_kernel(backend: str, device_type: str) -> str:
    """What ``F.scaled_dot_product_attention`` runs for ``backend`` (a `sdpa_backend` name) on a device type.

    Returns:
        e.g. ``"aten::_scaled_dot_product_flash_attention_for_cpu (torch's fused CPU attention)"`` for
        ``('flash', 'cpu')``; the math path is named as such (it is no fused kernel).
    """
    if backend == "math":
        return "the unfused math path (matmul, softmax, matmul)"
    operator = SDPA_OPERATORS.get((device_type, backend))
    if operator is None:
        return f"the {backend!r} kernel on {device_type}"
    return f"{operator[0]} ({operator[1]})"


def _attention_inputs(vit: VisionTransformer, batch_size: int, device: torch.device | None,
                      dtype: torch.dtype | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float, float]:
    """Zero q, k, v laid out exactly as `Attention.forward` makes them (same shapes and strides)."""
    weight = vit.patch_embed.proj.weight
    device = torch.device(device) if device is not None else weight.device
    if dtype is None:
        # Under autocast the qkv Linear returns the autocast dtype; otherwise the weights' dtype.
        autocast_on = torch.is_autocast_enabled(device.type)
        dtype = torch.get_autocast_dtype(device.type) if autocast_on else weight.dtype
    attention = vit.blocks[0].attn
    tokens = vit.patch_embed.num_patches
    qkv = torch.zeros((batch_size, tokens, 3, attention.num_heads, vit.embed_dim // attention.num_heads),
                      device=device, dtype=dtype)
    query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)
    dropout = attention.attn_drop.p if attention.training else 0.0
    return query, key, value, attention.scale, dropout


def sdpa_backend(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, dropout_p: float = 0.0,
                 scale: float | None = None) -> str:
    """Name of the kernel `F.scaled_dot_product_attention` runs for these inputs (no attention computed).

    Asks torch's own dispatcher choice (`torch._fused_sdp_choice`), so it honours the device, dtype,
    shapes, strides, the global `torch.backends.cuda.enable_*_sdp` flags and any enclosing
    `sdpa_kernel` context. Where that private function is missing, the first backend of torch's
    priority order that accepts the inputs is reported (found by running them, one backend at a time).

    Args:
        query, key, value: `[B, heads, N, head_dim]` on the device of interest.
        dropout_p: attention dropout probability (some kernels refuse dropout).
        scale: logit scale (None = head_dim ** -0.5).

    Returns:
        'flash', 'efficient', 'cudnn', 'math' or 'overrideable'.

    Raises:
        RuntimeError: no enabled backend accepts the inputs.
    """
    chooser = getattr(torch, "_fused_sdp_choice", None)
    if chooser is not None:
        return SDPA_BACKEND_NAMES[SDPBackend(chooser(query, key, value, None, dropout_p, False, scale=scale))]
    eligible = sdpa_eligible_backends(query, key, value, dropout_p, scale)
    if not eligible:
        raise RuntimeError("no scaled_dot_product_attention backend accepts these inputs")
    return eligible[0]


def sdpa_eligible_backends(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, dropout_p: float = 0.0,
                           scale: float | None = None) -> list[str]:
    """Every SDPA backend that would accept these inputs if it were the only one enabled.

    Each backend is tried alone inside `torch.nn.attention.sdpa_kernel`; the list follows torch's
    priority order (flash, efficient, math, cudnn in torch 2.14), so its first entry is normally
    what `sdpa_backend` reports. Globally disabled backends are still probed.

    Args:
        query, key, value: `[B, heads, N, head_dim]`.
        dropout_p: attention dropout probability.
        scale: logit scale (None = head_dim ** -0.5).

    Returns:
        Backend names (see `SDPA_BACKEND_NAMES`).
    """
    order_of = getattr(torch._C, "_get_sdp_priority_order", None)
    order = [SDPBackend(code) for code in order_of()] if order_of is not None else list(SDPA_BACKEND_NAMES)
    chooser = getattr(torch, "_fused_sdp_choice", None)
    eligible = []
    for backend in order:
        if backend not in SDPA_BACKEND_NAMES or backend == SDPBackend.OVERRIDEABLE:
            continue
        try:
            with sdpa_kernel([backend]):
                if chooser is not None:
                    chooser(query, key, value, None, dropout_p, False, scale=scale)
                else:
                    F.scaled_dot_product_attention(query, key, value, dropout_p=dropout_p, scale=scale)
        except RuntimeError:
            continue
        eligible.append(SDPA_BACKEND_NAMES[backend])
    return eligible


def vit_sdpa_backend(vit: VisionTransformer, batch_size: int = 1, device: torch.device | str | None = None,
                     dtype: torch.dtype | None = None) -> str:
    """SDPA kernel the ViT's attention runs for its configured clip size, e.g. to log it.

    Builds zero q/k/v of the ViT's shapes and strides (`[B, heads, tokens, head_dim]`, e.g.
    `[B, 16, 4096, 88]` for ViT-g on 32x224x224) without running the network.

    Args:
        vit: the ViT (its `attn_impl` is not consulted: this is what 'sdpa' would run).
        batch_size: clips per forward, B.
        device: default: the ViT's parameters' device.
        dtype: q/k/v dtype; default: the autocast dtype when autocast is enabled for the device
            (call it inside the same `torch.autocast` as the forward), else the weights' dtype.

    Returns:
        'flash', 'efficient', 'cudnn', 'math' or 'overrideable' (see `sdpa_backend`).
    """
    query, key, value, scale, dropout = _attention_inputs(vit, batch_size, device, dtype)
    return sdpa_backend(query, key, value, dropout, scale)
