"""Evaluation pass: multi-view inference, gather to rank 0, a deterministic predict.csv, then the mAP sweep.

Every pkl element is evaluated exactly once. Batches are fixed chunks of consecutive elements
(chunk c goes to rank c mod W), so each forward pass sees the same clips whatever the number of
processes, and rank 0 writes the rows sorted by (element index, box index): predict.csv is
byte-identical for 1, 2 or N processes (given the same thread settings). ``val.predict_order: original``
writes the same rows in the original's element order instead (``original_element_ranks``;
docs/numerics.md §7, §8).
"""
from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Sampler

from common.atomic import atomic_open
from datasets.sampler import RankSliceSampler
from engine.context import BatchLoader, RunContext
from engine.distributed import gather_objects_to_main
from engine.logs import batch_progress
from formats.eval_csv import format_predict_row
from models.model import AVAModel
from structures.batch import EvalBatch

logger = logging.getLogger(__name__)


class ChunkedBatchSampler(Sampler[list[int]]):
    """Batches of consecutive element indices; chunk ``c`` belongs to rank ``c % world_size``.

    Unlike a per-rank slice of a permutation, the composition of every batch is independent of the
    number of processes, so per-box scores do not depend on it either.
    """

    def __init__(self, dataset_len: int, batch_size: int, rank: int, world_size: int) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.chunks = [list(range(start, min(start + batch_size, dataset_len)))
                       for start in range(0, dataset_len, batch_size)][rank::world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.chunks)

    def __len__(self) -> int:
        return len(self.chunks)


@dataclass(frozen=True)
class BoxScores:
    """Scores of one kept box: where it comes from, its class probabilities ``[C]`` (float32) and,
    with ``val.with_label``, its loss against the pkl's labels (mean BCE over the classes)."""

    element_index: int
    box_index: int
    video: str
    time: str
    box: tuple[float, float, float, float]
    scores: np.ndarray
    loss: float | None = None


def predict_boxes(ctx: RunContext, model: AVAModel, loader: BatchLoader[EvalBatch],
                  with_label: bool = False) -> list[BoxScores]:
    """Run ``model.predict`` over this rank's batches (``ctx``'s device and autocast) and return the scored boxes.

    Scores are the activation of the logits averaged over views (quirk 20, kept): softmax over the
    first 13 classes, sigmoid elsewhere (quirk 3, kept). With ``with_label`` each box also gets the
    training criterion on those averaged logits against its pkl labels (``val.with_label``).
    """
    model.eval()
    results: list[BoxScores] = []
    with torch.no_grad(), batch_progress(loader, "evaluate", ctx.is_main) as progress:
        for batch in progress:
            with ctx.autocast():
                out = model.predict(ctx.to_device(batch))
            if len(out) == 0:
                continue
            logits = out.logits.float()
            probs = model.activation(logits).cpu().numpy().astype(np.float32, copy=False)
            losses = model.box_losses(logits, out.targets).tolist() if with_label else [None] * len(probs)
            for k in range(probs.shape[0]):
                box = tuple(float(v) for v in out.bboxes[k])
                results.append(BoxScores(int(out.element_index[k]), int(out.box_index[k]), str(out.filenames[k]),
                                         str(out.mid_times[k]), box, probs[k], losses[k]))
    return results


def original_element_ranks(num_elements: int) -> list[int]:
    """Position of each pkl element in the original's predict.csv: ``ranks[e]`` = i where ``perm[i] = e``.

    ``perm`` is the epoch-0 permutation of the original's val sampler (``datasets.sampler``,
    ``set_epoch`` never called), which is the file's element order for any number of processes.
    """
    permutation = RankSliceSampler(num_elements, 1, 0, round_down=False).permutation()
    ranks = [0] * num_elements
    for position, element in enumerate(permutation):
        ranks[element] = position
    return ranks


def gather_predictions(local: list[BoxScores],
                       element_ranks: Sequence[int] | None = None) -> list[BoxScores] | None:
    """All ranks' boxes on rank 0, in file order; None on other ranks.

    Args:
        local: this rank's boxes.
        element_ranks: the file position of each element (``original_element_ranks``); None = element
            index order.

    Returns:
        The boxes sorted by (element position, box index) on rank 0.
    """
    gathered = gather_objects_to_main(local)
    if gathered is None:
        return None
    merged = [item for part in gathered for item in part]
    if element_ranks is None:
        merged.sort(key=lambda item: (item.element_index, item.box_index))
    else:
        merged.sort(key=lambda item: (element_ranks[item.element_index], item.box_index))
    return merged


def mean_box_loss(boxes: list[BoxScores]) -> float:
    """The validation loss: the mean over boxes of their loss, summed exactly (``math.fsum``).

    Equal to the training criterion's mean over all boxes and classes, and independent of how the
    boxes were batched or spread over processes.
    """
    losses = [item.loss for item in boxes if item.loss is not None]
    if not losses:
        return float("nan")
    return math.fsum(losses) / len(losses)


def write_predictions(path: str | Path, boxes: list[BoxScores], class_ids: list[int]) -> int:
    """Write predict.csv atomically: one row per box and class, in the original's format.

    The box printed is the pkl's own (unclipped, float64) box (quirk 19, kept).

    Returns:
        The number of rows written.
    """
    rows = 0
    with atomic_open(path, "w") as handle:
        for item in boxes:
            for class_index, class_id in enumerate(class_ids):
                handle.write(format_predict_row(item.video, item.time, item.box, class_id,
                                                float(item.scores[class_index])) + "\n")
                rows += 1
    return rows


def run_evaluation_pass(ctx: RunContext, model: AVAModel, loader: BatchLoader[EvalBatch], predict_path: Path,
                        class_ids: list[int], with_label: bool = False,
                        element_ranks: Sequence[int] | None = None) -> dict | None:
    """Predict, gather and write ``predict_path`` (rank 0). Returns rank 0's figures, None elsewhere.

    With ``with_label`` the figures also hold ``val_loss`` (``mean_box_loss``). ``element_ranks``
    orders the rows as ``gather_predictions`` says.
    """
    start = time.perf_counter()
    local = predict_boxes(ctx, model, loader, with_label)
    merged = gather_predictions(local, element_ranks)
    if merged is None:
        return None
    rows = write_predictions(predict_path, merged, class_ids)
    seconds = time.perf_counter() - start
    logger.info("wrote %s: %d boxes, %d rows in %.1f s", predict_path, len(merged), rows, seconds)
    figures = {"predict_csv": str(predict_path), "boxes": len(merged), "rows": rows, "seconds": seconds}
    if with_label:
        figures["val_loss"] = mean_box_loss(merged)
        logger.info("validation loss %.6f over %d boxes", figures["val_loss"], len(merged))
    return figures
