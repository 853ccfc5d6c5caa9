"""The `basic` neck: box augmentation mapping, jitter, RoIs, targets and metadata (docs/numerics.md §6)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from models.necks import NECKS, NO_AUG, BasicNeck, bbox_jitter, get_bbox_after_aug


def _aug(crop=(0.0, 0.0, 1.0, 1.0), flip=False, pad=(1.0, 1.0)) -> dict:
    return {"crop_box": list(crop), "flip": flip, "pad_ratio": list(pad)}


def _entry(box, labels=(0,), person=0) -> dict:
    return {"bounding_box": list(box), "label": list(labels), "person_id": [person]}


# --- get_bbox_after_aug -------------------------------------------------------------------------


def test_no_augmentation_keeps_the_box() -> None:
    assert get_bbox_after_aug(NO_AUG, [0.1, 0.2, 0.5, 0.8]) == pytest.approx([0.1, 0.2, 0.5, 0.8])
    assert get_bbox_after_aug(None, [0.1, 0.2, 0.5, 0.8]) == [0.1, 0.2, 0.5, 0.8]


def test_crop_flip_and_padding_golden() -> None:
    # Crop [0.2, 0.1, 0.8, 0.6] (w 0.6, h 0.5): box clipped to x 0.2..0.5, y 0.1..0.6, i.e.
    # [0, 0, 0.5, 1] in crop coordinates; flipped -> [0.5, 0, 1, 1]; padded by (2, 1.25).
    box = [0.1, 0.0, 0.5, 0.9]
    assert get_bbox_after_aug(_aug((0.2, 0.1, 0.8, 0.6)), box) == pytest.approx([0.0, 0.0, 0.5, 1.0])
    flipped = get_bbox_after_aug(_aug((0.2, 0.1, 0.8, 0.6), flip=True), box)
    assert flipped == pytest.approx([0.5, 0.0, 1.0, 1.0])
    padded = get_bbox_after_aug(_aug((0.2, 0.1, 0.8, 0.6), flip=True, pad=(2.0, 1.25)), box)
    assert padded == pytest.approx([0.25, 0.0, 0.5, 0.8])


def test_box_outside_the_crop_or_of_zero_area_is_dropped() -> None:
    assert get_bbox_after_aug(_aug((0.5, 0.0, 1.0, 1.0)), [0.1, 0.1, 0.4, 0.9]) is None
    assert get_bbox_after_aug(NO_AUG, [0.3, 0.3, 0.3, 0.9]) is None  # zero width
    assert get_bbox_after_aug(NO_AUG, [0.3, 1.2, 0.6, 1.5]) is None  # entirely below the frame


def test_aug_threshold_drops_mostly_cropped_boxes() -> None:
    box = [0.0, 0.0, 0.4, 1.0]  # 3/4 of it lies left of the crop
    assert get_bbox_after_aug(_aug((0.3, 0.0, 1.0, 1.0)), box, aug_threshold=0.3) is None
    assert get_bbox_after_aug(_aug((0.3, 0.0, 1.0, 1.0)), box, aug_threshold=0.2) is not None


def test_box_inverted_in_both_axes_is_kept_as_in_the_original() -> None:
    assert get_bbox_after_aug(NO_AUG, [0.6, 0.8, 0.2, 0.3]) == pytest.approx([0.6, 0.8, 0.2, 0.3])


# --- bbox_jitter --------------------------------------------------------------------------------


def test_jitter_golden_with_fixed_numpy_seed() -> None:
    # Offsets of np.random.seed(0); np.random.uniform(-0.075, 0.075, 4), scaled by w 0.4 / h 0.6.
    np.random.seed(0)
    (box,) = bbox_jitter([0.1, 0.2, 0.5, 0.8], 1, 0.075)
    expected = [0.10292881023563949, 0.21936704297351778, 0.5061658025642987, 0.8040394864697208]
    assert box == pytest.approx(expected, abs=1e-15)
    assert all(type(v) is float for v in box)


def test_jitter_with_several_copies_keeps_the_original_first() -> None:
    np.random.seed(3)
    boxes = bbox_jitter([0.0, 0.9, 0.3, 1.0], 3, 0.075)
    assert len(boxes) == 3
    assert boxes[0] == [0.0, 0.9, 0.3, 1.0]
    # y2 + offset is bounded by 1 (quirk 5 bounds: max(x1, 0), min(y1, 1), max(x2, 0), min(y2, 1)).
    assert boxes[1] == pytest.approx([0.0022859056158558958, 0.9031222173392716, 0.2905907132510825, 1.0])


def test_jittered_boxes_stay_inside_the_frame_after_clipping() -> None:
    np.random.seed(1)
    rng = np.random.RandomState(7)
    for _ in range(200):
        x1, y1 = rng.uniform(0, 0.9, 2)
        box = [x1, y1, min(x1 + rng.uniform(0.01, 0.5), 1.0), min(y1 + rng.uniform(0.01, 0.5), 1.0)]
        for jittered in bbox_jitter(box, 2, 0.075):
            mapped = get_bbox_after_aug(NO_AUG, jittered)
            assert mapped is not None
            assert all(0.0 <= v <= 1.0 for v in mapped)


# --- BasicNeck ----------------------------------------------------------------------------------


def _batch_inputs():
    labels = [
        [_entry([0.1, 0.2, 0.5, 0.8], (0, 13)), _entry([0.5, 0.5, 0.9, 0.9], (49,))],
        [],
        [_entry([0.2, 0.2, 0.2, 0.6], (1,)), _entry([0.0, 0.0, 1.0, 1.0], (2, 3))],
    ]
    return labels, ["vid_a", "vid_b", "vid_c"], ["902", "903", "17"], [10, 11, 12]


def test_neck_builds_rois_targets_and_metadata_in_batch_order() -> None:
    labels, names, times, elements = _batch_inputs()
    neck = NECKS["basic"](bbox_jitter={"num": 1, "scale": 0.075}, num_classes=50, multi_class=True).eval()
    out = neck([NO_AUG, NO_AUG, _aug(pad=(1.0, 1.6))], labels, names, times, elements)
    # The zero-width box of vid_c is dropped, yet counted by the running box id.
    assert out.num_rois == 3
    assert out.rois.dtype == torch.float32 and out.rois.shape == (3, 5)
    expected_rois = [[0, 0.1, 0.2, 0.5, 0.8], [0, 0.5, 0.5, 0.9, 0.9], [2, 0.0, 0.0, 1.0, 1.0 / 1.6]]
    assert torch.allclose(out.rois, torch.tensor(expected_rois), atol=1e-7)
    assert out.roi_ids == [0, 2, 2, 3]
    assert out.bbox_ids == [0, 1, 3]
    assert out.box_index == [0, 1, 1]
    assert out.element_index == [10, 10, 12]
    assert out.filenames == ["vid_a", "vid_a", "vid_c"]
    assert out.mid_times == ["902", "902", "17"]
    assert out.bboxes == [[0.1, 0.2, 0.5, 0.8], [0.5, 0.5, 0.9, 0.9], [0.0, 0.0, 1.0, 1.0]]
    assert out.sizes_before_padding == [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0 / 1.6]]
    assert out.targets.shape == (3, 50) and out.targets.dtype == torch.float32
    assert torch.nonzero(out.targets).tolist() == [[0, 0], [0, 13], [1, 49], [2, 2], [2, 3]]


def test_jitter_only_in_training_and_with_the_original_random_stream() -> None:
    labels, names, times, _ = _batch_inputs()
    neck = BasicNeck(bbox_jitter={"num": 1, "scale": 0.075}, num_classes=50)
    neck.eval()
    np.random.seed(5)
    evaluated = neck([NO_AUG] * 3, labels, names, times)
    assert np.random.uniform() == np.random.RandomState(5).uniform()  # eval drew nothing
    assert torch.allclose(evaluated.rois[:, 1:], torch.tensor([b for b in evaluated.bboxes], dtype=torch.float32))

    neck.train()
    np.random.seed(5)
    trained = neck([NO_AUG] * 3, labels, names, times)
    # One draw of 4 offsets per box, dropped boxes included, in sample then box order.
    reference = np.random.RandomState(5)
    expected = []
    for sample in labels:
        for entry in sample:
            x1, y1, x2, y2 = entry["bounding_box"]
            off = reference.uniform(-0.075, 0.075, 4)
            w, h = x2 - x1, y2 - y1
            jittered = [max(x1 + off[0] * w, 0.0), min(y1 + off[1] * h, 1.0),
                        max(x2 + off[2] * w, 0.0), min(y2 + off[3] * h, 1.0)]
            mapped = get_bbox_after_aug(NO_AUG, jittered)
            if mapped is not None:
                expected.append(mapped)
    assert torch.equal(trained.rois[:, 1:], torch.tensor(expected, dtype=torch.float32))
    # The pkl box is reported unjittered (the zero-width box stays zero-width, hence dropped).
    assert trained.bboxes == evaluated.bboxes
    assert trained.bbox_ids == evaluated.bbox_ids == [0, 1, 3]


def test_training_with_several_jitter_copies_repeats_the_box_id() -> None:
    neck = BasicNeck(bbox_jitter={"num": 3, "scale": 0.05}, num_classes=5).train()
    np.random.seed(0)
    out = neck([NO_AUG], [[_entry([0.2, 0.2, 0.6, 0.6], (4,))]], ["v"], ["1"])
    assert out.num_rois == 3 and out.bbox_ids == [0, 0, 0]
    assert out.rois[0, 1:].tolist() == pytest.approx([0.2, 0.2, 0.6, 0.6], abs=1e-7)
    assert out.targets[:, 4].tolist() == [1.0, 1.0, 1.0]


def test_empty_batch_gives_empty_tensors() -> None:
    out = BasicNeck(num_classes=7).eval()([NO_AUG, NO_AUG], [[], []], ["a", "b"], ["1", "2"])
    assert out.num_rois == 0
    assert out.rois.shape == (0, 5) and out.targets.shape == (0, 7)
    assert out.roi_ids == [0, 0, 0]


def test_single_label_targets_when_not_multi_class() -> None:
    out = BasicNeck(num_classes=5, multi_class=False).eval()(
        [NO_AUG], [[_entry([0, 0, 1, 1], (3,)), _entry([0, 0, 0.5, 0.5], (1,))]], ["v"], ["1"]
    )
    assert out.targets.dtype == torch.int64 and out.targets.tolist() == [[3], [1]]


def test_label_outside_the_classes_is_an_error() -> None:
    with pytest.raises(ValueError, match=r"label \[50\] outside 0..49"):
        BasicNeck(num_classes=50).eval()([NO_AUG], [[_entry([0, 0, 1, 1], (50,))]], ["v"], ["1"])


def test_malformed_jitter_config_is_an_error() -> None:
    with pytest.raises(ValueError, match="bbox_jitter"):
        BasicNeck(bbox_jitter={"nums": 1, "scale": 0.1})
    with pytest.raises(ValueError, match="bbox_jitter.num"):
        BasicNeck(bbox_jitter={"num": 0, "scale": 0.1})
