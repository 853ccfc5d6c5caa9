"""What each person does in the video demo: the action model of a config (trained, ACAR-Net's
``pretrain`` file, or random init), fed clips built from decoded frames as ``datasets.ava`` builds
them from frame files, so it sees what it saw in evaluation."""
from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from config import load_config
from datasets.ava import collate_batch
from datasets.synthetic import HALF_WINDOW, load_cw_classes
from engine.plan import make_plan
from formats.pbtxt import read_label_map
from models.build import build_model
from models.weights import load_model_checkpoint, load_model_pretrain, load_state_dict_strict

LOGGER = logging.getLogger("tools.video_demo")


@dataclass(frozen=True)
class KeyframeClip:
    """The clip window of one keyframe.

    Attributes:
        time: keyframe time in seconds.
        frame: keyframe frame number (1-based, 25 fps).
        start_frame, n_frames: the window, centred as the dataset centres it.
    """

    time: int
    frame: int
    start_frame: int
    n_frames: int


def keyframe_clip(time: int, frame: int, last_frame: int | None) -> KeyframeClip:
    """The window of a keyframe: ``HALF_WINDOW`` frames either side (as the Chaotic World annotations),
    shortened symmetrically at the ends of the video.

    The dataset centres a clip on ``start_frame + n_frames // 2`` (docs/numerics.md quirk 1), which
    must stay the keyframe, and every frame read must exist.

    Args:
        time: keyframe time (s).
        frame: keyframe frame number (1-based).
        last_frame: the video's last frame number, None while it is not known (not reached yet).
    """
    half = min(HALF_WINDOW, frame - 1, HALF_WINDOW if last_frame is None else last_frame - frame)
    return KeyframeClip(time, frame, frame - half, max(1, 2 * half))


def class_names(num_classes: int, label_map: str | Path | None) -> list[str]:
    """Names of the model's outputs: output c is the label map's (c+1)-th class in id order.

    Raises:
        ValueError: the label map does not name exactly ``num_classes`` classes.
    """
    labels = read_label_map(label_map) if label_map is not None else load_cw_classes()
    if len(labels) != num_classes:
        source = label_map or "the 50 Chaotic World classes (the default)"
        raise ValueError(f"the model predicts {num_classes} classes but {source} names {len(labels)}; "
                         "give the matching label map with --labelmap")
    return [labels[class_id] for class_id in sorted(labels)]


class ActionModel:
    """The action model of a config with its evaluation transforms.

    Attributes:
        names: class name of each output.
        untrained: True when built with random init.
        batch_size: keyframes per forward (the config's ``val.batch_size``).
    """

    def __init__(self, config: Path, checkpoint: Path | None, device: torch.device, random_weights: bool = False,
                 seed: int = 0, label_map: Path | None = None) -> None:
        """Build the model and load its weights.

        Args:
            config: the YAML config.
            checkpoint: a training checkpoint (loaded strictly); None with ``random_weights``, or
                to load the config's ``resume_path`` when that file exists, else its top-level
                ``pretrain`` file (ACAR-Net's eval configs).
            device: where to run.
            random_weights: random init (seeded with ``seed``); no weight file is read, not even
                the backbone's pretrained files.
            seed: the init seed.
            label_map: pbtxt naming the classes (default: Chaotic World's).

        Raises:
            ConfigError: a bad config (file and key named).
            FileNotFoundError, WeightsError: a missing or unfitting weight file.
            ValueError: no weights to load, or class names that do not fit the model.
        """
        cfg = load_config(config)
        plan = make_plan(cfg)
        spec = plan.model
        if random_weights:
            spec = spec.without_weight_files()
            torch.manual_seed(seed)
        elif checkpoint is None and cfg.resume_path and Path(cfg.resume_path).is_file():
            checkpoint = Path(cfg.resume_path)
        elif checkpoint is None and cfg.pretrain is None:
            raise ValueError(f"{config}: no weights for the action model: give --checkpoint, use a config whose "
                             "resume_path or pretrain file exists, or try the path untrained with --random-weights")
        model = build_model(spec)
        if random_weights:
            LOGGER.warning("action model %s with RANDOM weights (seed %d): its actions mean nothing", config, seed)
        elif checkpoint is not None:
            state = load_model_checkpoint(checkpoint)
            load_state_dict_strict(model, state["state_dict"], str(checkpoint))
            LOGGER.info("action model %s, weights %s (epoch %d)", config, checkpoint, state["epoch"])
        else:
            pretrain = cfg.pretrain
            load_model_pretrain(model, pretrain.path, state_dict_key=pretrain.state_dict_key,
                                delete_prefix=pretrain.delete_prefix, replace_prefix=pretrain.replace_prefix,
                                replace_to=pretrain.replace_to)
        self.model = model.to(device).eval()
        self.device = device
        self.untrained = random_weights
        self.names = class_names(model.num_classes, label_map)
        self.views = plan.val.views
        self.temporal = plan.val.temporal
        self.batch_size = max(1, int(cfg.val.batch_size))

    def frames_needed(self, clip: KeyframeClip) -> list[int]:
        """Frame numbers the temporal transform samples from the window, in clip order (repeats kept)."""
        return list(self.temporal(list(range(clip.start_frame, clip.start_frame + clip.n_frames))))

    def item(self, clip: KeyframeClip, frames: Mapping[int, np.ndarray], boxes: np.ndarray, index: int) -> dict:
        """One dataset item (``datasets.ava.AVADataset.__getitem__``'s layout) from decoded frames.

        Args:
            clip: the keyframe's window.
            frames: frame number -> ``[H, W, 3]`` uint8 RGB at 320x180 (the extracted frames' pixels).
            boxes: ``[N, 4]`` normalised person boxes at the keyframe.
            index: the item's number (returned with the scores).
        """
        images = {number: Image.fromarray(frames[number]) for number in set(self.frames_needed(clip))}
        sampled = [images[number] for number in self.frames_needed(clip)]
        outputs = [view(sampled) for view in self.views]
        labels = [{"bounding_box": [float(v) for v in box], "label": [0], "person_id": [0]} for box in boxes]
        return {"clip": [clip_ for clip_, _ in outputs], "aug_info": [info for _, info in outputs], "labels": labels,
                "filename": "video", "mid_time": str(clip.time), "element_index": index}

    def classify(self, items: Sequence[dict]) -> dict[int, np.ndarray]:
        """Action probabilities of every box of the items.

        Returns:
            ``{item index: [N, C] float32}``; a box the model dropped (zero area after the
            transforms, docs/numerics.md quirk 4) keeps NaN.
        """
        scores = {item["element_index"]: np.full((len(item["labels"]), len(self.names)), np.nan, dtype=np.float32)
                  for item in items}
        if not items:
            return scores
        with torch.no_grad():
            out = self.model.predict(collate_batch(list(items)).to(self.device))
            if len(out):
                probs = self.model.activation(out.logits.float()).cpu().numpy()
                for row, (element, box) in enumerate(zip(out.element_index, out.box_index)):
                    scores[int(element)][int(box)] = probs[row]
        return scores


def top_actions(scores: np.ndarray, names: Sequence[str], k: int) -> list[tuple[str, float]]:
    """The ``k`` most probable actions of one box, highest first (ties: lower class index first).

    Args:
        scores: ``[C]`` probabilities; NaN (a box the model dropped) gives no action.
        names: ``C`` class names.
        k: how many.
    """
    scores = np.asarray(scores, dtype=np.float64)
    if scores.size == 0 or np.isnan(scores).all():
        return []
    order = np.argsort(-np.nan_to_num(scores, nan=-np.inf), kind="stable")[:k]
    return [(str(names[index]), float(scores[index])) for index in order]
