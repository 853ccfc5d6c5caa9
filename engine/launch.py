"""``main.py``'s command line: plan the run, check its data, then spawn workers or join torchrun / SLURM."""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
import torch.multiprocessing as mp

from common.cli import BAD_INPUT, FAILED, debug_requested, one_line, print_error, setup_logging
from config import ConfigError, load_config
from engine import distributed as dist_utils
from engine.launch_args import LaunchOptions, build_parser
from engine.plan import RunPlan, make_plan
from engine.preflight import data_preflight
from engine.run_dir import RunDirError, RunLock, check_result_path, remove_stale_temporaries
from engine.worker_errors import (WorkersFailed, drain, end_with_parent, failure_of, leave_worker, run_reporting,
                                  watch_for_crashes)
from models.weights import WeightsError

logger = logging.getLogger(__name__)


def _spawned_worker(local_rank: int, plan: RunPlan, layout: LaunchOptions, parent_pid: int | None = None,
                    failures: Any = None) -> None:
    """One worker on this node (``torch.multiprocessing`` target; ``layout`` with port and backend resolved)."""
    from engine.runner import run_worker

    if parent_pid is not None:  # a launcher killed by any signal takes its workers with it
        end_with_parent(parent_pid)
    info = dataclasses.replace(dist_utils.spawn_info(local_rank, layout.nproc_per_node, layout.nnodes,
                                                     layout.node_rank, layout.master_addr, layout.master_port),
                               rendezvous_timeout_s=layout.rendezvous_timeout)
    if failures is None:  # the launcher's own process is the one worker
        run_worker(plan, info, layout.backend)
        return
    watch_for_crashes()
    run_reporting(info.rank, failures, lambda: run_worker(plan, info, layout.backend))
    leave_worker()


def check_layout(nproc_per_node: int | None, nnodes: int, node_rank: int, master_port: int | None) -> None:
    """Reject a process layout that cannot run, before anything starts.

    Raises:
        ValueError: naming the flag and the accepted range.
    """
    if nproc_per_node is not None and nproc_per_node < 1:
        raise ValueError(f"--nproc_per_node must be >= 1, got {nproc_per_node}")
    if nnodes < 1:
        raise ValueError(f"--nnodes must be >= 1, got {nnodes}")
    if not 0 <= node_rank < nnodes:
        raise ValueError(f"--node_rank must lie in 0..{nnodes - 1} (--nnodes {nnodes}), got {node_rank}")
    if nnodes > 1 and master_port is None:
        raise ValueError("--master_port is required with --nnodes > 1 (every node must use the same one)")


def resolve_nproc(nproc_per_node: int | None) -> int:
    """Processes per node: as given, else one per visible GPU, else 1."""
    if nproc_per_node is not None:
        return nproc_per_node
    return max(1, torch.cuda.device_count()) if torch.cuda.is_available() else 1


def launch(plan: RunPlan, options: LaunchOptions = LaunchOptions()) -> None:
    """Run ``plan`` with the right process layout.

    Under torchrun (RANK/WORLD_SIZE/LOCAL_RANK) or SLURM (SLURM_PROCID, ...) this process IS a worker
    and joins the existing job with the plan it made itself, and ends when its work is done
    (``leave_worker``: exit status 0, no interpreter teardown); otherwise it starts
    ``options.nproc_per_node`` workers with ``torch.multiprocessing.spawn``, each receiving ``plan`` (a
    single worker runs in this process).

    Raises:
        WorkersFailed: a spawned worker failed (one RankFailure per rank that reported).
        ValueError: a bad layout (``check_layout``), an sbatch step without srun, a busy result_path.
    """
    from engine.runner import run_worker

    cfg = plan.cfg
    backend = dist_utils.choose_backend(options.backend)
    env_info = dist_utils.world_info_from_env()
    if env_info.launcher in ("torchrun", "slurm"):
        env_info = dataclasses.replace(env_info, rendezvous_timeout_s=options.rendezvous_timeout)
        logger.info("joining a %s job as rank %d of %d", env_info.launcher, env_info.rank, env_info.world_size)
        watch_for_crashes()
        with _result_path_lock(cfg.result_path, env_info.rank == 0):
            run_worker(plan, env_info, backend)
        leave_worker()
    check_layout(options.nproc_per_node, options.nnodes, options.node_rank, options.master_port)
    layout = dataclasses.replace(options, nproc_per_node=resolve_nproc(options.nproc_per_node), backend=backend,
                                 master_port=options.master_port or dist_utils.find_free_port())
    nproc_per_node, nnodes = layout.nproc_per_node, layout.nnodes
    # The workers' first lines come after importing torch and building the model (seconds to a
    # minute): say what is starting, so the wait is not silent.
    logger.info("%s checked: starting %d worker process(es) on this node (%s), result_path %s",
                cfg.config_file, nproc_per_node,
                "in this process" if nproc_per_node == 1 and nnodes == 1 else "spawned", cfg.result_path)
    with _result_path_lock(cfg.result_path, layout.node_rank == 0):
        if nproc_per_node == 1 and nnodes == 1:  # this process is the one worker
            _spawned_worker(0, plan, layout)
            return
        failures = mp.get_context("spawn").SimpleQueue()
        context = mp.start_processes(_spawned_worker, nprocs=nproc_per_node, join=False, start_method="spawn",
                                     args=(plan, layout, os.getpid(), failures))
        try:
            while not context.join():
                pass
        except (mp.ProcessRaisedException, mp.ProcessExitedException) as error:
            raise WorkersFailed(drain(failures), fallback=one_line(error)) from None
        except BaseException:  # Ctrl-C: end the workers rather than wait for them at exit
            _stop(context.processes)
            raise


def _stop(processes: list, grace_s: float = 5.0) -> None:
    """SIGTERM the processes still running, then SIGKILL those that outlive ``grace_s``."""
    for process in processes:
        if process.is_alive():
            process.terminate()
    for process in processes:
        process.join(grace_s)
        if process.is_alive():
            process.kill()
            process.join()


@contextlib.contextmanager
def _result_path_lock(result_path: str, owner: bool) -> Iterator[None]:
    """The process that outlives the run's workers on node 0 holds result_path's lock while they run."""
    if not owner:
        yield
        return
    Path(result_path).mkdir(parents=True, exist_ok=True)
    lock = RunLock(result_path)
    lock.acquire()
    try:
        remove_stale_temporaries(result_path)
        yield
    finally:
        lock.release()


def main(argv: list[str] | None = None) -> int:
    """Parse arguments and ``run`` them. Returns the exit code."""
    return run(build_parser().parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """Plan the run and check its data before any process starts, then launch. Returns the exit code.

    2: the config, the data or the layout is wrong (nothing was started); 1: a worker failed. Either
    way one line per problem on stderr; ``--debug`` (or ``SFMVIT_DEBUG=1``) adds the tracebacks.
    Under torchrun or SLURM every process runs this, so each makes its plan once, before its work.
    """
    setup_logging()
    try:
        check_layout(args.nproc_per_node, args.nnodes, args.node_rank, args.master_port)
        if args.rendezvous_timeout <= 0:
            raise ValueError(f"--rendezvous_timeout must be > 0 seconds, got {args.rendezvous_timeout}")
        overrides = list(args.overrides)
        if args.predict_order is not None:
            overrides.append(f"val.predict_order={args.predict_order}")
        cfg = load_config(args.config, overrides)
        env_info = dist_utils.world_info_from_env()
        external = env_info.launcher in ("torchrun", "slurm")
        world_size = env_info.world_size if external else resolve_nproc(args.nproc_per_node) * args.nnodes
        plan = make_plan(cfg, world_size)
        dist_utils.choose_backend(args.backend)
        if env_info.launcher == "slurm":
            dist_utils.check_slurm_step()
        data_preflight(cfg, world_size)
        if dist_utils.world_info_from_env().rank == 0:
            check_result_path(cfg)
    except (ConfigError, FileNotFoundError, ValueError, WeightsError) as exc:
        if debug_requested(args):
            raise
        print_error(one_line(exc))
        return BAD_INPUT
    try:
        launch(plan, LaunchOptions.from_args(args))
    except RunDirError as exc:  # the lock, taken just before the workers start
        print_error(one_line(exc))
        return BAD_INPUT
    except KeyboardInterrupt:
        print_error("interrupted (workers stopped)")
        return 130
    except WorkersFailed as exc:
        for failure in exc.failures:
            if debug_requested(args):
                print(failure.traceback, file=sys.stderr, end="")
            print_error(failure.line())
        if not exc.failures:
            print_error(str(exc))
        return FAILED
    except Exception as exc:  # noqa: BLE001 (this process was the worker: single process, torchrun, SLURM)
        if debug_requested(args):
            raise
        print_error(failure_of(dist_utils.world_info_from_env().rank, exc).line())
        return FAILED
    return 0
