"""One process of a run: build everything from the config, resume, train/evaluate, checkpoint, summarise.

Mirrors the original's ``main()`` order of events (process group, seed, model, data, optimiser,
``pretrain``, resume) with these differences: it runs on CPU (gloo) as well as GPUs, evaluation
gathers results through torch.distributed instead of a shared folder, checkpoints are atomic and
carry every rank's RNG state, and a run can resume automatically from its latest checkpoint.
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from config import Config, to_dict
from datasets.ava import AVADataset, collate_batch
from datasets.sampler import RankSliceSampler
from engine import distributed as dist_utils
from engine.attention_kernels import describe_sdpa_kernel, vit_sdpa_backend
from engine.checkpoint import capture_rng, checkpoint_path, load_checkpoint, load_latest_readable_checkpoint
from engine.checkpoint import resolve_resume_path, restore_rng, save_checkpoint
from engine.context import AutocastFactory, EvalData, IterationHook, Learner, RunContext, RunData, TrainData
from engine.context import global_step
from engine.eval_loop import ChunkedBatchSampler, original_element_ranks, run_evaluation_pass
from engine.logs import TabLogger, create_tensorboard_writer, setup_logging
from engine.plan import RunPlan
from engine.run_dir import write_summary
from engine.scoring import describe_boxes, score_epoch
from engine.train_loop import train_one_epoch
from engine.vit_cache_loader import attach_vit_cache
from formats.atomic import write_text_atomic
from models.build import build_model
from models.weights import load_model_pretrain, load_state_dict_strict, trusted_checkpoints

logger = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """Rank 0's record of a run, written to ``result_path/run_summary.json``."""

    mode: str
    world_size: int
    backend: str
    device: str
    epochs: list[dict] = field(default_factory=list)
    evaluations: list[dict] = field(default_factory=list)
    checkpoints: list[str] = field(default_factory=list)
    resumed_from: str | None = None
    tensorboard: str | None = None
    seconds: dict[str, float] = field(default_factory=dict)


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


def _train_data(plan: RunPlan, info: dist_utils.DistInfo) -> TrainData:
    train = plan.cfg.train
    dataset = AVADataset(train.root_path, train.annotation_path, plan.train.spatial, plan.train.temporal,
                         training=True, frame_store=train.frame_store)
    sampler = RankSliceSampler(len(dataset), info.world_size, info.rank, round_down=True)
    loader = DataLoader(dataset, batch_size=train.batch_size, sampler=sampler, num_workers=train.workers,
                        collate_fn=collate_batch, drop_last=True, pin_memory=info.device.type == "cuda",
                        generator=torch.Generator())
    return TrainData(dataset, sampler, loader)


def _val_data(plan: RunPlan, info: dist_utils.DistInfo) -> EvalData:
    val = plan.cfg.val
    dataset = AVADataset(val.root_path, val.annotation_path, plan.val.views, plan.val.temporal, training=False,
                         frame_store=val.frame_store)
    batches = ChunkedBatchSampler(len(dataset), val.batch_size, info.rank, info.world_size)
    # A private generator: evaluating must not move the global RNG, or a resumed run would diverge
    # from an uninterrupted one that validated in between.
    loader = DataLoader(dataset, batch_sampler=batches, num_workers=val.workers, collate_fn=collate_batch,
                        pin_memory=info.device.type == "cuda", generator=torch.Generator().manual_seed(0))
    return EvalData(dataset, loader)


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


def _write_summary(cfg: Config, summary: RunSummary, begin_epoch: int) -> None:
    # Merged with what earlier runs in this folder recorded, so a resume never loses their epochs.
    write_summary(cfg.result_path, summary.__dict__, begin_epoch)


def run_worker(plan: RunPlan, info: dist_utils.DistInfo, backend: str | None = None,
               on_iteration: IterationHook | None = None) -> RunSummary | None:
    """Everything one process does for ``main.py``. Returns rank 0's summary (None elsewhere).

    Args:
        plan: the run plan (``engine.plan.make_plan``; data already checked by the launcher).
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


def _run(plan: RunPlan, info: dist_utils.DistInfo, start: float,
         on_iteration: IterationHook | None) -> RunSummary | None:
    cfg = plan.cfg
    is_main = info.is_main
    result_path = Path(cfg.result_path)
    if is_main:
        result_path.mkdir(parents=True, exist_ok=True)
    dist_utils.barrier()
    setup_logging(result_path, is_main, info.rank)
    _set_threads(info)
    if info.device.type == "cpu":
        logger.info("no CUDA device: running on CPU with %s, %d process(es), %d thread(s) each",
                    info.backend, info.world_size, torch.get_num_threads())
    if is_main:
        write_text_atomic(result_path / "opts.json", json.dumps(
            {**to_dict(cfg), "world_size": info.world_size}, indent=2, default=str) + "\n")
    summary = RunSummary(mode="evaluate" if cfg.evaluate else "train", world_size=info.world_size,
                         backend=str(info.backend), device=str(info.device))
    seed_everything(cfg.manual_seed)
    _set_determinism(cfg)
    # Building the full-size model (ViT-g: 1.09B parameters initialised) took 31 s on the 2-core CPU machine.
    logger.info("building the model of %s ...", cfg.config_file)
    model = build_model(plan.model).to(info.device)
    autocast = _autocast_factory(cfg, info.device)
    vit = model.backbone.submodule if model.backbone.has_vit else None
    if vit is not None and is_main:
        with autocast():
            kernel = vit_sdpa_backend(vit, batch_size=1, device=info.device)
        logger.info("ViT attention on %s: scaled_dot_product_attention runs %s", info.device.type,
                    describe_sdpa_kernel(kernel, info.device.type))
    ctx = RunContext(info, autocast, create_tensorboard_writer(result_path, is_main), cfg.print_freq)
    summary.tensorboard = str(result_path / "tb") if is_main else None
    val = _val_data(plan, info)
    class_ids = [int(c["id"]) for c in val.dataset.classes]
    # val.predict_order: original writes the rows in the original's sampler order (engine/eval_loop.py).
    element_ranks = original_element_ranks(len(val.dataset)) if cfg.val.predict_order == "original" else None

    train = learner = None
    if not cfg.evaluate:
        train = _train_data(plan, info)
        iters = len(train.loader)
        if iters == 0:
            raise ValueError(f"{cfg.config_file}: train.batch_size {cfg.train.batch_size} x {info.world_size} "
                             f"process(es) exceeds the {len(train.dataset)} training elements; no batch to run")
        optimizer = plan.train.optimizer(model.parameters())
        learner = Learner(model, model.loss, optimizer, plan.train.scheduler(optimizer, iters))
    if cfg.pretrain is not None:
        _load_init_checkpoint(cfg, model)

    begin_epoch = 1
    # Evaluating a checkpoint only: its weights' training step, for TensorBoard's axis (0 when unknown).
    evaluated_step = 0
    source, checkpoint = _resume_source(cfg)
    if source is not None:
        load_state_dict_strict(model, checkpoint["state_dict"], str(source))
        begin_epoch = int(checkpoint["epoch"]) + 1
        evaluated_step = _checkpoint_step(checkpoint)
        summary.resumed_from = str(source)
        logger.info("resumed from %s (epoch %d)", source, begin_epoch - 1)
        if learner is not None:
            learner.optimizer.load_state_dict(checkpoint["optimizer"])
            learner.scheduler.load_state_dict(checkpoint["scheduler"])
            per_rank = checkpoint.get("extra", {}).get("rng_per_rank")
            if per_rank and len(per_rank) == info.world_size:
                restore_rng(per_rank[info.rank])
            elif "rng" in checkpoint:
                restore_rng(checkpoint["rng"])
        del checkpoint
    # vit_cache extension (engine/vit_cache_loader.py): after every weight is loaded, since the
    # cache keys include the ViT's weights. Loaders come back unchanged when it is off.
    data = attach_vit_cache(plan.vit_cache, model, ctx, RunData(train, val))

    boxes = describe_boxes(cfg.val.annotation_path, val.dataset.elements) if is_main else None

    def evaluate(epoch: int, step: int) -> None:
        predict_path = result_path / f"predict_epoch{epoch}.csv"
        # Reported = reproducible: evaluate with the buffers the checkpoint holds (rank 0's), unless
        # the config asks for the original's rank-local statistics.
        own = None if cfg.evaluate or cfg.rank_local_eval else dist_utils.broadcast_buffers_from_main(model)
        figures = run_evaluation_pass(ctx, model, data.val.loader, predict_path, class_ids,
                                      with_label=cfg.val.with_label, element_ranks=element_ranks)
        dist_utils.restore_buffers(model, own)
        if figures is not None:
            figures.update(score_epoch(cfg, plan.scoring, predict_path, epoch, ctx.writer, step,
                                       figures.get("val_loss"), boxes))
            summary.evaluations.append({"epoch": epoch, **figures})
        dist_utils.barrier()

    if cfg.evaluate:
        evaluate(begin_epoch - 1, evaluated_step)
    else:
        _train_epochs(cfg, ctx, learner, data.train, begin_epoch, summary, evaluate, on_iteration)
    ctx.writer.close()
    summary.seconds["total"] = time.perf_counter() - start
    if is_main:
        _write_summary(cfg, summary, begin_epoch)
        return summary
    return None


def _checkpoint_step(checkpoint: dict) -> int:
    # The scheduler stepped to (epoch - 1) x E + i before iteration i, so the iterations its
    # weights trained for are last_iter + 1; a checkpoint in the original's release format has an
    # empty scheduler state.
    scheduler = checkpoint.get("scheduler")
    if isinstance(scheduler, dict) and isinstance(scheduler.get("last_iter"), int):
        return scheduler["last_iter"] + 1
    return 0


def _train_epochs(cfg: Config, ctx: RunContext, learner: Learner, train: TrainData, begin_epoch: int,
                  summary: RunSummary, evaluate: Callable[[int, int], None],
                  on_iteration: IterationHook | None) -> None:
    """Epochs ``begin_epoch..n_epochs``: train, log, checkpoint and evaluate at their frequencies.

    Every epoch-level TensorBoard scalar (``train/epoch_loss``, the evaluation's) is written at the
    global step reached at the end of the epoch, the axis of the per-iteration scalars.
    """
    is_main = ctx.is_main
    result_path = Path(cfg.result_path)
    with warnings.catch_warnings():
        # torch 2.14 deprecates broadcast_buffers in favour of forward_sync_buffers, whose False still
        # syncs buffers at init; the original's semantics (rank-local BN_vit statistics) need this one.
        warnings.filterwarnings("ignore", message=".*broadcast_buffers.*", category=FutureWarning)
        device = ctx.device
        ddp = DistributedDataParallel(learner.model, device_ids=[device.index] if device.type == "cuda" else None,
                                      broadcast_buffers=False, find_unused_parameters=False)
    learner = replace(learner, model=ddp)
    epoch_logger = TabLogger(result_path / "train.log", ["epoch", "loss", "lr"]) if is_main else None
    batch_logger = TabLogger(result_path / "train_batch.log", ["epoch", "batch", "iter", "loss", "lr"]) if is_main else None
    for epoch in range(begin_epoch, cfg.train.n_epochs + 1):
        train.sampler.set_epoch(epoch)
        # Worker seeds follow from (seed, epoch) only, so a resumed epoch replays the same data order
        # and augmentations.
        train.loader.generator.manual_seed(cfg.manual_seed * 100_003 + epoch)
        stats = train_one_epoch(ctx, learner, train.loader, epoch, batch_logger, on_iteration)
        end_step = global_step(epoch, stats.iterations, stats.iterations)
        summary.epochs.append(dict(stats.__dict__))
        if is_main:
            epoch_logger.log({"epoch": epoch, "loss": stats.loss, "lr": stats.lr})
            ctx.writer.add_scalar("train/epoch_loss", stats.loss, end_step)
            logger.info("epoch %d/%d: loss %.4f, lr %.6f, %.1f s", epoch, cfg.train.n_epochs, stats.loss,
                        stats.lr, stats.seconds)
        rng_states = dist_utils.gather_objects_to_main(capture_rng())
        if epoch % cfg.train.save_freq == 0 or epoch == cfg.train.n_epochs:
            if is_main:  # the record before the checkpoint: a resume from it must find this epoch logged
                _write_summary(cfg, summary, begin_epoch)
                path = save_checkpoint(checkpoint_path(result_path, epoch), epoch, ddp, learner.optimizer,
                                       learner.scheduler, extra={"rng_per_rank": rng_states})
                summary.checkpoints.append(str(path))
            dist_utils.barrier()
        if epoch % cfg.train.val_freq == 0 or epoch == cfg.train.n_epochs:
            evaluate(epoch, end_step)
        if is_main:  # after every epoch, so that a killed run leaves its record for the resume
            _write_summary(cfg, summary, begin_epoch)
    if is_main:
        epoch_logger.close()
        batch_logger.close()
