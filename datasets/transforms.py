"""Clip transforms of the original SFMViT: per-clip spatial augmentation, and building transforms from config.

Temporal transforms (frame sampling) live in ``datasets.temporal_transforms``; they are imported here
because ``build_temporal`` and the builder tables name them.
Spatial transforms act on a whole clip at once (one random draw per clip, as the original draws its
parameters once per clip) and keep track of where the output lies in the original frame, which
becomes the clip's ``aug_info`` (``crop_box``, ``flip``; ``pad_ratio`` is added by the collate).

Config entries follow the original YAML schema: ``{'type': <name>, 'kwargs': {...}}``. In the
evaluation split a spatial entry's ``kwargs`` may instead be a LIST of such mappings: each mapping
is one choice, and every combination of choices is one test-time view (docs/numerics.md §7).
A list-valued parameter inside a mapping (``Normalize.mean``, ``Scale.resize``) is an ordinary
argument; only the ``kwargs`` node itself being a list creates views, so the two never clash.
"""
from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from config import ConfigError, construct, lookup
from datasets.temporal_transforms import TEMPORAL_TRANSFORMS, check_positive

# What a spatial transform consumes / produces: PIL frames before ToTensor, a tensor after it.
PIL_STAGE = "pil"
TENSOR_STAGE = "tensor"


# --------------------------------------------------------------------------------------------
# Spatial transforms
# --------------------------------------------------------------------------------------------


@dataclass
class CropState:
    """Where the current clip image lies in the original frame.

    Attributes:
        width, height: current image size in pixels.
        box: ``[x1, y1, x2, y2]`` region of the original frame shown by the current image,
            normalised to [0, 1] by the original frame size.
        flip: whether the current image is mirrored relative to the original frame.
    """

    width: int
    height: int
    box: list[float] = field(default_factory=lambda: [0.0, 0.0, 1.0, 1.0])
    flip: bool = False

    def crop(self, x1: float, y1: float, x2: float, y2: float) -> None:
        """Record a crop given in pixels of the current image (may be fractional, as the original's).

        The crop size becomes the current size. A crop after a flip is mirrored back into original
        coordinates (same rule as the original's ``get_aug_info``).
        """
        box_w = self.box[2] - self.box[0]
        box_h = self.box[3] - self.box[1]
        left, right = x1 / self.width * box_w, x2 / self.width * box_w
        top, bottom = y1 / self.height * box_h, y2 / self.height * box_h
        if self.flip:
            self.box = [self.box[2] - right, self.box[1] + top, self.box[2] - left, self.box[1] + bottom]
        else:
            self.box = [self.box[0] + left, self.box[1] + top, self.box[0] + right, self.box[1] + bottom]
        self.width, self.height = int(round(x2 - x1)), int(round(y2 - y1))

    def aug_info(self) -> dict:
        """The batch contract's per-clip dict, before padding (``pad_ratio`` [1, 1])."""
        return {"crop_box": [float(v) for v in self.box], "flip": self.flip, "pad_ratio": [1.0, 1.0]}


def _size_pair(value: int | Sequence[int], name: str) -> tuple[int, int]:
    """An int ``s`` -> ``(s, s)``; a two-item sequence -> ``(w, h)``."""
    if isinstance(value, bool):
        raise ValueError(f"{name} must be an int or [width, height], got {value!r}")
    if isinstance(value, (int, np.integer)):
        pair = (int(value), int(value))
    elif isinstance(value, Sequence) and len(value) == 2 and all(isinstance(v, (int, np.integer)) for v in value):
        pair = (int(value[0]), int(value[1]))
    else:
        raise ValueError(f"{name} must be an int or [width, height] of ints, got {value!r}")
    if min(pair) < 1:
        raise ValueError(f"{name} must be positive, got {value!r}")
    return pair


class Scale:
    """Resize every frame with PIL (bilinear by default): ``[w, h]`` exactly, or an int shorter edge.

    With ``resize`` = ``[w, h]`` the aspect ratio is NOT kept (320x180 -> 224x224 in the released
    configs); with an int the shorter edge becomes ``resize`` and the longer one
    ``int(resize * long / short)``. Frames already at the target size are left untouched.
    """

    stage = PIL_STAGE

    def __init__(self, resize: int | Sequence[int], interpolation: int = Image.BILINEAR) -> None:
        if isinstance(resize, bool) or not isinstance(resize, (int, Sequence)):
            raise ValueError(f"resize must be an int or [width, height], got {resize!r}")
        self.resize = resize if isinstance(resize, int) else _size_pair(resize, "resize")
        if isinstance(resize, int) and resize < 1:
            raise ValueError(f"resize must be positive, got {resize!r}")
        self.interpolation = interpolation

    def target_size(self, width: int, height: int) -> tuple[int, int]:
        """Output ``(w, h)`` for an input of ``width`` x ``height`` pixels."""
        if not isinstance(self.resize, int):
            return self.resize
        if width < height:
            return self.resize, int(self.resize * height / width)
        return int(self.resize * width / height), self.resize

    def __call__(self, frames: list[Image.Image], state: CropState) -> list[Image.Image]:
        """Resize a clip; the crop box is unchanged (a resize shows the same region)."""
        size = self.target_size(state.width, state.height)
        if size == (state.width, state.height):
            return frames
        state.width, state.height = size
        return [frame.resize(size, self.interpolation) for frame in frames]

    def __repr__(self) -> str:
        return f"Scale(resize={self.resize}, interpolation={self.interpolation})"


class CenterCrop:
    """Crop the centre ``size`` (int, or ``[w, h]``) of every frame; PIL pads with black outside."""

    stage = PIL_STAGE

    def __init__(self, size: int | Sequence[int]) -> None:
        self.size = _size_pair(size, "size")

    def __call__(self, frames: list[Image.Image], state: CropState) -> list[Image.Image]:
        """Crop a clip and record the crop."""
        crop_w, crop_h = self.size
        x1 = int(round((state.width - crop_w) / 2.0))
        y1 = int(round((state.height - crop_h) / 2.0))
        box = (x1, y1, x1 + crop_w, y1 + crop_h)
        state.crop(*box)
        return [frame.crop(box) for frame in frames]

    def __repr__(self) -> str:
        return f"CenterCrop(size={self.size})"


CORNER_POSITIONS = ("c", "tl", "tr", "bl", "br")


class CornerCrop:
    """Square ``size`` crop at a corner or the centre; a random position per clip when not given."""

    stage = PIL_STAGE

    def __init__(self, size: int, crop_position: str | None = None) -> None:
        self.size = _size_pair(size, "size")[0]
        if crop_position is not None and crop_position not in CORNER_POSITIONS:
            raise ValueError(f"crop_position must be one of {list(CORNER_POSITIONS)} or null, got {crop_position!r}")
        self.crop_position = crop_position

    def _box(self, position: str, width: int, height: int) -> tuple[int, int, int, int]:
        side = self.size
        if position == "c":
            x1, y1 = int(round((width - side) / 2.0)), int(round((height - side) / 2.0))
        else:
            # The original's aug_info for 'tr' used an undefined name (quirk 21); the image crop is
            # the top-right square, which is what we record.
            x1 = 0 if position[1] == "l" else width - side
            y1 = 0 if position[0] == "t" else height - side
        return x1, y1, x1 + side, y1 + side

    def __call__(self, frames: list[Image.Image], state: CropState) -> list[Image.Image]:
        """Crop a clip at the configured (or one random) position and record the crop."""
        position = self.crop_position
        if position is None:
            position = CORNER_POSITIONS[random.randint(0, len(CORNER_POSITIONS) - 1)]
        box = self._box(position, state.width, state.height)
        state.crop(*box)
        return [frame.crop(box) for frame in frames]

    def __repr__(self) -> str:
        return f"CornerCrop(size={self.size}, crop_position={self.crop_position})"


class RandomHorizontalFlip:
    """Mirror the whole clip with probability ``p`` (one ``random.random()`` draw per clip)."""

    stage = PIL_STAGE

    def __init__(self, p: float = 0.5) -> None:
        if not 0.0 <= float(p) <= 1.0:
            raise ValueError(f"p must be in [0, 1], got {p!r}")
        self.p = float(p)

    def __call__(self, frames: list[Image.Image], state: CropState) -> list[Image.Image]:
        """Flip or not; a flip toggles ``state.flip`` (two flips cancel, as in the original)."""
        if random.random() >= self.p:
            return frames
        state.flip = not state.flip
        return [frame.transpose(Image.FLIP_LEFT_RIGHT) for frame in frames]

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class ScaleJitteringRandomCrop:
    """Resize the shorter edge to a random int in ``[min_scale, max_scale]``, then a random square crop.

    The crop corner is fractional (``u * (w - size)``, u ~ U[0, 1)); PIL rounds it for the image
    while ``aug_info`` keeps the exact value, as the original does.
    """

    stage = PIL_STAGE

    def __init__(self, min_scale: int, max_scale: int, size: int, interpolation: int = Image.BILINEAR) -> None:
        check_positive(min_scale=min_scale, max_scale=max_scale, size=size)
        if min_scale > max_scale:
            raise ValueError(f"min_scale ({min_scale}) must not exceed max_scale ({max_scale})")
        self.min_scale, self.max_scale, self.size = min_scale, max_scale, size
        self.interpolation = interpolation

    def __call__(self, frames: list[Image.Image], state: CropState) -> list[Image.Image]:
        """Rescale and crop a clip (three draws: scale, then x and y position) and record it."""
        scale = random.randint(self.min_scale, self.max_scale)
        pos_x, pos_y = random.random(), random.random()
        rate = float(scale) / min(state.width, state.height)
        size = (int(rate * state.width), int(rate * state.height))
        state.width, state.height = size
        x1, y1 = pos_x * (size[0] - self.size), pos_y * (size[1] - self.size)
        box = (x1, y1, x1 + self.size, y1 + self.size)
        state.crop(*box)
        state.width = state.height = self.size
        return [frame.resize(size, self.interpolation).crop(box) for frame in frames]

    def __repr__(self) -> str:
        return (
            f"ScaleJitteringRandomCrop(min_scale={self.min_scale}, max_scale={self.max_scale}, "
            f"size={self.size}, interpolation={self.interpolation})"
        )


class ToTensor:
    """PIL frames (uint8, H x W x C) -> one float32 clip ``[C, T, H, W]`` divided by ``norm_value``.

    Equal, value for value, to the original's per-frame ``ToTensor`` followed by stacking to
    ``[T, C, H, W]`` and permuting to ``[C, T, H, W]``; here it is one copy into the final layout.
    """

    stage = PIL_STAGE
    output_stage = TENSOR_STAGE

    def __init__(self, norm_value: float = 255.0) -> None:
        if float(norm_value) == 0.0:
            raise ValueError("norm_value must not be 0")
        self.norm_value = norm_value

    def __call__(self, frames: list[Image.Image], state: CropState) -> torch.Tensor:
        """Convert a clip.

        Returns:
            float32 tensor ``[C, T, H, W]``.
        """
        width, height = frames[0].size
        channels = len(frames[0].getbands())
        # A writable uint8 stack (PIL's array view is read-only, which torch warns about).
        raw = np.empty((len(frames), height, width, channels), dtype=np.uint8)
        for index, frame in enumerate(frames):
            raw[index] = np.asarray(frame).reshape(height, width, channels)
        clip = torch.empty((channels, len(frames), height, width), dtype=torch.float32)
        # uint8 -> float32 is exact; the division is the original's, applied to the whole clip.
        clip.copy_(torch.from_numpy(raw).permute(3, 0, 1, 2))
        return clip.div_(self.norm_value)

    def __repr__(self) -> str:
        return f"ToTensor(norm_value={self.norm_value})"


class Normalize:
    """``(x - mean[c]) / std[c]`` per channel, in place on a ``[C, T, H, W]`` clip."""

    stage = TENSOR_STAGE

    def __init__(self, mean: Sequence[float], std: Sequence[float]) -> None:
        if not isinstance(mean, Sequence) or not isinstance(std, Sequence) or len(mean) != len(std) or not mean:
            raise ValueError(f"mean and std must be lists of equal length, got mean={mean!r}, std={std!r}")
        if any(float(s) == 0.0 for s in std):
            raise ValueError(f"std must not contain 0, got {std!r}")
        self.mean = [float(m) for m in mean]
        self.std = [float(s) for s in std]

    def __call__(self, clip: torch.Tensor, state: CropState) -> torch.Tensor:
        """Normalise a clip ``[C, T, H, W]`` in place and return it."""
        if clip.shape[0] != len(self.mean):
            raise ValueError(f"Normalize has {len(self.mean)} channel values but the clip has {clip.shape[0]} channels")
        # Same scalar sub_/div_ per channel as the original, so the values are bit-identical.
        for channel, mean, std in zip(clip, self.mean, self.std):
            channel.sub_(mean).div_(std)
        return clip

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


# Config ``type`` -> class: the original's names, which are the class names.
SPATIAL_TRANSFORMS: dict[str, type] = {cls.__name__: cls for cls in (
    Scale, CenterCrop, CornerCrop, RandomHorizontalFlip, ScaleJitteringRandomCrop, ToTensor, Normalize)}

SpatialTransform = Callable[..., object]


class Compose:
    """A chain of spatial transforms: PIL-stage ones, exactly one ``ToTensor``, tensor-stage ones."""

    def __init__(self, transforms: Sequence[SpatialTransform]) -> None:
        stages = [getattr(t, "stage", None) for t in transforms]
        to_tensor = [i for i, t in enumerate(transforms) if isinstance(t, ToTensor)]
        if len(to_tensor) != 1:
            raise ValueError(f"a spatial chain needs exactly one ToTensor, found {len(to_tensor)}")
        split = to_tensor[0]
        if any(stage != PIL_STAGE for stage in stages[:split]) or any(s != TENSOR_STAGE for s in stages[split + 1 :]):
            raise ValueError("image transforms must come before ToTensor and tensor transforms after it")
        self.transforms = list(transforms)

    def __call__(self, frames: list[Image.Image]) -> tuple[torch.Tensor, dict]:
        """Transform one clip (random choices drawn once for all its frames).

        Args:
            frames: T PIL images of one size.

        Returns:
            The clip ``[C, T, H, W]`` float32 and its aug_info
            (``crop_box`` normalised ``[x1, y1, x2, y2]``, ``flip``, ``pad_ratio`` [1, 1]).
        """
        width, height = frames[0].size
        state = CropState(width=width, height=height)
        clip: object = frames
        for transform in self.transforms:
            clip = transform(clip, state)
        return clip, state.aug_info()

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


# --------------------------------------------------------------------------------------------
# Building from config
# --------------------------------------------------------------------------------------------


def _entry_parts(entry: object, key: str) -> tuple[str, object]:
    """``(type, kwargs)`` of a config entry given as a mapping or as a config dataclass."""
    if isinstance(entry, Mapping):
        unknown = sorted(set(entry) - {"type", "kwargs"})
        if unknown:
            raise ConfigError("", key, f"unknown key(s) {unknown}; an entry has 'type' and optional 'kwargs'")
        name, kwargs = entry.get("type"), entry.get("kwargs")
    else:
        name, kwargs = getattr(entry, "type", None), getattr(entry, "kwargs", None)
    if not isinstance(name, str):
        raise ConfigError("", f"{key}.type", f"expected a transform name, found {name!r}")
    return name, {} if kwargs is None else kwargs


def _instantiate(cls: type, kwargs: object, key: str) -> object:
    # The project's one builder call (``config.construct``): kwargs checked against the signature,
    # a value the transform rejects named by its key.
    if not isinstance(kwargs, Mapping):
        raise ConfigError("", key, f"expected a mapping of keyword arguments, found {kwargs!r}")
    return construct(cls, kwargs, key)


def build_spatial_views(spatial_cfg: Sequence[object], key: str = "val.augmentation.spatial") -> list[Compose]:
    """Build every test-time view of an ``augmentation.spatial`` list.

    An entry whose ``kwargs`` is a list of mappings offers one choice per mapping; every
    combination is one view, enumerated with the FIRST transform varying fastest (view v takes
    choice ``(v // prod(n_0..n_{i-1})) % n_i`` of entry i), as the original does.

    Args:
        spatial_cfg: entries ``{'type': name, 'kwargs': mapping | list of mappings}`` (mappings or
            config dataclasses with ``type`` / ``kwargs`` attributes).
        key: dotted YAML path of the list, used in error messages.

    Returns:
        One ``Compose`` per view (transform objects are shared between views; they hold no state).

    Raises:
        ConfigError: unknown type (with the choices), bad kwargs, an empty choice list, or
            a chain without exactly one ToTensor or in the wrong order; the message names the key.
    """
    if isinstance(spatial_cfg, (str, bytes, Mapping)) or not isinstance(spatial_cfg, Sequence):
        raise ConfigError("", key, f"expected a list of transforms, found {spatial_cfg!r}")
    choices: list[list[object]] = []
    for index, entry in enumerate(spatial_cfg):
        entry_key = f"{key}[{index}]"
        name, kwargs = _entry_parts(entry, entry_key)
        cls = lookup(SPATIAL_TRANSFORMS, name, f"{entry_key}.type", kind="transform")
        if isinstance(kwargs, Sequence) and not isinstance(kwargs, (str, bytes)):
            if not kwargs:
                raise ConfigError("", f"{entry_key}.kwargs", "an empty list offers no choice")
            options = [_instantiate(cls, kw, f"{entry_key}.kwargs[{j}]") for j, kw in enumerate(kwargs)]
        else:
            options = [_instantiate(cls, kwargs, f"{entry_key}.kwargs")]
        choices.append(options)
    n_views = int(np.prod([len(options) for options in choices])) if choices else 1
    views = []
    for view in range(n_views):
        remainder, chain = view, []
        for options in choices:
            chain.append(options[remainder % len(options)])
            remainder //= len(options)
        try:
            views.append(Compose(chain))
        except ValueError as exc:
            raise ConfigError("", key, str(exc)) from None
    return views


def build_spatial(spatial_cfg: Sequence[object], key: str = "train.augmentation.spatial") -> Compose:
    """Build a single spatial chain (training); a list-valued ``kwargs`` is an error here.

    Raises:
        ConfigError: as :func:`build_spatial_views`, or when the entries describe several views.
    """
    views = build_spatial_views(spatial_cfg, key)
    if len(views) != 1:
        raise ConfigError("", key, f"describes {len(views)} views; list-valued kwargs are for evaluation only")
    return views[0]


def build_temporal(
    temporal_cfg: object, key: str = "val.augmentation.temporal"
) -> Callable[[Sequence[int]], list[int]]:
    """Build the temporal transform of an ``augmentation.temporal`` mapping.

    Raises:
        ConfigError: unknown type (with the choices) or bad kwargs, naming the key.
    """
    name, kwargs = _entry_parts(temporal_cfg, key)
    cls = lookup(TEMPORAL_TRANSFORMS, name, f"{key}.type", kind="transform")
    return _instantiate(cls, kwargs, f"{key}.kwargs")
