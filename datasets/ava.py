"""AVA-style keyframe dataset over an annotation / proposal pkl and extracted PNG frames, and its collate into batches.

One item = one pkl element (read as given: a keyframe repeated in the pkl is an item per copy,
docs/numerics.md quirk 18). Its clip is made of the frames chosen by the temporal transform, each loaded
as ``PIL.Image.open(path).convert('RGB')`` and passed through the spatial transform chain(s).
Only the sampled frames are opened, and a frame sampled twice (short windows loop) is read once.
With a frame store (``datasets.frame_store``) the decoded frames, already through the chains'
shared leading ``Scale``, come from a memory-mapped per-video array instead: same pixels, same
clips, bit for bit.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
import torch.nn.functional as F
from PIL import Image
from torch.utils.data import Dataset

from common.errors import FormatError
from datasets.frame_store import FrameStore, store_resize_for
from datasets.transforms import Compose
from formats.annotation_pkl import frame_path, load_annotation_pkl
from structures.batch import ClipView, EvalBatch, Keyframes, TrainBatch

logger = logging.getLogger(__name__)

TemporalTransform = Callable[[Sequence[int]], list[int]]


class AVADataset(Dataset):
    """Clips and box annotations of the keyframes of one annotation pkl.

    Attributes:
        elements: the pkl's elements, unchanged and in file order.
        classes: the pkl's ``classes`` (position c = model output c, ``classes[c]['id']`` its id).
        training: one spatial chain and a single clip per item when True; one clip per view otherwise.
    """

    def __init__(
        self,
        root_path: str | Path,
        annotation_path: str | Path,
        spatial_views: Compose | Sequence[Compose],
        temporal_transform: TemporalTransform | None,
        training: bool,
        frame_store: FrameStore | str | Path | None = None,
    ) -> None:
        """Read the pkl (validated by ``formats.annotation_pkl``); frames are read lazily.

        Args:
            root_path: folder holding ``<video>/<format_str % frame>`` files.
            annotation_path: the ``[elements, classes]`` pkl.
            spatial_views: one chain, or one per test-time view (training accepts exactly one).
            temporal_transform: maps candidate frame numbers to sampled ones (all when None).
            training: selects the item layout (single clip vs list over views).
            frame_store: a ``FrameStore`` or its root folder: read frames from it (built lazily
                for each video on first use) instead of decoding PNGs. The resize baked in is the
                views' shared leading ``Scale`` (decoded frames only when they do not share one).

        Raises:
            FileNotFoundError: the pkl is missing.
            FormatError: the pkl breaks the schema.
            ValueError: no view, or several views with ``training=True``.
        """
        annotation = load_annotation_pkl(annotation_path)
        self.elements: list[dict] = annotation.elements
        self.classes: list[dict] = annotation.classes
        self.root_path = Path(root_path)
        self.annotation_path = Path(annotation_path)
        self.spatial_views: list[Compose] = (
            [spatial_views] if isinstance(spatial_views, Compose) else list(spatial_views)
        )
        if not self.spatial_views:
            raise ValueError("AVADataset needs at least one spatial view")
        if training and len(self.spatial_views) != 1:
            raise ValueError(f"training takes one spatial chain, got {len(self.spatial_views)} views")
        self.temporal_transform = temporal_transform
        self.training = training
        if frame_store is not None and not isinstance(frame_store, FrameStore):
            frame_store = FrameStore(frame_store)
        self.frame_store: FrameStore | None = frame_store
        self.store_resize = store_resize_for(self.spatial_views) if frame_store is not None else None
        logger.debug("%s: %d elements, %d view(s)", self.annotation_path, len(self.elements), len(self.spatial_views))

    def __len__(self) -> int:
        return len(self.elements)

    def frame_indices(self, index: int) -> list[int]:
        """Frame numbers sampled for element ``index`` (``start_frame .. start_frame + n_frames - 1`` cropped)."""
        element = self.elements[index]
        candidates = list(range(element["start_frame"], element["start_frame"] + element["n_frames"]))
        if self.temporal_transform is None:
            return candidates
        return self.temporal_transform(candidates)

    def frame_paths(self, index: int) -> list[Path]:
        """Files of the sampled frames of element ``index``, in clip order (repeats included)."""
        element = self.elements[index]
        return [frame_path(self.root_path, element, frame) for frame in self.frame_indices(index)]

    def _describe(self, index: int) -> str:
        element = self.elements[index]
        return f"element {index} (video {element['video']!r}, time {element['time']}) of {self.annotation_path}"

    def load_frames(self, index: int) -> list[Image.Image]:
        """Decode the sampled frames of element ``index`` as RGB PIL images, in clip order.

        With a frame store they come from it instead, already through ``self.store_resize``
        (the chains' leading ``Scale`` then leaves them as they are).

        Raises:
            FileNotFoundError: a frame file is missing (the message names it and the element).
            FormatError: a frame cannot be decoded, or the frames differ in size.
        """
        if self.frame_store is not None:
            return self._load_stored_frames(index)
        decoded: dict[Path, Image.Image] = {}
        frames = []
        for path in self.frame_paths(index):
            if path not in decoded:
                try:
                    with Image.open(path) as image:
                        decoded[path] = image.convert("RGB")
                except FileNotFoundError:
                    raise FileNotFoundError(f"frame {path} of {self._describe(index)} is missing") from None
                except OSError as exc:
                    raise FormatError(path, f"cannot decode this frame of {self._describe(index)}: {exc}") from None
            frames.append(decoded[path])
        if any(frame.size != frames[0].size for frame in frames):
            sizes = sorted({frame.size for frame in frames})
            folder = self.root_path / self.elements[index]["video"]
            raise FormatError(folder, f"frames of {self._describe(index)} differ in size: {sizes}")
        return frames

    def _load_stored_frames(self, index: int) -> list[Image.Image]:
        """The sampled frames from the frame store, already through ``self.store_resize``."""
        paths = self.frame_paths(index)
        try:
            # Every frame of an element lies in one video folder (``frame_path``).
            return self.frame_store.load(paths[0].parent, [path.name for path in paths], self.store_resize)
        except FileNotFoundError as exc:
            raise FileNotFoundError(f"{exc} (needed by {self._describe(index)})") from None
        except FormatError as exc:
            raise FormatError(exc.path, f"{exc.problem} (needed by {self._describe(index)})") from None

    def __getitem__(self, index: int) -> dict:
        """One keyframe.

        Returns:
            ``clip``: float32 ``[3, T, H, W]`` (training) or a list over views of such tensors;
            ``aug_info``: dict (training) or list over views of dicts (``crop_box``, ``flip``,
            ``pad_ratio``); ``labels``: the element's ``labels`` list unchanged; ``filename``: the
            video id; ``mid_time``: ``str(element['time'])``; ``element_index``: ``index``.
        """
        if not 0 <= index < len(self.elements):
            raise IndexError(f"index {index} out of range for {len(self.elements)} elements")
        frames = self.load_frames(index)
        outputs = [view(frames) for view in self.spatial_views]
        clips = [clip for clip, _ in outputs]
        infos = [info for _, info in outputs]
        element = self.elements[index]
        return {
            "clip": clips[0] if self.training else clips,
            "aug_info": infos[0] if self.training else infos,
            "labels": element["labels"],
            "filename": element["video"],
            "mid_time": str(element["time"]),
            "element_index": index,
        }


def pad_and_stack(clips: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[list[float]]]:
    """Stack clips ``[C, T, H_i, W_i]``, zero-padding right/bottom to the largest H and W.

    Returns:
        ``[B, C, T, H, W]`` and per clip ``[W / W_i, H / H_i]`` (``[1.0, 1.0]`` when not padded).
    """
    height = max(clip.shape[-2] for clip in clips)
    width = max(clip.shape[-1] for clip in clips)
    ratios = [[width / clip.shape[-1], height / clip.shape[-2]] for clip in clips]
    if all(clip.shape[-2:] == (height, width) for clip in clips):
        return torch.stack(list(clips)), ratios
    padded = [F.pad(clip, (0, width - clip.shape[-1], 0, height - clip.shape[-2])) for clip in clips]
    return torch.stack(padded), ratios


def _view(clips: Sequence[torch.Tensor], infos: Sequence[dict]) -> ClipView:
    """One view of the batch: its clips padded and stacked, ``pad_ratio`` set in each ``aug_info``."""
    stacked, ratios = pad_and_stack(clips)
    return ClipView(stacked, [{**info, "pad_ratio": ratio} for info, ratio in zip(infos, ratios)])


def collate_batch(samples: Sequence[dict]) -> TrainBatch | EvalBatch:
    """Collate dataset items into the batch the model takes (``structures/batch.py``).

    Args:
        samples: items of :class:`AVADataset`, all training items or all evaluation items.

    Returns:
        A ``TrainBatch`` (one view of ``[B, 3, T, H, W]`` clips) for training items, an
        ``EvalBatch`` (V such views) for evaluation items; the keyframes in sample order.
    """
    if not samples:
        raise ValueError("cannot collate an empty batch")
    keyframes = Keyframes(
        labels=[sample["labels"] for sample in samples],
        filenames=[sample["filename"] for sample in samples],
        mid_times=[sample["mid_time"] for sample in samples],
        element_index=[sample["element_index"] for sample in samples],
    )
    if isinstance(samples[0]["clip"], torch.Tensor):
        view = _view([sample["clip"] for sample in samples], [sample["aug_info"] for sample in samples])
        return TrainBatch(view, keyframes)
    views = [_view([sample["clip"][v] for sample in samples], [sample["aug_info"][v] for sample in samples])
             for v in range(len(samples[0]["clip"]))]
    return EvalBatch(views, keyframes)
