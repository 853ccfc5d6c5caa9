"""Reliability: the mAP / predict.csv a training run reports is the one its checkpoint gives."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.engine_fixtures import ROOT, run_main_py, write_tiny_config
from tools.prepare_synthetic import prepare_synthetic_dataset

pytestmark = pytest.mark.slow


@pytest.mark.parametrize(("rank_local_eval", "reproducible"), [(False, True), (True, False)])
def test_predictions_written_in_training_equal_an_evaluation_of_the_checkpoint(
        tmp_path: Path, rank_local_eval: bool, reproducible: bool) -> None:
    # 2 val videos x 2 keyframes, val batch 1, 2 ranks: each rank evaluates 2 keyframes, so rank 1's
    # own BatchNorm statistics (never saved) would show in predict.csv.
    dataset = prepare_synthetic_dataset(tmp_path / "cw", train_videos=2, val_videos=2)
    train = write_tiny_config(tmp_path / "train.yaml", tmp_path / "train", n_epochs=1,
                              rank_local_eval=rank_local_eval)
    proc = run_main_py(train, dataset, "--nproc_per_node", "2", "--backend", "gloo")
    assert proc.returncode == 0, proc.stderr[-3000:]
    evaluate = write_tiny_config(tmp_path / "eval.yaml", tmp_path / "eval", evaluate=True,
                                 resume_path=str(tmp_path / "train" / "ckpt_1.pth.tar"))
    proc = run_main_py(evaluate, dataset, "--nproc_per_node", "2", "--backend", "gloo")
    assert proc.returncode == 0, proc.stderr[-3000:]
    during = (tmp_path / "train" / "predict_epoch1.csv").read_bytes()
    after = (tmp_path / "eval" / "predict_epoch1.csv").read_bytes()
    assert len(during.splitlines()) >= 4 * 50  # 4 keyframes x 50 classes, at least one box each
    assert (during == after) is reproducible


@pytest.mark.slow
def test_a_run_killed_with_sigkill_resumes_to_the_same_predictions(tmp_path: Path) -> None:
    import signal
    import time

    dataset = prepare_synthetic_dataset(tmp_path / "cw", train_videos=2, val_videos=1)
    straight = write_tiny_config(tmp_path / "a.yaml", tmp_path / "a", n_epochs=3, val_freq=3)
    assert run_main_py(straight, dataset, "--nproc_per_node", "1", "--backend", "gloo").returncode == 0
    killed = write_tiny_config(tmp_path / "b.yaml", tmp_path / "b", n_epochs=3, val_freq=3, auto_resume=True)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    run = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--config", str(killed), "--nproc_per_node", "1",
                            "--backend", "gloo"], cwd=dataset, env=env, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and not (tmp_path / "b" / "ckpt_2.pth.tar").exists() and run.poll() is None:
        time.sleep(0.05)
    run.send_signal(signal.SIGKILL)
    run.wait()
    assert (tmp_path / "b" / "ckpt_2.pth.tar").exists() and not (tmp_path / "b" / "ckpt_3.pth.tar").exists()
    resumed = run_main_py(killed, dataset, "--nproc_per_node", "1", "--backend", "gloo")
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "taking over the stale lock" in resumed.stderr
    assert (tmp_path / "a" / "predict_epoch3.csv").read_bytes() == (tmp_path / "b" / "predict_epoch3.csv").read_bytes()
    summary = json.loads((tmp_path / "b" / "run_summary.json").read_text())
    assert [entry["epoch"] for entry in summary["epochs"]] == [1, 2, 3]
