"""SlowFast ResNet backbones (R50/101/152/200) with the original SFMViT parameter layout."""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

# Channel counts of the original network before the width multiplier: the slow stem and the
# bottleneck planes of stage 1 (doubling every stage); the bottleneck output is 4x its planes.
_BASE_WIDTH = 64
_EXPANSION = 4
# Per stage: spatial stride of the first block and spatial dilation (stage 4 keeps 1/16 resolution).
_STRIDES = (1, 2, 2, 1)
_DILATIONS = (1, 1, 1, 2)


def _batch_norm(channels: int) -> nn.BatchNorm3d:
    # eps 1e-5 and momentum 0.1 are torch's defaults, as in the original.
    return nn.BatchNorm3d(channels, eps=1e-5)


class Bottleneck(nn.Module):
    """ResNet bottleneck on video: (temporal or 1x1x1) -> spatial 3x3 -> 1x1x1 expansion, plus shortcut.

    Submodule names (`conv1`, `bn1`, ..., `downsample.0`, `downsample_bn`) are the original's
    checkpoint keys.
    """

    def __init__(
        self,
        in_channels: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        temporal_kernel: int = 1,
        project_shortcut: bool = False,
    ) -> None:
        """Build one block.

        Args:
            in_channels: input channels.
            planes: bottleneck channels; the output has `planes * 4`.
            stride: spatial stride of the 3x3 conv and of the shortcut projection.
            dilation: spatial dilation of the 3x3 conv.
            temporal_kernel: 1 for a 1x1x1 first conv, 3 for a (3, 1, 1) temporal one.
            project_shortcut: add the 1x1x1 conv + BN shortcut projection.
        """
        super().__init__()
        if temporal_kernel not in (1, 3):
            raise ValueError(f"temporal_kernel must be 1 or 3, got {temporal_kernel}")
        out_channels = planes * _EXPANSION
        # The original creates the shortcut conv before the block's convs: same order here, so a
        # fixed seed gives the same initial weights. It is registered after bn3 (key order).
        shortcut = None
        if project_shortcut:
            shortcut = nn.Sequential(
                nn.Conv3d(in_channels, out_channels, kernel_size=1, stride=(1, stride, stride), bias=False)
            )
        self.conv1 = nn.Conv3d(
            in_channels, planes, kernel_size=(temporal_kernel, 1, 1), padding=(temporal_kernel // 2, 0, 0), bias=False
        )
        self.bn1 = _batch_norm(planes)
        self.conv2 = nn.Conv3d(
            planes,
            planes,
            kernel_size=(1, 3, 3),
            stride=(1, stride, stride),
            padding=(0, dilation, dilation),
            dilation=(1, dilation, dilation),
            bias=False,
        )
        self.bn2 = _batch_norm(planes)
        self.conv3 = nn.Conv3d(planes, out_channels, kernel_size=1, bias=False)
        self.bn3 = _batch_norm(out_channels)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = shortcut
        self.downsample_bn = _batch_norm(out_channels) if shortcut is not None else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block.

        Args:
            x: `[B, C_in, T, H, W]`.

        Returns:
            `[B, 4 * planes, T, H / stride, W / stride]`.
        """
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample_bn(self.downsample(x))
        return self.relu(out + shortcut)


def _make_stage(
    in_channels: int, planes: int, blocks: int, stride: int, dilation: int, temporal_kernel: int
) -> nn.Sequential:
    """A ResNet stage; only its first block strides and (when the width changes) projects the shortcut."""
    out_channels = planes * _EXPANSION
    layers = [
        Bottleneck(
            in_channels,
            planes,
            stride=stride,
            dilation=dilation,
            temporal_kernel=temporal_kernel,
            project_shortcut=stride != 1 or in_channels != out_channels,
        )
    ]
    layers += [
        Bottleneck(out_channels, planes, dilation=dilation, temporal_kernel=temporal_kernel) for _ in range(1, blocks)
    ]
    return nn.Sequential(*layers)


class SlowFast(nn.Module):
    """Two-pathway SlowFast ResNet with fast -> slow lateral connections.

    The slow pathway sees `T // alpha` frames at full width; the fast pathway all `T` frames at
    `beta` of the width. Four laterals (`Tconv1..4`) map fast features onto the slow time axis
    (time-strided conv) and are concatenated to the slow features before each slow stage.

    Attributes:
        out_channels: `(slow, fast)` channels of the two outputs (2048, 256 for the original).
        alpha: temporal ratio between the pathways.
    """

    def __init__(
        self,
        layers: tuple[int, int, int, int] | list[int],
        alpha: int = 8,
        beta: float = 0.125,
        fuse_only_conv: bool = True,
        fuse_kernel_size: int = 5,
        slow_full_span: bool = False,
        width_mult: float = 1.0,
    ) -> None:
        """Build the network (defaults are the original class's; the CW config overrides them).

        Args:
            layers: number of bottlenecks in each of the 4 stages.
            alpha: the fast pathway has `alpha` times the slow pathway's frames.
            beta: fast channels = `int(slow channels * beta)`.
            fuse_only_conv: laterals are a bare conv (True) or conv + BN + ReLU (False).
            fuse_kernel_size: temporal kernel of the laterals; odd, so that the lateral output
                has exactly `T // alpha` frames.
            slow_full_span: pick the slow frames with `linspace(0, T - 1, T // alpha)` spanning
                the clip (True) or every `alpha`-th frame (False).
            width_mult: additive extension scaling every channel count (1.0 = the original
                layout); the slow stem gets `round(64 * width_mult)` channels.

        Raises:
            ValueError: on a parameter combination that cannot give matching shapes.
        """
        super().__init__()
        if len(layers) != 4 or any(n < 1 for n in layers):
            raise ValueError(f"layers must be 4 positive block counts, got {list(layers)}")
        if alpha < 1:
            raise ValueError(f"alpha must be >= 1, got {alpha}")
        if fuse_kernel_size < 1 or fuse_kernel_size % 2 == 0:
            raise ValueError(f"fuse_kernel_size must be odd and positive, got {fuse_kernel_size}")
        base = round(_BASE_WIDTH * width_mult)
        if base < 1 or int(base * beta) < 1:
            raise ValueError(
                f"width_mult={width_mult} with beta={beta} leaves the fast pathway without channels "
                f"(slow stem {base}, fast stem {int(base * beta)})"
            )
        self.alpha = alpha
        self.beta = beta
        self.slow_full_span = slow_full_span
        # Fast stage planes are int(base * 2**i * beta). With 64 * beta integral (the original's
        # 1/8) they, the lateral widths (2x the fast channels) and the fused slow inputs equal the
        # original's int(64 * beta), int(128 * beta), ...; deriving them from the actual fast
        # channel counts keeps the shapes consistent for any other beta or width_mult.
        stage_args = list(zip(layers, _STRIDES, _DILATIONS))

        fast_stem = int(base * beta)
        self.fast_conv1 = nn.Conv3d(3, fast_stem, kernel_size=(5, 7, 7), stride=(1, 2, 2), padding=(2, 3, 3),
                                    bias=False)
        self.fast_bn1 = _batch_norm(fast_stem)
        self.fast_relu = nn.ReLU(inplace=True)
        self.fast_maxpool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        fast_channels = [fast_stem]  # fast channels at the 4 lateral taps, then the output
        for index, (blocks, stride, dilation) in enumerate(stage_args):
            planes = int(base * 2**index * beta)
            stage = _make_stage(fast_channels[-1], planes, blocks, stride, dilation, temporal_kernel=3)
            setattr(self, f"fast_res{index + 1}", stage)
            fast_channels.append(planes * _EXPANSION)

        self.slow_conv1 = nn.Conv3d(3, base, kernel_size=(1, 7, 7), stride=(1, 2, 2), padding=(0, 3, 3), bias=False)
        self.slow_bn1 = _batch_norm(base)
        self.slow_relu = nn.ReLU(inplace=True)
        self.slow_maxpool = nn.MaxPool3d(kernel_size=(1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        slow_in = base
        for index, (blocks, stride, dilation) in enumerate(stage_args):
            fused_in = slow_in + 2 * fast_channels[index]  # slow features + lateral (2x fast channels)
            planes = base * 2**index
            # Slow stages 1-2 have no temporal conv (the original's head_conv 1 vs 3).
            stage = _make_stage(fused_in, planes, blocks, stride, dilation, temporal_kernel=1 if index < 2 else 3)
            setattr(self, f"slow_res{index + 1}", stage)
            slow_in = planes * _EXPANSION

        for index in range(4):
            lateral = self._make_lateral(fast_channels[index], 2 * fast_channels[index], fuse_kernel_size,
                                         fuse_only_conv)
            setattr(self, f"Tconv{index + 1}", lateral)
        self.out_channels: tuple[int, int] = (slow_in, fast_channels[-1])

    def _make_lateral(self, in_channels: int, out_channels: int, kernel: int, only_conv: bool) -> nn.Module:
        conv = nn.Conv3d(
            in_channels,
            out_channels,
            kernel_size=(kernel, 1, 1),
            stride=(self.alpha, 1, 1),
            padding=(kernel // 2, 0, 0),
            bias=False,
        )
        if only_conv:
            return conv
        return nn.Sequential(conv, _batch_norm(out_channels), nn.ReLU(inplace=True))

    def slow_frame_indices(self, num_frames: int, device: torch.device | None = None) -> torch.Tensor:
        """Indices of the frames the slow pathway sees.

        Args:
            num_frames: frames T of the input clip.
            device: device of the returned tensor.

        Returns:
            int64 `[T // alpha]`.
        """
        if self.slow_full_span:
            # Quirk 2 (keep): linspace then truncation, e.g. [0, 4, 8, 13, 17, 22, 26, 31] for
            # T=32, alpha=4 -- not every 4th frame. The released checkpoints were trained this way.
            return torch.linspace(0, num_frames - 1, num_frames // self.alpha, device=device).long()
        return torch.arange(0, num_frames, self.alpha, device=device)

    def forward(self, clip: torch.Tensor) -> list[torch.Tensor]:
        """Run both pathways on the same clip.

        Args:
            clip: normalised video `[B, 3, T, H, W]`; T must be a positive multiple of alpha.

        Returns:
            `[slow, fast]`: slow `[B, C_slow, T / alpha, H / 16, W / 16]` and fast
            `[B, C_fast, T, H / 16, W / 16]` (e.g. `[B, 2048, 8, 14, 14]`, `[B, 256, 32, 14, 14]`
            for a 32x224x224 clip).

        Raises:
            ValueError: if the clip is not 5-D with 3 channels or T is not a multiple of alpha.
        """
        if clip.dim() != 5 or clip.shape[1] != 3:
            raise ValueError(f"SlowFast expects a clip [B, 3, T, H, W], got shape {list(clip.shape)}")
        num_frames = clip.shape[2]
        if num_frames < self.alpha or num_frames % self.alpha:
            raise ValueError(f"SlowFast needs T to be a positive multiple of alpha={self.alpha}, got T={num_frames}")
        fast, laterals = self._fast_path(clip)
        slow_clip = clip.index_select(2, self.slow_frame_indices(num_frames, clip.device))
        slow = self._slow_path(slow_clip, laterals)
        return [slow, fast]

    def _fast_path(self, clip: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        x = self.fast_maxpool(self.fast_relu(self.fast_bn1(self.fast_conv1(clip))))
        laterals = []
        for index in range(1, 5):
            laterals.append(getattr(self, f"Tconv{index}")(x))
            x = getattr(self, f"fast_res{index}")(x)
        return x, laterals

    def _slow_path(self, clip: torch.Tensor, laterals: list[torch.Tensor]) -> torch.Tensor:
        x = self.slow_maxpool(self.slow_relu(self.slow_bn1(self.slow_conv1(clip))))
        for index in range(1, 5):
            x = torch.cat([x, laterals[index - 1]], dim=1)
            x = getattr(self, f"slow_res{index}")(x)
        return x


def slowfast50(**kwargs: Any) -> SlowFast:
    """SlowFast-R50 (stages of 3, 4, 6, 3 bottlenecks); kwargs go to `SlowFast`."""
    return SlowFast([3, 4, 6, 3], **kwargs)


def slowfast101(**kwargs: Any) -> SlowFast:
    """SlowFast-R101 (stages of 3, 4, 23, 3 bottlenecks); kwargs go to `SlowFast`."""
    return SlowFast([3, 4, 23, 3], **kwargs)


def slowfast152(**kwargs: Any) -> SlowFast:
    """SlowFast-R152 (stages of 3, 8, 36, 3 bottlenecks); kwargs go to `SlowFast`."""
    return SlowFast([3, 8, 36, 3], **kwargs)


def slowfast200(**kwargs: Any) -> SlowFast:
    """SlowFast-R200 (stages of 3, 24, 36, 3 bottlenecks); kwargs go to `SlowFast`."""
    return SlowFast([3, 24, 36, 3], **kwargs)


def _signature() -> inspect.Signature:
    """SlowFast's arguments less `layers`, as the builders' signature.

    The builders take `**kwargs`; publishing the real names and defaults lets a config checker
    (`inspect.signature`) reject unknown `model.backbone.kwargs` and wrongly typed values.
    """
    params = [param.replace(kind=inspect.Parameter.KEYWORD_ONLY)
              for name, param in inspect.signature(SlowFast).parameters.items() if name != "layers"]
    return inspect.Signature(params, return_annotation=SlowFast)


for _builder in (slowfast50, slowfast101, slowfast152, slowfast200):
    _builder.__signature__ = _signature()  # type: ignore[attr-defined]
del _builder
