"""Rank discovery (torchrun, SLURM, spawn, single), backend choice, and gloo collectives on CPU."""
from __future__ import annotations

import datetime
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from engine import distributed as dist_engine
from engine.distributed import DistInfo
from engine.launch_args import LaunchOptions, build_parser


def test_single_process_from_an_empty_environment() -> None:
    info = dist_engine.world_info_from_env({})
    assert info == DistInfo() and info.is_main and info.launcher == "single" and info.device.type == "cpu"


def test_torchrun_environment() -> None:
    env = {"RANK": "5", "WORLD_SIZE": "8", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "4",
           "MASTER_ADDR": "10.0.0.2", "MASTER_PORT": "29400", "SLURM_PROCID": "0", "SLURM_NTASKS": "2"}
    info = dist_engine.world_info_from_env(env)
    assert (info.rank, info.local_rank, info.world_size, info.local_world_size) == (5, 1, 8, 4)
    assert (info.master_addr, info.master_port, info.launcher) == ("10.0.0.2", 29400, "torchrun")
    assert not info.is_main


def test_slurm_environment() -> None:
    env = {"SLURM_PROCID": "6", "SLURM_NTASKS": "8", "SLURM_LOCALID": "2", "SLURM_TASKS_PER_NODE": "4(x2)",
           "SLURM_JOB_NODELIST": "gpu[07-08]", "SLURM_JOB_ID": "123456"}
    info = dist_engine.world_info_from_env(env)
    assert (info.rank, info.local_rank, info.world_size, info.local_world_size) == (6, 2, 8, 4)
    assert (info.master_addr, info.master_port, info.launcher) == ("gpu07", 15000 + 123456 % 20000, "slurm")
    info = dist_engine.world_info_from_env({**env, "MASTER_ADDR": "head", "MASTER_PORT": "2000",
                                            "SLURM_NTASKS_PER_NODE": "3"})
    assert (info.master_addr, info.master_port, info.local_world_size) == ("head", 2000, 3)
    # One SLURM task (e.g. an interactive allocation): main.py runs or spawns on its own.
    assert dist_engine.world_info_from_env({"SLURM_PROCID": "0", "SLURM_NTASKS": "1"}).launcher == "single"


def test_bad_environment_values_are_named() -> None:
    with pytest.raises(ValueError, match=r"WORLD_SIZE='two' is not an integer"):
        dist_engine.world_info_from_env({"RANK": "0", "WORLD_SIZE": "two"})


@pytest.mark.parametrize("nodelist,host", [("node[03-05,09],gpu1", "node03"), ("a1,b2", "a1"), ("solo", "solo"),
                                           ("gpu-[7]", "gpu-7"), ("x[001-004]", "x001")])
def test_first_host(nodelist: str, host: str) -> None:
    assert dist_engine.first_host(nodelist) == host


def test_spawn_info_numbers_ranks_like_torchrun() -> None:
    info = dist_engine.spawn_info(local_rank=1, nproc_per_node=2, nnodes=3, node_rank=2, master_port=1234)
    assert (info.rank, info.world_size, info.local_world_size, info.launcher) == (5, 6, 2, "spawn")
    with pytest.raises(ValueError, match="outside"):
        dist_engine.spawn_info(local_rank=2, nproc_per_node=2)


def test_launch_options_come_from_main_s_flags_and_pickle_for_spawned_workers() -> None:
    args = build_parser().parse_args(["--config", "x.yaml", "--nproc-per-node", "2", "--master_port", "1234",
                                      "--rendezvous-timeout", "9"])
    options = LaunchOptions.from_args(args)
    assert options == LaunchOptions(nproc_per_node=2, master_port=1234, rendezvous_timeout=9.0)
    assert LaunchOptions.from_args(build_parser().parse_args(["--config", "x.yaml"])) == LaunchOptions()
    assert pickle.loads(pickle.dumps(options)) == options


def test_choose_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert dist_engine.choose_backend(None) == "gloo" and dist_engine.choose_backend("GLOO") == "gloo"
    with pytest.raises(ValueError, match="backend 'nccl' needs CUDA GPUs.*--backend gloo"):
        dist_engine.choose_backend("nccl")
    with pytest.raises(ValueError, match="unknown distributed backend 'mpi'; choices: nccl, gloo"):
        dist_engine.choose_backend("mpi")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert dist_engine.choose_backend(None) == "nccl" and dist_engine.choose_backend("nccl") == "nccl"


def test_helpers_without_a_process_group() -> None:
    assert not dist_engine.is_initialized()
    assert (dist_engine.get_rank(), dist_engine.get_world_size(), dist_engine.is_main()) == (0, 1, True)
    value = torch.tensor([1.5, 2.0])
    summed = dist_engine.all_reduce_sum(value)
    assert torch.equal(summed, value) and summed is not value
    assert dist_engine.gather_objects_to_main({"a": 1}) == [{"a": 1}]
    assert dist_engine.broadcast_from_main("x") == "x"
    dist_engine.barrier()
    dist_engine.cleanup()
    assert 0 < dist_engine.find_free_port() < 65536


def test_no_environment_change_at_import_or_setup(monkeypatch: pytest.MonkeyPatch) -> None:
    before = dict(os.environ)
    for name in ("MASTER_ADDR", "MASTER_PORT", "RANK", "WORLD_SIZE"):
        monkeypatch.delenv(name, raising=False)
    snapshot = dict(os.environ)
    info = dist_engine.init_distributed(DistInfo(), backend="gloo",
                                        timeout=datetime.timedelta(seconds=60))
    try:
        assert (info.backend, info.device.type, info.master_addr) == ("gloo", "cpu", "127.0.0.1")
        assert dist_engine.is_initialized() and dist_engine.get_world_size() == 1
        assert dist_engine.gather_objects_to_main(3) == [3]
        assert dict(os.environ) == snapshot
    finally:
        dist_engine.cleanup()
    assert not dist_engine.is_initialized()
    monkeypatch.undo()
    assert dict(os.environ) == before


def _worker(local_rank: int, port: int, out_dir: str) -> None:
    info = dist_engine.init_distributed(dist_engine.spawn_info(local_rank, 2, master_port=port), backend="gloo",
                                        timeout=datetime.timedelta(seconds=60))
    try:
        total = dist_engine.all_reduce_sum(torch.tensor([float(info.rank + 1), 10.0]))
        gathered = dist_engine.gather_objects_to_main({"rank": info.rank, "rows": ["v,%d" % info.rank]})
        chosen = dist_engine.broadcast_from_main(f"from rank {info.rank}")
        result = {"rank": info.rank, "is_main": dist_engine.is_main(), "total": total.tolist(),
                  "gathered": gathered, "chosen": chosen, "world": dist_engine.get_world_size()}
        Path(out_dir, f"rank{info.rank}.json").write_text(json.dumps(result), encoding="utf-8")
    finally:
        dist_engine.cleanup()


def test_two_gloo_processes(tmp_path: Path) -> None:
    mp.spawn(_worker, args=(dist_engine.find_free_port(), str(tmp_path)), nprocs=2, join=True)
    results = [json.loads((tmp_path / f"rank{r}.json").read_text(encoding="utf-8")) for r in range(2)]
    for rank, result in enumerate(results):
        assert result["total"] == [3.0, 20.0] and result["world"] == 2
        assert result["is_main"] == (rank == 0) and result["chosen"] == "from rank 0"
    assert results[0]["gathered"] == [{"rank": 0, "rows": ["v,0"]}, {"rank": 1, "rows": ["v,1"]}]
    assert results[1]["gathered"] is None


@pytest.mark.slow  # a second multi-process start-up (torchrun's agent + 2 workers): 6-11 s here
def test_two_processes_under_torchrun(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root), "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr",
               "127.0.0.1", "--master_port", str(dist_engine.find_free_port()),
               str(root / "tests" / "data" / "engine" / "torchrun_probe.py"), str(tmp_path)]
    done = subprocess.run(command, env=env, cwd=root, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    results = [json.loads((tmp_path / f"rank{r}.json").read_text(encoding="utf-8")) for r in range(2)]
    assert [(r["rank"], r["local_rank"], r["world"], r["launcher"]) for r in results] == [
        (0, 0, 2, "torchrun"), (1, 1, 2, "torchrun")]
    assert results[0]["total"] == results[1]["total"] == [3.0]
    assert results[0]["gathered"] == [0, 10] and results[1]["gathered"] is None
