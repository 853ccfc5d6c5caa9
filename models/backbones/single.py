"""ACAR-Net's backbone: SlowFast alone, held as `.module` so the keys read `backbone.module.*`."""
from __future__ import annotations

import torch
from torch import nn

from models.backbones.slowfast import SlowFast


class SlowFastBackbone(nn.Module):
    """SlowFast without a ViT stream: the backbone of ACAR-Net's AVA models.

    ACAR-Net wraps its SlowFast in a module whose attribute is `module`, so once the model holds
    this as `backbone` its keys are `backbone.module.*`, the same 660 keys (R50) as SFMViT's
    SlowFast part.

    Attributes:
        module: the SlowFast network.
        out_channels: `(slow, fast)` channels of the two outputs, e.g. (2048, 256).
        has_vit: False: no ViT stream (no `submodule`).
    """

    has_vit = False

    def __init__(self, slowfast: SlowFast, learnable: bool = True) -> None:
        """Wrap, and freeze when not learnable.

        Args:
            slowfast: the SlowFast network.
            learnable: False freezes it (`model.backbone.learnable`).
        """
        super().__init__()
        self.module = slowfast
        if not learnable:
            self.module.requires_grad_(False)
        self.out_channels: tuple[int, int] = tuple(slowfast.out_channels)

    def forward(self, clip: torch.Tensor) -> list[torch.Tensor]:
        """Run SlowFast on a normalised clip.

        Args:
            clip: `[B, 3, T, H, W]`.

        Returns:
            `[slow, fast]`: `[B, C_s, T / alpha, H / 16, W / 16]` and `[B, C_f, T, H / 16, W / 16]`
            (ACAR-Net at 32 frames, short side 256: `[B, 2048, 8, 16, W / 16]`, `[B, 256, 32, 16, W / 16]`).
        """
        return self.module(clip)
