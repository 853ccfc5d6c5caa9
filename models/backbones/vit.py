"""VideoMAE-v2 video ViT (small .. giant) with the original SFMViT parameter layout and token-grid output.

The model alone: which SDPA kernel its attention runs is asked in `engine.attention_kernels`, and
bf16 storage of a frozen ViT is `engine.precision.cast_frozen_vit` (the engine owns devices and dtypes).
"""
from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import DropPath, trunc_normal_
from torch import nn

ATTN_IMPLS = ("sdpa", "eager")
_LN_EPS = 1e-6


def sinusoid_table(num_positions: int, dim: int) -> torch.Tensor:
    """Fixed sine-cosine position table of VideoMAE.

    angle(p, j) = p / 10000^(2 * floor(j / 2) / dim); even j -> sin, odd j -> cos. Computed in
    float64 on the CPU and cast to float32, as the original (numpy float64 -> torch.float).

    Args:
        num_positions: number of tokens N.
        dim: embedding width C.

    Returns:
        float32 `[1, N, C]` on the CPU.
    """
    positions = torch.arange(num_positions, dtype=torch.float64, device="cpu").unsqueeze(1)
    exponent = (2 * (torch.arange(dim, device="cpu") // 2)).to(torch.float64) / dim
    angles = positions / torch.pow(torch.tensor(10000.0, dtype=torch.float64, device="cpu"), exponent)
    table = torch.empty_like(angles)
    table[:, 0::2] = torch.sin(angles[:, 0::2])
    table[:, 1::2] = torch.cos(angles[:, 1::2])
    return table.to(torch.float32).unsqueeze(0)


def _pair(value: int | tuple[int, int] | list[int]) -> tuple[int, int]:
    if isinstance(value, int):
        return (value, value)
    if len(value) != 2:
        raise ValueError(f"expected an int or a pair (height, width), got {value!r}")
    return (int(value[0]), int(value[1]))


class PatchEmbed(nn.Module):
    """Tubelet embedding: a Conv3d with kernel = stride = (tubelet, patch, patch)."""

    def __init__(self, img_size: tuple[int, int], patch_size: tuple[int, int], in_chans: int, embed_dim: int,
                 num_frames: int, tubelet_size: int) -> None:
        """Build the projection (arguments as in `VisionTransformer`)."""
        super().__init__()
        checks = (("img_size[0]", img_size[0], patch_size[0]), ("img_size[1]", img_size[1], patch_size[1]),
                  ("all_frames", num_frames, tubelet_size))
        for name, size, step in checks:
            if step < 1 or size < step or size % step:
                raise ValueError(f"ViT {name}={size} must be a positive multiple of its patch/tubelet size {step}")
        self.grid_size = (num_frames // tubelet_size, img_size[0] // patch_size[0], img_size[1] // patch_size[1])
        self.num_patches = math.prod(self.grid_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=(tubelet_size, *patch_size),
                              stride=(tubelet_size, *patch_size))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Embed a clip.

        Args:
            x: `[B, C_in, T, H, W]`.

        Returns:
            tokens `[B, N, C]` in (t, h, w) order, N = (T / tubelet) (H / p) (W / p).
        """
        return self.proj(x).flatten(2).transpose(1, 2)


class Attention(nn.Module):
    """Multi-head self-attention with q and v biases (no k bias); SDPA or explicit eager path.

    Both paths use the same weights: `attn_impl='sdpa'` calls
    `torch.nn.functional.scaled_dot_product_attention`, `'eager'` computes
    softmax(q k^T * scale) v explicitly (the original's formula).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True, qk_scale: float | None = None,
                 attn_drop: float = 0.0, proj_drop: float = 0.0, attn_impl: str = "sdpa") -> None:
        """Build the layer.

        Args:
            dim: token width C; must be divisible by num_heads.
            num_heads: attention heads.
            qkv_bias: learn `q_bias` and `v_bias` (the key gets no bias).
            qk_scale: logit scale; default head_dim ** -0.5.
            attn_drop: dropout on the attention weights (training only).
            proj_drop: dropout after the output projection.
            attn_impl: 'sdpa' or 'eager'.

        Raises:
            ValueError: if dim is not a multiple of num_heads or attn_impl is unknown.
        """
        super().__init__()
        if num_heads < 1 or dim % num_heads:
            raise ValueError(f"ViT embed_dim={dim} must be divisible by num_heads={num_heads} (integer head dim)")
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
        self.num_heads = num_heads
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.attn_impl = attn_impl
        self.qkv = nn.Linear(dim, dim * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(dim))
            self.v_bias = nn.Parameter(torch.zeros(dim))
        else:
            self.q_bias = None
            self.v_bias = None
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Attend over all tokens.

        Args:
            x: `[B, N, C]`.

        Returns:
            `[B, N, C]`.
        """
        batch, tokens, dim = x.shape
        bias = None
        if self.q_bias is not None:
            bias = torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))
        qkv = F.linear(x, self.qkv.weight, bias)
        q, k, v = qkv.reshape(batch, tokens, 3, self.num_heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        if self.attn_impl == "sdpa":
            drop = self.attn_drop.p if self.training else 0.0
            out = F.scaled_dot_product_attention(q, k, v, dropout_p=drop, scale=self.scale)
        else:
            weights = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
            out = self.attn_drop(weights) @ v
        out = out.transpose(1, 2).reshape(batch, tokens, dim)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    """fc1 -> exact (erf) GELU -> fc2 -> dropout (no dropout between, as the original)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        """Build the layer: `dim -> hidden -> dim`."""
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, N, C] -> [B, N, C]`."""
        return self.drop(self.fc2(self.act(self.fc1(x))))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN1(x)), then x + mlp(LN2(x)), optional layer scale."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float, qkv_bias: bool, qk_scale: float | None,
                 drop: float, attn_drop: float, drop_path: float, init_values: float, attn_impl: str) -> None:
        """Build the block (arguments as in `VisionTransformer`; drop_path is this block's rate)."""
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=_LN_EPS)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, qk_scale=qk_scale, attn_drop=attn_drop,
                              proj_drop=drop, attn_impl=attn_impl)
        self.drop_path = DropPath(drop_path) if drop_path > 0.0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=_LN_EPS)
        # int() of the float product, as the original: 1408 * (48 / 11) -> 6144.
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop=drop)
        if init_values > 0:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1 = None
            self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """`[B, N, C] -> [B, N, C]`."""
        if self.gamma_1 is None:
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


class VisionTransformer(nn.Module):
    """VideoMAE-v2 ViT returning its last token features as a video feature map.

    The position table is a fixed sinusoid kept as a plain attribute `pos_embed` (not a parameter
    or buffer, so it is never in a state_dict, matching the released checkpoints); it follows the
    module's device through `_apply`.

    Attributes:
        embed_dim: token width C (the output channels).
        out_channels: same as embed_dim.
        grid_size: output grid `(T / tubelet, H / patch, W / patch)`.
    """

    def __init__(
        self,
        img_size: int | tuple[int, int] = 224,
        patch_size: int | tuple[int, int] = 16,
        in_chans: int = 3,
        num_classes: int = 1000,
        embed_dim: int = 768,
        depth: int = 12,
        num_heads: int = 12,
        mlp_ratio: float = 4.0,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop_rate: float = 0.0,
        attn_drop_rate: float = 0.0,
        drop_path_rate: float = 0.0,
        init_values: float = 0.0,
        init_scale: float = 0.0,
        all_frames: int = 16,
        tubelet_size: int = 2,
        use_mean_pooling: bool = True,
        attn_impl: str = "sdpa",
    ) -> None:
        """Build the network.

        Args:
            img_size: input height/width in pixels (int or (H, W)).
            patch_size: spatial patch size in pixels.
            in_chans: input channels.
            num_classes: classes of the (unused in forward) `head`; 0 makes it an Identity.
            embed_dim: token width C.
            depth: number of blocks.
            num_heads: attention heads; must divide embed_dim.
            mlp_ratio: MLP hidden width = int(embed_dim * mlp_ratio).
            qkv_bias: learn q and v biases.
            qk_scale: attention logit scale (default head_dim ** -0.5).
            drop_rate: dropout after the position table, attention projection and MLP.
            attn_drop_rate: dropout on the attention weights.
            drop_path_rate: stochastic depth of the last block; linear from 0 over the blocks.
            init_values: layer-scale init (0 = no `gamma_1/2` parameters, the original's choice).
            init_scale: multiplier on the initial `head` weights (0, as the original).
            all_frames: input frames T.
            tubelet_size: frames per token.
            use_mean_pooling: True: `norm` is an Identity and `fc_norm` a LayerNorm (the
                original's layout); False: the reverse. Neither is applied in forward.
            attn_impl: 'sdpa' (scaled_dot_product_attention) or 'eager' (explicit softmax).

        Raises:
            ValueError: for sizes that do not give an integer head dim or token grid.
        """
        super().__init__()
        if depth < 1 or embed_dim < 1:
            raise ValueError(f"ViT depth and embed_dim must be positive, got depth={depth}, embed_dim={embed_dim}")
        if num_heads < 1 or embed_dim % num_heads:
            raise ValueError(f"ViT embed_dim={embed_dim} must be divisible by num_heads={num_heads} (integer head dim)")
        self.num_classes = num_classes
        self.embed_dim = embed_dim
        self.out_channels = embed_dim
        self.img_size = _pair(img_size)
        self.patch_embed = PatchEmbed(self.img_size, _pair(patch_size), in_chans, embed_dim, all_frames, tubelet_size)
        self.grid_size: tuple[int, int, int] = self.patch_embed.grid_size
        self.all_frames = all_frames
        # Plain attribute on purpose (see the class docstring); computed on the CPU for exact
        # float64 values, moved to the parameters' device (e.g. meta) at the end of __init__.
        self.pos_embed = sinusoid_table(self.patch_embed.num_patches, embed_dim)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = [rate.item() for rate in torch.linspace(0, drop_path_rate, depth, device="cpu")]
        self.blocks = nn.ModuleList(
            Block(embed_dim, num_heads, mlp_ratio, qkv_bias, qk_scale, drop_rate, attn_drop_rate, rate, init_values,
                  attn_impl)
            for rate in rates
        )
        self.norm = nn.Identity() if use_mean_pooling else nn.LayerNorm(embed_dim, eps=_LN_EPS)
        self.fc_norm = nn.LayerNorm(embed_dim, eps=_LN_EPS) if use_mean_pooling else None
        self.head = nn.Linear(embed_dim, num_classes) if num_classes > 0 else nn.Identity()
        self.apply(_init_weights)
        if isinstance(self.head, nn.Linear):
            with torch.no_grad():
                self.head.weight.mul_(init_scale)
                self.head.bias.mul_(init_scale)
        self.pos_embed = self.pos_embed.to(self.patch_embed.proj.weight.device)

    def set_attn_impl(self, attn_impl: str) -> None:
        """Switch every block between 'sdpa' and 'eager' attention (same weights)."""
        if attn_impl not in ATTN_IMPLS:
            raise ValueError(f"attn_impl must be one of {ATTN_IMPLS}, got {attn_impl!r}")
        for block in self.blocks:
            block.attn.attn_impl = attn_impl

    def _apply(self, fn: Callable[[torch.Tensor], torch.Tensor], recurse: bool = True) -> VisionTransformer:
        # `.to()`, `.cuda()`, `.to_empty()` ... reach parameters through here; the plain-attribute
        # table must follow the device. It is rebuilt (not passed through fn) so that it stays
        # float32 (forward casts it like the original's type_as) and `to_empty` cannot blank it.
        super()._apply(fn, recurse)
        device = self.patch_embed.proj.weight.device
        if self.pos_embed.device != device:
            self.pos_embed = sinusoid_table(self.patch_embed.num_patches, self.embed_dim).to(device)
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Encode a clip.

        Args:
            x: normalised clip `[B, 3, all_frames, H, W]` with (H, W) = img_size.

        Returns:
            `[B, C, T / tubelet, H / patch, W / patch]`, e.g. `[B, 1408, 16, 16, 16]` for ViT-g on
            32x224x224: the last block's tokens, (t, h, w) order restored (no final norm, no head).

        Raises:
            ValueError: if the clip does not have the configured frames and size.
        """
        expected = (self.all_frames, *self.img_size)
        if x.dim() != 5 or tuple(x.shape[2:]) != expected:
            raise ValueError(
                f"ViT built for clips [B, C, {expected[0]}, {expected[1]}, {expected[2]}] "
                f"(subbackbone all_frames/img_size), got {list(x.shape)}"
            )
        tokens = self.patch_embed(x)
        tokens = self.pos_drop(tokens + self.pos_embed.to(device=tokens.device, dtype=tokens.dtype))
        for block in self.blocks:
            tokens = block(tokens)
        # No final norm: the original returns the last block's tokens as they are.
        return tokens.transpose(1, 2).reshape(x.shape[0], self.embed_dim, *self.grid_size)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Linear):
        trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


# Architecture of each named size; everything else keeps the VisionTransformer defaults.
VIT_SIZES: dict[str, dict[str, Any]] = {
    "vit_small_patch16_224": {"patch_size": 16, "embed_dim": 384, "depth": 12, "num_heads": 6, "mlp_ratio": 4.0},
    "vit_base_patch16_224": {"patch_size": 16, "embed_dim": 768, "depth": 12, "num_heads": 12, "mlp_ratio": 4.0},
    "vit_large_patch16_224": {"patch_size": 16, "embed_dim": 1024, "depth": 24, "num_heads": 16, "mlp_ratio": 4.0},
    "vit_huge_patch16_224": {"patch_size": 16, "embed_dim": 1280, "depth": 32, "num_heads": 16, "mlp_ratio": 4.0},
    # Head dim 88; MLP hidden int(1408 * 48 / 11) = 6144.
    "vit_giant_patch14_224": {"patch_size": 14, "embed_dim": 1408, "depth": 40, "num_heads": 16,
                              "mlp_ratio": 48 / 11},
}

# The builder of each size is `VisionTransformer` with the size bound as keyword defaults: call-time
# arguments override them, and `inspect.signature` (read natively from the partial) reports every
# VisionTransformer argument with the size's defaults, which is what `config.construct` checks
# `model.backbone.subbackbone.kwargs` against.
VIT_BUILDERS: dict[str, Callable[..., VisionTransformer]] = {
    name: functools.partial(VisionTransformer, **size) for name, size in VIT_SIZES.items()
}
# The builders under their timm-style names, for imports.
vit_small_patch16_224 = VIT_BUILDERS["vit_small_patch16_224"]
vit_base_patch16_224 = VIT_BUILDERS["vit_base_patch16_224"]
vit_large_patch16_224 = VIT_BUILDERS["vit_large_patch16_224"]
vit_huge_patch16_224 = VIT_BUILDERS["vit_huge_patch16_224"]
vit_giant_patch14_224 = VIT_BUILDERS["vit_giant_patch14_224"]


# The original SFMViT constructs its ViT with these arguments (backbones/__init__.py:22-30); the
# dual backbone starts from them and applies `model.backbone.subbackbone.kwargs` on top.
SFMVIT_VIT_KWARGS: dict[str, Any] = {
    "img_size": 224,
    "num_classes": 80,
    "all_frames": 32,
    "tubelet_size": 2,
    "drop_path_rate": 0.3,
    "use_mean_pooling": True,
}
