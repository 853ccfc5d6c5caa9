"""A W-process training run reproduced on fewer processes (train.virtual_world_size), end to end with main.py.

The tiny config on 8 synthetic training elements, 2 epochs, the same seed, CPU and gloo, one thread per
process. A process playing several ranks computes each rank's micro-batch as that rank would; what
can differ is the order in which float32 gradients (and logged losses) of the W ranks are summed:
gloo's ring in a real run, a process's own micro-batches first under virtual ranks. With W = 2 the
order cannot matter (a + b = b + a), so the runs must agree exactly. With W = 4 the reference is a
real 4-process run whose cross-rank sums run in the order the virtual run sums them (rank order,
by process); against gloo's ring order a ReLU network's gradients part after a few steps, as two real
runs with different reduction orders do (README, "Training the published recipe on fewer GPUs").
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from config import load_config
from engine.distributed import find_free_port, spawn_info
from engine.plan import make_plan
from engine.runner import run_worker
from tests.engine_fixtures import run_main_py, write_tiny_config
from tools.prepare_synthetic import prepare_synthetic_dataset

pytestmark = pytest.mark.slow

# Weights and optimizer state may differ by float32 summation order at most (the bound).
ATOL = 1e-5


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 training elements: 4 iterations per epoch at W = 2, 2 at W = 4 (batch 1)."""
    return prepare_synthetic_dataset(tmp_path_factory.mktemp("cw"), train_videos=2, val_videos=1, seconds=5)


def _config(folder: Path, name: str, **train: object) -> Path:
    """The tiny test config, logging every iteration, with ``train`` keys set (e.g. virtual_world_size)."""
    path = write_tiny_config(folder / f"{name}.yaml", folder / name, print_freq=1)
    raw = yaml.safe_load(path.read_text())
    auto_resume = train.pop("auto_resume", None)
    if auto_resume is not None:
        raw["auto_resume"] = auto_resume
    raw["train"].update(train)
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def _main(config: Path, dataset: Path, nproc: int) -> Path:
    """Run main.py with ``nproc`` gloo processes from the dataset root; returns the result folder."""
    done = run_main_py(config, dataset, "--nproc_per_node", str(nproc), "--backend", "gloo")
    assert done.returncode == 0, done.stderr[-3000:]
    return Path(yaml.safe_load(config.read_text())["result_path"])


def _ordered_sum(parts: list[torch.Tensor], block: int) -> torch.Tensor:
    """``parts`` summed as a process playing ``block`` consecutive ranks sums them: its own, then by process."""
    total = None
    for start in range(0, len(parts), block):
        partial = parts[start].clone()
        for part in parts[start + 1:start + block]:
            partial += part
        total = partial if total is None else total + partial
    return total


def _gathered(tensor: torch.Tensor) -> list[torch.Tensor]:
    parts = [torch.empty_like(tensor) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, tensor.contiguous())
    return parts


def _ordered_mean_hook(block, bucket):  # noqa: ANN001, ANN202 (DDP rejects the string annotations of this module)
    """DDP's gradient mean (each rank's gradient divided by W, then summed), in ``_ordered_sum``'s order."""
    result: torch.futures.Future = torch.futures.Future()
    result.set_result(_ordered_sum(_gathered(bucket.buffer() / dist.get_world_size()), block))
    return result


def _reference_worker(local_rank: int, config: str, nproc: int, port: int, block: int) -> None:
    """One process of the reference run: main.py's worker with its cross-rank float sums in rank order."""
    import engine.train_loop as train_loop
    import engine.trainer as trainer

    plain_wrap = trainer.wrap_ddp

    def wrap(model: torch.nn.Module, ctx: object) -> torch.nn.Module:
        ddp = plain_wrap(model, ctx)
        ddp.register_comm_hook(block, _ordered_mean_hook)
        return ddp

    trainer.wrap_ddp = wrap
    train_loop.all_reduce_sum = lambda tensor: _ordered_sum(_gathered(tensor.detach()), block)
    run_worker(make_plan(load_config(config), nproc), spawn_info(local_rank, nproc, 1, 0, "127.0.0.1", port), "gloo")


def _reference_run(config: Path, dataset: Path, nproc: int, block: int, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(dataset)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    mp.start_processes(_reference_worker, args=(str(config), nproc, find_free_port(), block), nprocs=nproc,
                       start_method="spawn")
    return Path(yaml.safe_load(config.read_text())["result_path"])


def _checkpoint(run: Path, epoch: int) -> dict:
    return torch.load(run / f"ckpt_{epoch}.pth.tar", map_location="cpu", weights_only=True)


def _max_difference(a: object, b: object, where: str = "") -> float:
    """The largest absolute difference of the tensors of two nested checkpoints (structure must be equal)."""
    if isinstance(a, dict):
        assert a.keys() == b.keys(), where
        return max((_max_difference(a[k], b[k], f"{where}.{k}") for k in a), default=0.0)
    if isinstance(a, (list, tuple)):
        assert len(a) == len(b), where
        return max((_max_difference(x, y, f"{where}[{i}]") for i, (x, y) in enumerate(zip(a, b))), default=0.0)
    if torch.is_tensor(a):
        assert a.shape == b.shape and a.dtype == b.dtype, where
        if not a.is_floating_point():
            assert torch.equal(a, b), where
            return 0.0
        return float((a - b).abs().max()) if a.numel() else 0.0
    assert a == b, where
    return 0.0


def _assert_same_run_state(run: Path, reference: Path, epochs: tuple[int, ...] = (1, 2)) -> None:
    """Same weights and optimizer state within ATOL, same schedule and every rank's random states."""
    for epoch in epochs:
        got, want = _checkpoint(run, epoch), _checkpoint(reference, epoch)
        for key in ("state_dict", "optimizer"):
            difference = _max_difference(got[key], want[key], key)
            assert difference <= ATOL, f"ckpt_{epoch} {key}: max difference {difference}"
        assert got["scheduler"] == want["scheduler"] and got["epoch"] == want["epoch"] == epoch
        assert _max_difference(got["extra"]["rng_per_rank"], want["extra"]["rng_per_rank"]) == 0.0
        assert _max_difference(got["rng"], want["rng"]) == 0.0


def _batch_log(run: Path) -> list[list[str]]:
    return [line.split("\t") for line in (run / "train_batch.log").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_processes(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _main(_config(tmp_path_factory.mktemp("w2"), "real"), dataset, nproc=2)


def _resume_epoch_1_on_one_process(reference: Path, dataset: Path, folder: Path, virtual_world_size: int) -> Path:
    """Resume ``reference``'s run from its epoch-1 checkpoint (all a run killed in epoch 2 leaves) on one process."""
    config = _config(folder, "resumed", virtual_world_size=virtual_world_size, auto_resume=True)
    (folder / "resumed").mkdir()
    shutil.copy(reference / "ckpt_1.pth.tar", folder / "resumed" / "ckpt_1.pth.tar")
    return _main(config, dataset, nproc=1)


def test_one_process_at_w2_trains_as_two_processes(two_processes: Path, dataset: Path, tmp_path: Path) -> None:
    run = _main(_config(tmp_path, "virtual", virtual_world_size=2), dataset, nproc=1)
    assert len(_batch_log(run)) == 1 + 2 * 4  # header, 4 iterations per epoch at W = 2
    assert (run / "train_batch.log").read_text() == (two_processes / "train_batch.log").read_text()
    assert (run / "train.log").read_text() == (two_processes / "train.log").read_text()
    _assert_same_run_state(run, two_processes)
    assert (run / "predict_epoch2.csv").read_bytes() == (two_processes / "predict_epoch2.csv").read_bytes()


def test_a_two_process_checkpoint_resumes_on_one_process_at_w2(two_processes: Path, dataset: Path,
                                                               tmp_path: Path) -> None:
    run = _resume_epoch_1_on_one_process(two_processes, dataset, tmp_path, virtual_world_size=2)
    assert _batch_log(run)[1:] == [row for row in _batch_log(two_processes)[1:] if row[0] == "2"]
    _assert_same_run_state(run, two_processes, epochs=(2,))


@pytest.fixture(scope="module")
def four_processes_in_rank_order(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """4 real processes whose cross-rank sums run in rank order, as one process playing the 4 ranks sums."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        return _reference_run(_config(tmp_path_factory.mktemp("w4"), "real"), dataset, 4, 4, monkeypatch)


def test_one_process_at_w4_trains_as_four_processes(four_processes_in_rank_order: Path, dataset: Path,
                                                    tmp_path: Path) -> None:
    run = _main(_config(tmp_path, "virtual", virtual_world_size=4), dataset, nproc=1)
    assert len(_batch_log(run)) == 1 + 2 * 2
    assert (run / "train_batch.log").read_text() == (four_processes_in_rank_order / "train_batch.log").read_text()
    _assert_same_run_state(run, four_processes_in_rank_order)
    assert ((run / "predict_epoch2.csv").read_bytes()
            == (four_processes_in_rank_order / "predict_epoch2.csv").read_bytes())


def test_a_four_process_checkpoint_resumes_on_one_process_at_w4(four_processes_in_rank_order: Path, dataset: Path,
                                                                tmp_path: Path) -> None:
    run = _resume_epoch_1_on_one_process(four_processes_in_rank_order, dataset, tmp_path, virtual_world_size=4)
    _assert_same_run_state(run, four_processes_in_rank_order, epochs=(2,))


def test_two_processes_at_w4_train_as_four_processes(dataset: Path, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    # Each process sums its two ranks' gradients, then DDP sums the two processes': (g0 + g1) + (g2 + g3).
    reference = _reference_run(_config(tmp_path, "real"), dataset, 4, 2, monkeypatch)
    run = _main(_config(tmp_path, "virtual", virtual_world_size=4), dataset, nproc=2)
    assert (run / "train_batch.log").read_text() == (reference / "train_batch.log").read_text()
    _assert_same_run_state(run, reference)
