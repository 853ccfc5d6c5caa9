"""Storage dtype of the frozen ViT: bf16 weights behind float32 interfaces (`cast_frozen_vit`).

The engine owns devices and dtypes; the ViT (`models.backbones.vit`) is built and loaded in
float32, and this module changes how a frozen one is stored after its weights are in place.
"""
from __future__ import annotations

import torch
from torch import nn

from models.backbones.vit import VisionTransformer


def _cast_clip_to_weights(module: VisionTransformer, args: tuple) -> tuple:
    return (args[0].to(module.patch_embed.proj.weight.dtype), *args[1:])


def _features_to_float32(module: VisionTransformer, args: tuple, output: torch.Tensor) -> torch.Tensor:
    return output.float()


def _float32_state(module: nn.Module, state_dict: dict, prefix: str, local_metadata: dict) -> None:
    for name, value in state_dict.items():
        if name.startswith(prefix) and value.is_floating_point() and value.dtype != torch.float32:
            state_dict[name] = value.float()


def cast_frozen_vit(vit: VisionTransformer, dtype: torch.dtype = torch.bfloat16) -> VisionTransformer:
    """Keep a frozen ViT's weights in `dtype` (half the memory, no per-forward weight casts).

    Call it after the weights are loaded and the model is on its device. Afterwards the ViT takes
    the usual float32 clip (cast to `dtype` on entry), computes in `dtype` (with or without
    autocast) and returns float32 features, so the head sees the same dtype as before. Its
    `state_dict()` still reports float32 tensors (the checkpoint layout's dtype), holding the
    `dtype`-rounded values; loading float32 weights into it rounds them to `dtype`.

    Args:
        vit: a ViT whose parameters do not require gradients (the frozen `backbone.submodule`).
        dtype: storage and compute dtype, normally `torch.bfloat16`.

    Returns:
        `vit`, modified in place.

    Raises:
        ValueError: a parameter requires gradients (a trainable ViT needs float32 master weights).
    """
    trainable = [name for name, param in vit.named_parameters() if param.requires_grad]
    if trainable:
        raise ValueError(f"cast_frozen_vit needs a frozen ViT; {len(trainable)} parameter(s) require grad, "
                         f"e.g. {trainable[0]!r}")
    vit.to(dtype=dtype)
    if not getattr(vit, "_frozen_cast_hooks", None):
        vit._frozen_cast_hooks = (
            vit.register_forward_pre_hook(_cast_clip_to_weights),
            vit.register_forward_hook(_features_to_float32),
            vit.register_state_dict_post_hook(_float32_state),
        )
    return vit
