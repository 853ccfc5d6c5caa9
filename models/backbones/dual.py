"""The SFMViT dual backbone: a trainable SlowFast and a frozen video ViT on the same clip."""
from __future__ import annotations

import torch
from torch import nn

from models.backbones.slowfast import SlowFast
from models.backbones.vit import VisionTransformer


class DualBackbone(nn.Module):
    """SlowFast (`module`) + frozen ViT (`submodule`); the names give the checkpoint keys
    `backbone.module.*` and `backbone.submodule.*` once the model holds this as `backbone`.

    The ViT never receives gradients (`requires_grad_(False)`, as the original). Its train/eval
    mode follows the model's by default, so during training its DropPath is active although it
    is frozen (quirk 6, kept); `vit_eval_mode=True` keeps it in eval mode instead.

    Attributes:
        module: the SlowFast network.
        submodule: the ViT.
        out_channels: `(slow, fast, vit)` channels of the three outputs, e.g. (2048, 256, 1408).
        vit_eval_mode: keep the ViT in eval mode even when the model trains.
        has_vit: True: this backbone has the ViT stream (`submodule`).
    """

    has_vit = True

    def __init__(self, slowfast: SlowFast, vit: VisionTransformer, learnable: bool = True,
                 vit_eval_mode: bool = False) -> None:
        """Assemble and freeze.

        Args:
            slowfast: the SlowFast network.
            vit: the ViT; frozen here.
            learnable: False freezes SlowFast too (`model.backbone.learnable`).
            vit_eval_mode: see the class docstring (`model.backbone.subbackbone.eval_mode`).
        """
        super().__init__()
        self.module = slowfast
        self.submodule = vit
        self.vit_eval_mode = vit_eval_mode
        self.submodule.requires_grad_(False)
        self.submodule.eval()
        if not learnable:
            self.module.requires_grad_(False)
        self.out_channels: tuple[int, int, int] = (*slowfast.out_channels, vit.embed_dim)

    def train(self, mode: bool = True) -> DualBackbone:
        """Set the training mode; the ViT stays in eval mode when `vit_eval_mode` is set."""
        super().train(mode)
        if self.vit_eval_mode:
            self.submodule.eval()
        return self

    def forward(self, clip: torch.Tensor) -> list[torch.Tensor]:
        """Run both networks on the same normalised clip.

        Args:
            clip: `[B, 3, T, H, W]`.

        Returns:
            `[slow, fast, vit]`: `[B, C_s, T / alpha, H / 16, W / 16]`, `[B, C_f, T, H / 16, W / 16]`
            and `[B, C_v, T / tubelet, H / patch, W / patch]` (for the original at 32x224x224:
            `[B, 2048, 8, 14, 14]`, `[B, 256, 32, 14, 14]`, `[B, 1408, 16, 16, 16]`).
        """
        slow, fast = self.module(clip)
        return [slow, fast, self.submodule(clip)]
