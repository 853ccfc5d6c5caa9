"""One process of a run: build the model, data and learner from the config, resume, then hand them to a Trainer.

``_run`` reads top to bottom as the run's order of events (process group, seed, model, data,
optimiser, ``pretrain``, resume: the original's, docs/numerics.md §8); the ``Trainer``
(``engine/trainer.py``) then trains, checkpoints and evaluates (its hooks, ``engine/hooks.py``) or
only evaluates.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader

from common.atomic import write_text_atomic
from config import Config, to_dict
from datasets.ava import AVADataset, collate_batch
from datasets.sampler import RankSliceSampler
from engine import distributed as dist_utils
from engine.attention_kernels import describe_sdpa_kernel, vit_sdpa_backend
from engine.checkpoint import load_checkpoint, load_latest_readable_checkpoint, resolve_resume_path, restore_rng
from engine.context import (AutocastFactory, EvalData, IterationHook, Learner, RankShare, RunContext, RunData,
                            TrainData)
from engine.eval_loop import ChunkedBatchSampler, original_element_ranks
from engine.hooks import default_hooks
from engine.logs import create_tensorboard_writer, setup_logging
from engine.plan import RunPlan
from engine.scoring import describe_boxes
from engine.trainer import RunSummary, StartPoint, Trainer
from engine.virtual_ranks import RankLayout, rank_layout
from engine.vit_cache_loader import attach_vit_cache
from models.build import build_model
from models.model import AVAModel
from models.weights import load_model_pretrain, load_state_dict_strict, trusted_checkpoints

logger = logging.getLogger(__name__)


def seed_everything(seed: int) -> None:
    """Seed python, numpy and torch identically on every rank, as the original's ``random_seed``."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _set_determinism(cfg: Config) -> None:
    # The original's optional ``cudnn`` section, and our ``deterministic`` switch for bitwise
    # reproducible GPU runs (CPU runs are deterministic already).
    if cfg.cudnn is not None:
        torch.backends.cudnn.deterministic = cfg.cudnn.deterministic
        torch.backends.cudnn.benchmark = cfg.cudnn.benchmark
    if cfg.deterministic:
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(True, warn_only=True)


def _autocast_factory(cfg: Config, device: torch.device) -> AutocastFactory:
    if cfg.amp == "bf16":
        if device.type == "cpu" and not cfg.evaluate:
            # torch 2.14's CPU bf16 Conv3d backward returns garbage for a (3,1,1) kernel over 2 frames
            # (benchmarks/RESULTS.md); short clips reach that in the slow pathway and train to NaN.
            logger.warning("amp: bf16 training on CPU; if the slow pathway gets 2 frames the bf16 Conv3d "
                           "gradients of torch 2.14 are wrong (see benchmarks/RESULTS.md): use amp: off then")
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext


def _set_threads(info: dist_utils.DistInfo) -> None:
    # Processes on one CPU machine share its cores; without this each would start one thread per
    # core and they would oversubscribe. An explicit OMP_NUM_THREADS (e.g. from torchrun) wins.
    if torch.cuda.is_available() or "OMP_NUM_THREADS" in os.environ:
        return
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // max(1, info.local_world_size)))


def _train_data(plan: RunPlan, info: dist_utils.DistInfo, layout: RankLayout) -> TrainData:
    """The training split: a sampler and loader for each rank this process plays (its own alone, usually)."""
    cfg, train = plan.cfg, plan.cfg.train
    dataset = AVADataset(train.root_path, train.annotation_path, plan.train.spatial, plan.train.temporal,
                         training=True, frame_store=train.frame_store)
    shares = []
    for rank in layout.ranks:
        # Each played rank's own loader, seeded per epoch as that rank's (Trainer.train_epoch), so that
        # its workers draw that rank's augmentations.
        sampler = RankSliceSampler(len(dataset), layout.world_size, rank, round_down=True)
        loader = DataLoader(dataset, batch_size=train.batch_size, sampler=sampler, num_workers=train.workers,
                            collate_fn=collate_batch, drop_last=True, pin_memory=info.device.type == "cuda",
                            generator=torch.Generator())
        shares.append(RankShare(sampler, loader))
    first = shares[0]
    data = TrainData(dataset, first.sampler, first.loader, tuple(shares[1:]), None if layout.plain else layout)
    if data.steps_per_epoch == 0:
        raise ValueError(f"{cfg.config_file}: train.batch_size {train.batch_size} x {layout.world_size} "
                         f"rank(s) x train.accumulate {layout.accumulate} exceeds the {len(dataset)} training "
                         "elements; no optimiser step to run")
    return data


def _val_data(plan: RunPlan, info: dist_utils.DistInfo) -> EvalData:
    val = plan.cfg.val
    dataset = AVADataset(val.root_path, val.annotation_path, plan.val.views, plan.val.temporal, training=False,
                         frame_store=val.frame_store)
    batches = ChunkedBatchSampler(len(dataset), val.batch_size, info.rank, info.world_size)
    # A private generator: evaluating must not move the global RNG, or a resumed run would diverge
    # from an uninterrupted one that validated in between.
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=val.workers, collate_fn=collate_batch,
                        pin_memory=info.device.type == "cuda", generator=torch.Generator().manual_seed(0))
    # val.predict_order: original writes the rows in the original's sampler order (engine/eval_loop.py).
    element_ranks = original_element_ranks(len(dataset)) if val.predict_order == "original" else None
    boxes = describe_boxes(val.annotation_path, dataset.elements) if info.is_main else None
    return EvalData(dataset, loader, element_ranks, boxes)


def _learner(plan: RunPlan, model: AVAModel, iters_per_epoch: int) -> Learner:
    optimizer = plan.train.optimizer(model.parameters())
    return Learner(model.loss, optimizer, plan.train.scheduler(optimizer, iters_per_epoch))


def _load_init_checkpoint(cfg: Config, model: torch.nn.Module) -> None:
    """Top-level ``pretrain``: SFMViT's ``load_fortrain`` / ACAR-Net's ``load_pretrain``, weights only.

    ``models.weights.load_model_pretrain`` does it: non-strict, keys the model does not have are
    dropped before loading (quirk 10 fixed), a file of which nothing fits is an error (quirk 11).
    """
    pretrain = cfg.pretrain
    load_model_pretrain(model, pretrain.path, state_dict_key=pretrain.state_dict_key,
                        delete_prefix=pretrain.delete_prefix, replace_prefix=pretrain.replace_prefix,
                        replace_to=pretrain.replace_to)


def _resume_source(cfg: Config) -> tuple[Path | None, dict | None]:
    if cfg.auto_resume:
        latest = load_latest_readable_checkpoint(cfg.result_path)
        if latest is not None:
            return latest
    if cfg.resume_path:
        source = resolve_resume_path(cfg.resume_path, cfg.result_path)
        return source, load_checkpoint(source)
    return None, None


def _resume(cfg: Config, model: AVAModel, learner: Learner | None, ranks: RankLayout | None) -> StartPoint:
    """Load the checkpoint to resume from, if any: weights, and for training the optimiser, schedule and RNG.

    Args:
        ranks: the ranks this process plays when training (None when it only evaluates).

    Returns:
        The epoch and global step of the loaded weights (``StartPoint()`` when there is none), with
        the generator states of the further ranks this process plays.
    """
    source, checkpoint = _resume_source(cfg)
    if source is None:
        return StartPoint()
    load_state_dict_strict(model, checkpoint["state_dict"], str(source))
    epoch = int(checkpoint["epoch"])
    logger.info("resumed from %s (epoch %d)", source, epoch)
    rank_rng = None
    if learner is not None:
        learner.optimizer.load_state_dict(checkpoint["optimizer"])
        learner.scheduler.load_state_dict(checkpoint["scheduler"])
        states = _played_rng_states(checkpoint, ranks)
        if states:
            restore_rng(states[0])
            rank_rng = tuple(states[1:])
    return StartPoint(epoch, _checkpoint_step(checkpoint), str(source), rank_rng)


def _played_rng_states(checkpoint: dict, ranks: RankLayout) -> list[dict] | None:
    """The checkpoint's generator states of the ranks this process plays, in rank order.

    A checkpoint holds one state per rank of the run that wrote it (W of them, however many
    processes played them); with another number of ranks every rank takes rank 0's (``rng``).
    """
    per_rank = checkpoint.get("extra", {}).get("rng_per_rank")
    if per_rank and len(per_rank) == ranks.world_size:
        return [per_rank[rank] for rank in ranks.ranks]
    if per_rank and ranks.rank == 0:
        logger.warning("the checkpoint holds the random generator states of %d ranks, this run has %d: every rank "
                       "continues from rank 0's (train.virtual_world_size reproduces the run that wrote it)",
                       len(per_rank), ranks.world_size)
    if "rng" in checkpoint:
        return [checkpoint["rng"]] * len(ranks.ranks)
    return None


def _checkpoint_step(checkpoint: dict) -> int:
    # The scheduler stepped to (epoch - 1) x E + i before iteration i, so the iterations its
    # weights trained for are last_iter + 1; a checkpoint in the original's release format has an
    # empty scheduler state.
    scheduler = checkpoint.get("scheduler")
    if isinstance(scheduler, dict) and isinstance(scheduler.get("last_iter"), int):
        return scheduler["last_iter"] + 1
    return 0


def run_worker(plan: RunPlan, info: dist_utils.DistInfo, backend: str | None = None,
               on_iteration: IterationHook | None = None) -> RunSummary | None:
    """Everything one process does for ``main.py``. Returns rank 0's summary (None elsewhere).

    Args:
        plan: the run plan the launcher built (``engine.plan.make_plan``): every part checked.
        info: this process's place in the job (``world_info_from_env`` / ``spawn_info``).
        backend: 'nccl', 'gloo' or None (auto).
        on_iteration: test hook called after each optimiser step with ``(epoch, iteration)``.
    """
    start = time.perf_counter()
    info = dist_utils.init_distributed(info, backend)
    try:
        with trusted_checkpoints(plan.cfg.trust_checkpoints):
            return _run(plan, info, start, on_iteration)
    finally:
        dist_utils.cleanup()


def _prepare_process(cfg: Config, info: dist_utils.DistInfo) -> None:
    """The result folder, logging and threads of this process; rank 0 records the options."""
    result_path = Path(cfg.result_path)
    if info.is_main:
        result_path.mkdir(parents=True, exist_ok=True)
    dist_utils.barrier()
    setup_logging(result_path, info.is_main, info.rank)
    _set_threads(info)
    if info.device.type == "cpu":
        logger.info("no CUDA device: running on CPU with %s, %d process(es), %d thread(s) each",
                    info.backend, info.world_size, torch.get_num_threads())
    if info.is_main:
        write_text_atomic(result_path / "opts.json", json.dumps(
            {**to_dict(cfg), "world_size": info.world_size}, indent=2, default=str) + "\n")


def _build_model(plan: RunPlan, info: dist_utils.DistInfo) -> AVAModel:
    # Building the full-size model (ViT-g: 1.09B parameters initialised) took 31 s on the 2-core CPU machine.
    logger.info("building the model of %s ...", plan.cfg.config_file)
    return build_model(plan.model).to(info.device)


def _run_context(cfg: Config, info: dist_utils.DistInfo, model: AVAModel) -> RunContext:
    """The loops' shared settings; rank 0 logs the attention kernel the ViT will run."""
    autocast = _autocast_factory(cfg, info.device)
    vit = model.backbone.submodule if model.backbone.has_vit else None
    if vit is not None and info.is_main:
        with autocast():
            kernel = vit_sdpa_backend(vit, batch_size=1, device=info.device)
        logger.info("ViT attention on %s: scaled_dot_product_attention runs %s", info.device.type,
                    describe_sdpa_kernel(kernel, info.device.type))
    return RunContext(info, autocast, create_tensorboard_writer(cfg.result_path, info.is_main), cfg.print_freq)


def _run(plan: RunPlan, info: dist_utils.DistInfo, start: float,
         on_iteration: IterationHook | None) -> RunSummary | None:
    """Build the run in the original's order of events (seed, model, data, optimiser, weights), then run it."""
    cfg = plan.cfg
    _prepare_process(cfg, info)
    seed_everything(cfg.manual_seed)
    _set_determinism(cfg)
    model = _build_model(plan, info)
    ctx = _run_context(cfg, info, model)
    val = _val_data(plan, info)
    # The ranks this process plays: its own, or several with train.virtual_world_size (checked by the plan).
    ranks = None if cfg.evaluate else rank_layout(cfg, info.world_size, info.rank)
    train = None if ranks is None else _train_data(plan, info, ranks)
    learner = None if train is None else _learner(plan, model, train.steps_per_epoch)
    if cfg.pretrain is not None:
        _load_init_checkpoint(cfg, model)
    start_point = _resume(cfg, model, learner, ranks)
    # vit_cache extension (engine/vit_cache_loader.py): after every weight is loaded, since the
    # cache keys include the ViT's weights. Loaders come back unchanged when it is off.
    data = attach_vit_cache(plan.vit_cache, model, ctx, RunData(train, val))
    trainer = Trainer(cfg, ctx, model, data, learner, start_point, scoring=plan.scoring)
    if cfg.evaluate:
        trainer.evaluate()
    else:
        trainer.register_hooks(default_hooks(cfg.train, on_iteration))
        trainer.train()
    return trainer.finish(start)
