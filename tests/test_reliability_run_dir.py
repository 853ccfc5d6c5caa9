"""Reliability: results are never lost or mixed (result folder checks, lock, summary, atomic files)."""
from __future__ import annotations

import errno
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from torch import nn

from common.atomic import DiskFullError, atomic_open, write_text_atomic
from engine.checkpoint import load_latest_readable_checkpoint, save_checkpoint
from engine.launch import main
from engine.run_dir import LOCK_NAME, RunLock, merge_summary, remove_stale_temporaries
from models.weights import WeightsError
from tests.engine_fixtures import prepare_tiny_dataset, write_tiny_config


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_tiny_dataset(tmp_path_factory.mktemp("cw"))


@pytest.fixture()
def live_pid():
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    yield sleeper.pid
    sleeper.kill()
    sleeper.wait()


def _dead_pid() -> int:
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    return int(done.stdout)


def _other_run(folder: Path, pid: int) -> None:
    folder.mkdir(parents=True)
    save_checkpoint(folder / "ckpt_1.pth.tar", 1, nn.Linear(1, 1), None, None)
    (folder / LOCK_NAME).write_text(json.dumps({"pid": pid, "host": os.uname().nodename}))


@pytest.mark.parametrize(("changes", "lock", "expected"), [
    ({}, "dead", r"already holds checkpoints of another run \(ckpt_1\.pth\.tar\); set auto_resume: true .*"
                 r"overwrite_result_path: true"),
    ({"auto_resume": True}, "live", r"is in use by another run \(pid \d+ on host .*lock file .*\.run\.lock\)"),
    ({"evaluate": True, "resume_path": "ckpt_1.pth.tar"}, "live", r"is in use by another run"),
])
def test_a_result_path_of_another_run_is_refused_before_anything_starts(
        dataset: Path, tmp_path: Path, live_pid: int, capsys, monkeypatch, changes: dict, lock: str,
        expected: str) -> None:
    folder = tmp_path / "run"
    _other_run(folder, live_pid if lock == "live" else _dead_pid())
    before = {entry.name: entry.stat().st_mtime_ns for entry in folder.iterdir()}
    config = write_tiny_config(tmp_path / "run.yaml", folder, **changes)
    monkeypatch.chdir(dataset)
    assert main(["--config", str(config), "--nproc_per_node", "2", "--backend", "gloo"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("error: result_path ") and __import__("re").search(expected, err), err
    assert {entry.name: entry.stat().st_mtime_ns for entry in folder.iterdir()} == before  # nothing written


def test_a_stale_lock_is_taken_over_and_a_live_one_refused(tmp_path: Path, live_pid: int, caplog) -> None:
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": _dead_pid(), "host": os.uname().nodename}))
    lock = RunLock(tmp_path)
    with caplog.at_level(logging.WARNING, logger="engine.run_dir"):
        lock.acquire()
    assert "stale lock" in caplog.text and json.loads((tmp_path / LOCK_NAME).read_text())["pid"] == os.getpid()
    lock.release()
    assert not (tmp_path / LOCK_NAME).exists()
    (tmp_path / LOCK_NAME).write_text(json.dumps({"pid": live_pid, "host": os.uname().nodename}))
    with pytest.raises(ValueError, match=rf"in use by another run \(pid {live_pid} "):
        RunLock(tmp_path).acquire()


def test_stale_temporaries_of_our_atomic_writes_are_removed(tmp_path: Path) -> None:
    for name in (".ckpt_3.pth.tar.k2j4.tmp", ".predict_epoch1.csv.ab12.tmp", "keep.tmp", "ckpt_2.pth.tar", ".hidden"):
        (tmp_path / name).write_text("x")
    assert sorted(remove_stale_temporaries(tmp_path)) == [".ckpt_3.pth.tar.k2j4.tmp", ".predict_epoch1.csv.ab12.tmp"]
    assert sorted(entry.name for entry in tmp_path.iterdir()) == [".hidden", "ckpt_2.pth.tar", "keep.tmp"]


def test_atomic_files_get_the_umask_permissions_and_a_full_disk_is_named(tmp_path: Path) -> None:
    mask = os.umask(0o027)
    try:
        write_text_atomic(tmp_path / "a.json", "{}")
    finally:
        os.umask(mask)
    assert (tmp_path / "a.json").stat().st_mode & 0o777 == 0o640
    with pytest.raises(DiskFullError, match=r"^disk full while writing .*ckpt_9\.pth\.tar$"):
        with atomic_open(tmp_path / "ckpt_9.pth.tar", "wb"):
            raise OSError(errno.ENOSPC, "No space left on device")
    assert sorted(entry.name for entry in tmp_path.iterdir()) == ["a.json"]


def test_auto_resume_falls_back_past_an_unreadable_latest_checkpoint(tmp_path: Path, caplog) -> None:
    save_checkpoint(tmp_path / "ckpt_1.pth.tar", 1, nn.Linear(1, 1), None, None)
    (tmp_path / "ckpt_2.pth.tar").write_bytes(b"")
    with caplog.at_level(logging.WARNING, logger="engine.checkpoint"):
        path, checkpoint = load_latest_readable_checkpoint(tmp_path)
    assert path.name == "ckpt_1.pth.tar" and checkpoint["epoch"] == 1
    assert "ckpt_2.pth.tar: empty file" in caplog.text and "falling back to the previous checkpoint" in caplog.text
    (tmp_path / "ckpt_1.pth.tar").write_bytes(b"junk")
    with pytest.raises(WeightsError, match=r"none of the 2 checkpoints .* is readable"):
        load_latest_readable_checkpoint(tmp_path)
    assert load_latest_readable_checkpoint(tmp_path / "absent") is None


def _summary(epochs: list[int], checkpoints: list[str], resumed_from: str | None = None) -> dict:
    return {"mode": "train", "world_size": 1, "backend": "gloo", "device": "cpu",
            "epochs": [{"epoch": e, "loss": 0.1 * e} for e in epochs],
            "evaluations": [{"epoch": e, "mAP": e} for e in epochs], "checkpoints": checkpoints,
            "resumed_from": resumed_from, "tensorboard": None, "seconds": {}}


def test_summaries_merge_across_resumes(tmp_path: Path) -> None:
    # killed during epoch 3 after logging it (its checkpoint was not written): epoch 3 is re-run.
    (tmp_path / "run_summary.json").write_text(json.dumps(_summary([1, 2, 3], ["ckpt_1", "ckpt_2"])))
    merged = merge_summary(tmp_path, _summary([3, 4], ["ckpt_3", "ckpt_4"], "ckpt_2"), begin_epoch=3)
    assert [e["epoch"] for e in merged["epochs"]] == [1, 2, 3, 4]
    assert [e["epoch"] for e in merged["evaluations"]] == [1, 2, 3, 4]
    assert merged["checkpoints"] == ["ckpt_1", "ckpt_2", "ckpt_3", "ckpt_4"] and merged["resumed_from"] == "ckpt_2"
    # auto_resume of a finished run: nothing to train, nothing lost.
    (tmp_path / "run_summary.json").write_text(json.dumps(merged))
    again = merge_summary(tmp_path, _summary([], [], "ckpt_4"), begin_epoch=5)
    assert [e["epoch"] for e in again["epochs"]] == [1, 2, 3, 4] and len(again["evaluations"]) == 4
    # a fresh run (begin_epoch 1) replaces the record.
    assert merge_summary(tmp_path, _summary([1], ["ckpt_1"]), begin_epoch=1)["epochs"] == [{"epoch": 1, "loss": 0.1}]


class _Crash(RuntimeError):
    pass


@pytest.mark.slow
def test_the_summary_lists_every_epoch_after_a_mid_run_resume_and_a_finished_resume(
        dataset: Path, tmp_path: Path, monkeypatch) -> None:
    from config import load_config
    from engine.distributed import spawn_info
    from engine.plan import make_plan
    from engine.runner import run_worker

    config = write_tiny_config(tmp_path / "a.yaml", tmp_path / "a", n_epochs=2, val_freq=2, auto_resume=True)
    monkeypatch.chdir(dataset)

    def crash(epoch: int, iteration: int) -> None:
        if epoch == 2 and iteration == 0:
            raise _Crash("killed in epoch 2")

    with pytest.raises(_Crash):
        run_worker(make_plan(load_config(config)), spawn_info(0, 1), "gloo", on_iteration=crash)
    summary = tmp_path / "a" / "run_summary.json"
    assert [e["epoch"] for e in json.loads(summary.read_text())["epochs"]] == [1]  # written per epoch
    run_worker(make_plan(load_config(config)), spawn_info(0, 1), "gloo")
    first = json.loads(summary.read_text())
    assert [e["epoch"] for e in first["epochs"]] == [1, 2] and [e["epoch"] for e in first["evaluations"]] == [2]
    run_worker(make_plan(load_config(config)), spawn_info(0, 1), "gloo")  # finished: auto_resume has nothing to do
    again = json.loads(summary.read_text())
    assert again["epochs"] == first["epochs"] and again["evaluations"] == first["evaluations"]
