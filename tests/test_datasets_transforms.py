"""Temporal sampling golden values, spatial transforms vs direct PIL/torch, aug_info and view expansion."""
from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from PIL import Image

from config import ConfigError
from datasets.temporal_transforms import (
    TemporalCenterCrop,
    TemporalRandomCrop,
    TemporalSampling,
    temporal_center_crop,
)
from datasets.transforms import (
    SPATIAL_TRANSFORMS,
    TEMPORAL_TRANSFORMS,
    CenterCrop,
    Compose,
    CornerCrop,
    CropState,
    Normalize,
    RandomHorizontalFlip,
    Scale,
    ScaleJitteringRandomCrop,
    ToTensor,
    build_spatial,
    build_spatial_views,
    build_temporal,
)

MEAN = [0.45, 0.45, 0.45]
STD = [0.225, 0.225, 0.225]
EVAL_SPATIAL = [
    {"type": "Scale", "kwargs": {"resize": [224, 224]}},
    {"type": "ToTensor", "kwargs": {"norm_value": 255.0}},
    {"type": "Normalize", "kwargs": {"mean": MEAN, "std": STD}},
]


def _frames(count: int = 2, width: int = 320, height: int = 180, seed: int = 0) -> list[Image.Image]:
    rng = np.random.default_rng(seed)
    return [Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)) for _ in range(count)]


def _original_tensor(
    image: Image.Image, mean: list[float] | None = None, std: list[float] | None = None
) -> torch.Tensor:
    """The original's per-frame ToTensor (+ Normalize): uint8 HWC -> float CHW / 255, sub_/div_ per channel."""
    tensor = torch.tensor(np.array(image)).permute(2, 0, 1).contiguous().float().div(255.0)
    if mean is not None:
        for channel, m, s in zip(tensor, mean, std):
            channel.sub_(m).div_(s)
    return tensor


def _state(frame: Image.Image) -> CropState:
    return CropState(width=frame.size[0], height=frame.size[1])


# ---------------------------------------------------------------- temporal


@pytest.mark.parametrize(
    "start,n_frames,expected",
    [
        (44, 64, list(range(44, 107, 2))),
        (60, 75, list(range(65, 128, 2))),
        (1, 57, list(range(1, 58, 2)) + [2, 4, 6]),
        (1, 56, list(range(1, 56, 2)) + [1, 3, 5, 7]),
        (10, 10, ([10, 12, 14, 16, 18] * 7)[:32]),
        (5, 100, list(range(23, 86, 2))),
    ],
)
def test_temporal_center_crop_golden_examples(start: int, n_frames: int, expected: list[int]) -> None:
    assert len(expected) == 32
    assert temporal_center_crop(start, n_frames, size=64, step=2) == expected
    assert temporal_center_crop(start, n_frames) == expected
    candidates = list(range(start, start + n_frames))
    assert TemporalCenterCrop(size=64, step=2)(candidates) == expected


def test_temporal_center_crop_single_frame_and_errors() -> None:
    assert temporal_center_crop(7, 1) == [7] * 32
    with pytest.raises(ValueError, match="n_frames"):
        temporal_center_crop(1, 0)
    with pytest.raises(ValueError, match="step"):
        TemporalCenterCrop(size=64, step=0)


def test_temporal_random_crop_and_sampling() -> None:
    random.seed(3)
    out = TemporalRandomCrop(size=8, step=2)(list(range(100, 120)))
    assert len(out) == 4 and out == list(range(out[0], out[0] + 8, 2))
    # A window shorter than size loops from its start, like the centre crop.
    assert TemporalRandomCrop(size=6, step=1)([1, 2, 3, 4]) == [1, 2, 3, 4, 1, 2]
    assert TemporalSampling(step=3)(list(range(10))) == [0, 3, 6, 9]


def test_build_temporal_from_config() -> None:
    transform = build_temporal({"type": "TemporalCenterCrop", "kwargs": {"size": 64, "step": 2}})
    assert isinstance(transform, TemporalCenterCrop) and transform(list(range(44, 108))) == list(range(44, 107, 2))
    expected = r"train\.augmentation\.temporal\.type.*TemporalCentreCrop.*TemporalCenterCrop"
    with pytest.raises(ConfigError, match=expected):
        build_temporal({"type": "TemporalCentreCrop"}, key="train.augmentation.temporal")
    with pytest.raises(ConfigError, match=r"temporal\.kwargs.*stride"):
        build_temporal({"type": "TemporalCenterCrop", "kwargs": {"size": 64, "stride": 2}})


def test_tables_are_plain_dicts() -> None:
    assert type(SPATIAL_TRANSFORMS) is dict and type(TEMPORAL_TRANSFORMS) is dict
    expected = {"Scale", "RandomHorizontalFlip", "ToTensor", "Normalize", "CenterCrop", "CornerCrop"}
    assert expected <= set(SPATIAL_TRANSFORMS)


# ---------------------------------------------------------------- spatial


def test_scale_is_pil_bilinear_resize_bit_identical() -> None:
    frames = _frames()
    chain = Compose([Scale(resize=[224, 224]), ToTensor(255.0)])
    clip, info = chain(frames)
    assert clip.shape == (3, 2, 224, 224) and clip.dtype == torch.float32
    for index, frame in enumerate(frames):
        resized = frame.resize((224, 224), Image.BILINEAR)
        assert Scale([224, 224])([frame], _state(frame))[0].tobytes() == resized.tobytes()
        assert torch.equal(clip[:, index], _original_tensor(resized))
    assert info == {"crop_box": [0.0, 0.0, 1.0, 1.0], "flip": False, "pad_ratio": [1.0, 1.0]}


def test_scale_keeps_width_height_order_and_skips_when_sized(monkeypatch: pytest.MonkeyPatch) -> None:
    frame = _frames(1)[0]
    assert Scale([100, 50])([frame], _state(frame))[0].size == (100, 50)
    assert Scale(90)([frame], _state(frame))[0].size == (160, 90)  # shorter edge, int(90 * 320 / 180)
    sized = _frames(1, 224, 224)[0]

    def no_resize(*args: object, **kwargs: object) -> None:
        raise AssertionError("resize called on an image already at the target size")

    monkeypatch.setattr(Image.Image, "resize", no_resize)
    assert Scale([224, 224])([sized], _state(sized))[0] is sized
    assert Scale(224)([sized], _state(sized))[0] is sized


def test_full_eval_chain_equals_original_per_frame_pipeline() -> None:
    frames = _frames(3, seed=1)
    clip, _ = build_spatial_views(EVAL_SPATIAL)[0](frames)
    reference = torch.stack(
        [_original_tensor(f.resize((224, 224), Image.BILINEAR), MEAN, STD) for f in frames], 0
    ).permute(1, 0, 2, 3)
    assert torch.equal(clip, reference)


def test_normalize_on_known_pixels() -> None:
    pixels = np.array([[[0, 115, 255], [255, 0, 115]]], dtype=np.uint8)  # 1 x 2 RGB
    chain = Compose([ToTensor(255.0), Normalize(mean=[0.45, 0.5, 0.4], std=[0.225, 0.25, 0.2])])
    clip, _ = chain([Image.fromarray(pixels)])
    expected = np.empty((3, 1, 1, 2))
    for channel, (mean, std) in enumerate(zip([0.45, 0.5, 0.4], [0.225, 0.25, 0.2])):
        expected[channel, 0, 0] = (pixels[0, :, channel] / 255.0 - mean) / std
    np.testing.assert_allclose(clip.numpy(), expected, rtol=0, atol=1e-6)
    assert clip[0, 0, 0, 0].item() == pytest.approx(-2.0, abs=1e-6)  # (0 - 0.45) / 0.225
    with pytest.raises(ValueError, match="channel"):
        Compose([ToTensor(), Normalize(mean=[0.5], std=[0.5])])([Image.fromarray(pixels)])


def test_flip_is_recorded_and_mirrors_the_clip() -> None:
    frames = _frames(2, 16, 8)
    clip, info = Compose([RandomHorizontalFlip(p=1.0), ToTensor()])(frames)
    assert info["flip"] is True and info["crop_box"] == [0.0, 0.0, 1.0, 1.0]
    for index, frame in enumerate(frames):
        assert torch.equal(clip[:, index], _original_tensor(frame).flip(-1))
    _, info = Compose([RandomHorizontalFlip(p=0.0), ToTensor()])(frames)
    assert info["flip"] is False


def test_flip_uses_python_random_once_per_clip() -> None:
    chain = Compose([RandomHorizontalFlip(), ToTensor()])
    frames = _frames(2, 4, 4)
    random.seed(11)
    expected = [random.random() < 0.5 for _ in range(20)]
    random.seed(11)
    assert [chain(frames)[1]["flip"] for _ in range(20)] == expected
    assert True in expected and False in expected


def test_crop_after_flip_maps_back_to_original_coordinates() -> None:
    frame = _frames(1, 200, 100)[0]
    chain = Compose([RandomHorizontalFlip(p=1.0), CornerCrop(size=50, crop_position="tl"), ToTensor()])
    clip, info = chain([frame])
    # The top-left square of the mirrored frame is the original's top-right square, mirrored.
    assert info["crop_box"] == pytest.approx([0.75, 0.0, 1.0, 0.5]) and info["flip"] is True
    region = frame.crop((150, 0, 200, 50))
    assert torch.equal(clip[:, 0], _original_tensor(region).flip(-1))


@pytest.mark.parametrize(
    "position,box", [("c", [0.375, 0.25, 0.625, 0.75]), ("tr", [0.75, 0.0, 1.0, 0.5]), ("bl", [0.0, 0.5, 0.25, 1.0])]
)
def test_corner_and_center_crop_boxes(position: str, box: list[float]) -> None:
    frame = _frames(1, 200, 100)[0]
    clip, info = Compose([CornerCrop(50, position), ToTensor()])([frame])
    assert info["crop_box"] == pytest.approx(box) and clip.shape == (3, 1, 50, 50)
    x1, y1 = round(box[0] * 200), round(box[1] * 100)
    assert torch.equal(clip[:, 0], _original_tensor(frame.crop((x1, y1, x1 + 50, y1 + 50))))
    _, info = Compose([Scale([400, 200]), CenterCrop(100), ToTensor()])([frame])
    assert info["crop_box"] == pytest.approx([0.375, 0.25, 0.625, 0.75])


def test_scale_jittering_random_crop_box_matches_the_pixels() -> None:
    frame = _frames(1, 64, 32)[0]
    random.seed(5)
    clip, info = Compose([ScaleJitteringRandomCrop(min_scale=16, max_scale=24, size=16), ToTensor()])([frame])
    random.seed(5)
    scale, pos_x, pos_y = random.randint(16, 24), random.random(), random.random()
    width, height = int(scale / 32 * 64), int(scale / 32 * 32)
    x1, y1 = pos_x * (width - 16), pos_y * (height - 16)
    assert clip.shape == (3, 1, 16, 16)
    assert info["crop_box"] == pytest.approx([x1 / width, y1 / height, (x1 + 16) / width, (y1 + 16) / height])
    expected = frame.resize((width, height), Image.BILINEAR).crop((x1, y1, x1 + 16, y1 + 16))
    assert torch.equal(clip[:, 0], _original_tensor(expected))


# ---------------------------------------------------------------- building views


def test_multi_view_expansion_first_transform_fastest() -> None:
    config = [
        {"type": "Scale", "kwargs": [{"resize": [64, 64]}, {"resize": [48, 48]}]},
        {"type": "CornerCrop", "kwargs": [{"size": 32, "crop_position": p} for p in ("tl", "br", "c")]},
        {"type": "ToTensor"},
        {"type": "Normalize", "kwargs": {"mean": MEAN, "std": STD}},  # list parameters, not views
    ]
    views = build_spatial_views(config)
    assert len(views) == 6
    combos = [(v.transforms[0].resize, v.transforms[1].crop_position) for v in views]
    assert combos == [
        ((64, 64), "tl"), ((48, 48), "tl"),
        ((64, 64), "br"), ((48, 48), "br"),
        ((64, 64), "c"), ((48, 48), "c"),
    ]
    assert all(v.transforms[3].mean == MEAN for v in views)


def test_single_view_configs_and_training_rejects_views() -> None:
    assert len(build_spatial_views(EVAL_SPATIAL)) == 1
    chain = build_spatial(EVAL_SPATIAL[:1] + [{"type": "RandomHorizontalFlip"}] + EVAL_SPATIAL[1:])
    assert [type(t).__name__ for t in chain.transforms] == ["Scale", "RandomHorizontalFlip", "ToTensor", "Normalize"]
    multi = [{"type": "Scale", "kwargs": [{"resize": 8}, {"resize": 16}]}, {"type": "ToTensor"}]
    with pytest.raises(ConfigError, match=r"train\.augmentation\.spatial: describes 2 views"):
        build_spatial(multi)


def test_config_errors_name_the_yaml_key() -> None:
    bad_type = [EVAL_SPATIAL[0], {"type": "RandomFlip"}, *EVAL_SPATIAL[1:]]
    with pytest.raises(ConfigError) as excinfo:
        build_spatial_views(bad_type, key="val.augmentation.spatial")
    message = str(excinfo.value)
    assert message.startswith("val.augmentation.spatial[1].type: unknown transform 'RandomFlip'")
    assert "RandomHorizontalFlip" in message and "Normalize" in message
    # The project's one kwargs checker (config.check_kwargs) words it for every builder alike.
    with pytest.raises(ConfigError, match=r"spatial\[0\]\.kwargs\.size: unknown key; did you mean 'resize'\?; "
                                          r"accepted: resize, interpolation"):
        build_spatial_views([{"type": "Scale", "kwargs": {"size": 224}}, {"type": "ToTensor"}])
    with pytest.raises(ConfigError, match=r"spatial\[0\]\.kwargs\[1\]: Scale"):
        build_spatial_views([{"type": "Scale", "kwargs": [{"resize": 8}, {"resize": "big"}]}, {"type": "ToTensor"}])
    with pytest.raises(ConfigError, match="exactly one ToTensor"):
        build_spatial_views([EVAL_SPATIAL[0]])
    with pytest.raises(ConfigError, match="before ToTensor"):
        build_spatial_views([EVAL_SPATIAL[1], EVAL_SPATIAL[0]])
    with pytest.raises(ConfigError, match=r"spatial\[0\]: unknown key"):
        build_spatial_views([{"type": "ToTensor", "kwarg": {}}])
