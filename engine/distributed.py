"""Process-group setup and rank helpers for torchrun, SLURM, main.py's own spawn, or a lone process.

Nothing here writes ``os.environ``: processes started by ``main.py`` or SLURM rendezvous through an
explicit ``tcp://MASTER_ADDR:MASTER_PORT`` init method, and under torchrun the variables torchrun
itself exported are read through ``env://``. The collective helpers are no-ops (returning the
single-process answer) when no process group is initialised, so the same loop code runs alone.
"""
from __future__ import annotations

import dataclasses
import datetime
import logging
import os
import re
import socket
from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.distributed as dist

from engine.hostlist import expand_hostlist
# Waiting for the other processes to join: a node that never starts should not cost 30 minutes.
from engine.launch_args import DEFAULT_RENDEZVOUS_TIMEOUT_S

logger = logging.getLogger(__name__)

Launcher = Literal["single", "spawn", "torchrun", "slurm"]
BACKENDS = ("nccl", "gloo")
DEFAULT_TIMEOUT = datetime.timedelta(minutes=30)
# Object collectives on an NCCL job go through this CPU (gloo) group: NCCL would first pickle the
# object into a CUDA tensor on every rank, which costs GPU memory for what is host data anyway.
_object_group: dist.ProcessGroup | None = None


@dataclasses.dataclass(frozen=True)
class DistInfo:
    """Where this process sits in the job.

    ``rank`` is global (0..world_size-1), ``local_rank`` its index on this node (the GPU it uses).
    ``backend`` and ``device`` are filled in by ``init_distributed`` (None / CPU before).
    """

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1
    local_world_size: int = 1
    master_addr: str | None = None
    master_port: int | None = None
    launcher: Launcher = "single"
    backend: str | None = None
    device: torch.device = torch.device("cpu")
    rendezvous_timeout_s: float = DEFAULT_RENDEZVOUS_TIMEOUT_S

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _int_var(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    text = env.get(name)
    if text is None:
        if default is None:
            raise ValueError(f"environment variable {name} is not set")
        return default
    try:
        return int(text)
    except ValueError as error:
        raise ValueError(f"environment variable {name}={text!r} is not an integer") from error


def first_host(nodelist: str) -> str:
    """First host of a SLURM node list: ``node[03-05,09],gpu1`` -> ``node03`` (``engine.hostlist``)."""
    return expand_hostlist(nodelist)[0]


def _slurm_tasks_per_node(env: Mapping[str, str], world_size: int) -> int:
    if "SLURM_NTASKS_PER_NODE" in env:
        return _int_var(env, "SLURM_NTASKS_PER_NODE")
    # SLURM_TASKS_PER_NODE looks like "4(x2),3": the first node's count is what we need.
    match = re.match(r"\s*(\d+)", env.get("SLURM_TASKS_PER_NODE", ""))
    return int(match.group(1)) if match else world_size


def world_info_from_env(env: Mapping[str, str] | None = None) -> DistInfo:
    """Read the job layout from the launcher's environment variables.

    - torchrun (``RANK`` and ``WORLD_SIZE`` set): ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
      ``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``.
    - SLURM with more than one task (``SLURM_PROCID``, ``SLURM_NTASKS`` > 1): ``SLURM_PROCID``,
      ``SLURM_NTASKS``, ``SLURM_LOCALID``, tasks per node; master = ``MASTER_ADDR`` if set, else the
      first host of ``SLURM_JOB_NODELIST`` / ``SLURM_NODELIST``; port = ``MASTER_PORT`` if set, else
      derived from ``SLURM_JOB_ID`` so that every task computes the same one.
    - otherwise a single process (``main.py`` may then spawn its own workers: ``spawn_info``).

    Args:
        env: the variables; None reads ``os.environ`` (read only).

    Raises:
        ValueError: a variable that should be an integer is not.
    """
    env = os.environ if env is None else env
    if "RANK" in env and "WORLD_SIZE" in env:
        world_size = _int_var(env, "WORLD_SIZE")
        port = _int_var(env, "MASTER_PORT") if "MASTER_PORT" in env else None
        return DistInfo(rank=_int_var(env, "RANK"), local_rank=_int_var(env, "LOCAL_RANK", 0),
                        world_size=world_size, local_world_size=_int_var(env, "LOCAL_WORLD_SIZE", world_size),
                        master_addr=env.get("MASTER_ADDR"), master_port=port, launcher="torchrun")
    if "SLURM_PROCID" in env and _int_var(env, "SLURM_NTASKS", 1) > 1:
        world_size = _int_var(env, "SLURM_NTASKS")
        nodelist = env.get("SLURM_JOB_NODELIST") or env.get("SLURM_NODELIST")
        addr = env.get("MASTER_ADDR") or (first_host(nodelist) if nodelist else None)
        if addr is None:
            raise ValueError("SLURM job without SLURM_JOB_NODELIST/SLURM_NODELIST: set MASTER_ADDR")
        if "MASTER_PORT" in env:
            port = _int_var(env, "MASTER_PORT")
        else:  # same value on every task, in the unprivileged range, rarely shared by two jobs
            port = 15000 + _int_var(env, "SLURM_JOB_ID", 0) % 20000
        return DistInfo(rank=_int_var(env, "SLURM_PROCID"), local_rank=_int_var(env, "SLURM_LOCALID", 0),
                        world_size=world_size, local_world_size=_slurm_tasks_per_node(env, world_size),
                        master_addr=addr, master_port=port, launcher="slurm")
    return DistInfo()


def spawn_info(local_rank: int, nproc_per_node: int, nnodes: int = 1, node_rank: int = 0,
               master_addr: str = "127.0.0.1", master_port: int | None = None) -> DistInfo:
    """Layout of a worker started by ``main.py`` itself (``--nproc_per_node``, ``--nnodes``, ...).

    Global rank = ``node_rank * nproc_per_node + local_rank``, as torchrun numbers them.
    """
    if not 0 <= local_rank < nproc_per_node or not 0 <= node_rank < nnodes:
        raise ValueError(f"local_rank {local_rank} / node_rank {node_rank} outside "
                         f"nproc_per_node {nproc_per_node} / nnodes {nnodes}")
    return DistInfo(rank=node_rank * nproc_per_node + local_rank, local_rank=local_rank,
                    world_size=nnodes * nproc_per_node, local_world_size=nproc_per_node,
                    master_addr=master_addr, master_port=master_port, launcher="spawn")


def choose_backend(requested: str | None = None) -> str:
    """``'nccl'`` when CUDA is available, else ``'gloo'``; check an explicit request.

    Raises:
        ValueError: unknown backend, or ``nccl`` requested on a machine without CUDA.
    """
    if requested in (None, "", "auto"):
        return "nccl" if torch.cuda.is_available() else "gloo"
    backend = requested.lower()
    if backend not in BACKENDS:
        raise ValueError(f"unknown distributed backend {requested!r}; choices: {', '.join(BACKENDS)}")
    if backend == "nccl" and not torch.cuda.is_available():
        raise ValueError("backend 'nccl' needs CUDA GPUs, and none is available here "
                         "(torch.cuda.is_available() is False); use --backend gloo to run on CPU")
    return backend


def find_free_port() -> int:
    """A TCP port free on this machine right now (another process may still take it later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("", 0))
        return int(sock.getsockname()[1])


def _pick_device(local_rank: int) -> torch.device:
    if torch.cuda.is_available():
        device = torch.device("cuda", local_rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
        return device
    return torch.device("cpu")


def init_distributed(info: DistInfo, backend: str | None = None, master_addr: str | None = None,
                     master_port: int | None = None,
                     timeout: datetime.timedelta = DEFAULT_TIMEOUT) -> DistInfo:
    """Join the process group and pick this process's device.

    The device is GPU ``local_rank`` when CUDA is available (with gloo too: the helpers move data
    to CPU for gloo), else the CPU.

    Args:
        info: from ``world_info_from_env`` or ``spawn_info``.
        backend: ``'nccl'``, ``'gloo'`` or None (``choose_backend``).
        master_addr, master_port: override ``info``'s rendezvous address (not used under torchrun,
            whose agent already serves the rendezvous store at its ``MASTER_ADDR:MASTER_PORT``).
            A single process without a port gets a free one.
        timeout: for collectives and the rendezvous.

    Returns:
        ``info`` with ``backend``, ``device``, ``master_addr`` and ``master_port`` filled in.

    Raises:
        ValueError: bad backend (``choose_backend``) or no port for a multi-process job.
    """
    global _object_group
    backend = choose_backend(backend)
    addr = master_addr or info.master_addr or "127.0.0.1"
    port = master_port or info.master_port
    if info.launcher == "torchrun":
        init_method = "env://"
    else:
        if port is None:
            if info.world_size > 1:
                raise ValueError("a multi-process job needs a master port (--master_port)")
            port = find_free_port()
        host = f"[{addr}]" if ":" in addr else addr  # IPv6 literal
        init_method = f"tcp://{host}:{port}"
    device = _pick_device(info.local_rank)
    if info.launcher == "torchrun":
        dist.init_process_group(backend, init_method=init_method, rank=info.rank, world_size=info.world_size,
                                timeout=timeout)
    else:
        store = _rendezvous(info, addr, port)
        dist.init_process_group(backend, store=store, rank=info.rank, world_size=info.world_size, timeout=timeout)
    _object_group = dist.new_group(backend="gloo") if backend == "nccl" else None
    logger.info("process group ready: rank %d/%d, backend %s, device %s", info.rank, info.world_size,
                backend, device)
    return dataclasses.replace(info, backend=backend, device=device, master_addr=addr, master_port=port)


class RendezvousError(RuntimeError):
    """The processes of a job did not all meet at the master address in time."""


def _rendezvous(info: DistInfo, addr: str, port: int) -> dist.Store:
    """Meet the other processes at ``addr:port`` (rank 0 serves the store), saying what it waits for.

    Raises:
        RendezvousError: not every process joined within ``info.rendezvous_timeout_s`` (or the
            port could not be used); the message names address, port, world size and timeout.
    """
    seconds = info.rendezvous_timeout_s
    if info.world_size > 1:
        logger.info("rank %d: waiting for %d processes at %s:%d (rendezvous timeout %g s)", info.rank,
                    info.world_size, addr, port, seconds)
    try:
        return dist.TCPStore(addr, port, info.world_size, is_master=info.rank == 0,
                             timeout=datetime.timedelta(seconds=seconds), wait_for_workers=True)
    except (RuntimeError, OSError) as error:
        detail = " ".join(str(error).split())[:200]
        raise RendezvousError(
            f"rendezvous failed: rank {info.rank} of {info.world_size} waited {seconds:g} s for the others at "
            f"{addr}:{port} ({detail}); check that every node started with the same --master_addr/--master_port "
            "and can reach it (raise --rendezvous_timeout for slow starts)") from None


def check_slurm_step(env: Mapping[str, str] | None = None) -> None:
    """Refuse to run as one of SLURM_NTASKS tasks when SLURM started only this one (sbatch without srun).

    In a batch script SLURM_PROCID is 0 and SLURM_NTASKS the allocation's task count, but only the
    script runs: without this check rank 0 would wait for the others until the timeout.

    Raises:
        ValueError: explaining how to start the tasks.
    """
    env = os.environ if env is None else env
    step = env.get("SLURM_STEP_ID", env.get("SLURM_STEPID"))
    if step is None or step in ("batch", "4294967294"):  # 0xfffffffe: SLURM's batch step id
        raise ValueError(
            f"this is SLURM's batch script (no srun step), yet SLURM_NTASKS={env.get('SLURM_NTASKS')}: the other "
            "tasks were never started, so the job would wait for them; launch with "
            "'srun python main.py --config ...' inside the sbatch script, or run main.py there with "
            "--nproc_per_node N and SLURM_NTASKS=1")


def cleanup() -> None:
    """Leave the process group (no-op when none is initialised)."""
    global _object_group
    if is_initialized():
        dist.destroy_process_group()
    _object_group = None


def is_initialized() -> bool:
    """Whether this process belongs to an initialised process group."""
    return dist.is_available() and dist.is_initialized()


def get_rank() -> int:
    """Global rank, 0 without a process group."""
    return dist.get_rank() if is_initialized() else 0


def get_world_size() -> int:
    """Number of processes, 1 without a process group."""
    return dist.get_world_size() if is_initialized() else 1


def is_main() -> bool:
    """True on rank 0, and in a process without a group."""
    return get_rank() == 0


def barrier() -> None:
    """Wait for every rank (no-op without a group)."""
    if is_initialized():
        dist.barrier()


def all_reduce_sum(tensor: torch.Tensor) -> torch.Tensor:
    """Sum ``tensor`` over all ranks (no autograd).

    Args:
        tensor: any shape; the same shape and dtype on every rank.

    Returns:
        A new tensor on ``tensor``'s device holding the sum (a copy without a group); the input is
        not modified. Data moves to the device the backend needs (GPU for nccl, CPU for gloo).
    """
    work = tensor.detach().clone()
    if not is_initialized():
        return work
    if dist.get_backend() == "nccl":
        if work.device.type != "cuda":
            work = work.to(torch.device("cuda", torch.cuda.current_device()))
    elif work.device.type != "cpu":
        work = work.cpu()
    dist.all_reduce(work, op=dist.ReduceOp.SUM)
    return work.to(tensor.device)


def gather_objects_to_main(obj: Any) -> list[Any] | None:
    """Collect one picklable object per rank on rank 0, in rank order.

    Goes through torch.distributed (no shared filesystem needed): ``gather_object`` on the default
    group for gloo, on a side gloo (CPU) group for nccl jobs.

    Returns:
        On rank 0 the list ``[obj of rank 0, obj of rank 1, ...]``; None on the other ranks;
        ``[obj]`` without a group.
    """
    if not is_initialized():
        return [obj]
    rank = dist.get_rank()
    gathered: list[Any] | None = [None] * dist.get_world_size() if rank == 0 else None
    dist.gather_object(obj, gathered, dst=0, group=_object_group)
    return gathered


def broadcast_from_main(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. a resume path chosen once); ``obj`` without a group."""
    if not is_initialized():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0, group=_object_group)
    return box[0]


def broadcast_buffers_from_main(module: torch.nn.Module) -> list[torch.Tensor] | None:
    """Give every rank rank 0's buffers (BatchNorm statistics); returns this rank's own, to restore.

    Training keeps the original's rank-local buffers (DDP with ``broadcast_buffers=False``), and only
    rank 0's are saved in checkpoints; evaluating with them on every rank makes the figures of a
    training run those of its checkpoint. None (nothing changed) without a group or with one rank.
    """
    if not is_initialized() or dist.get_world_size() == 1:
        return None
    buffers = list(module.buffers())
    saved = [buffer.detach().clone() for buffer in buffers]
    on_gpu = dist.get_backend() == "nccl"
    for buffer in buffers:
        work = buffer.detach()
        if on_gpu and work.device.type != "cuda":
            work = work.to(torch.device("cuda", torch.cuda.current_device()))
        elif not on_gpu and work.device.type != "cpu":
            work = work.cpu()
        dist.broadcast(work, src=0)
        if work.data_ptr() != buffer.data_ptr():
            buffer.data.copy_(work)
    return saved


def restore_buffers(module: torch.nn.Module, saved: list[torch.Tensor] | None) -> None:
    """Put back the buffers ``broadcast_buffers_from_main`` returned (no-op for None)."""
    if saved is None:
        return
    for buffer, own in zip(module.buffers(), saved, strict=True):
        buffer.data.copy_(own)
