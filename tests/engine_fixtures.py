"""Helpers for the engine's end-to-end tests: a tiny synthetic dataset, a tiny config, main.py in a subprocess."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import yaml

from engine.distributed import find_free_port
from tools.prepare_synthetic import prepare_synthetic_dataset

ROOT = Path(__file__).resolve().parents[1]
TINY_CONFIG = ROOT / "configs" / "tiny_cpu_synthetic.yaml"


def run_main_py(config: Path, cwd: Path, *args: str, torchrun_nproc: int | None = None) -> subprocess.CompletedProcess:
    """``main.py --config config *args`` from ``cwd`` (the dataset root), output captured.

    One OpenMP thread per process in every layout, so that scores are bit-identical across layouts.
    ``torchrun_nproc``: start main.py under torchrun with that many processes instead.
    """
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, str(ROOT / "main.py"), "--config", str(config), *args]
    if torchrun_nproc is not None:
        command[1:1] = ["-m", "torch.distributed.run", "--nproc_per_node", str(torchrun_nproc),
                        "--master_addr", "127.0.0.1", "--master_port", str(find_free_port())]
    return subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)


def prepare_tiny_dataset(root: Path) -> Path:
    """A 3-video synthetic dataset (2 train, 1 val) under ``root``, ready for main.py (a few seconds)."""
    return prepare_synthetic_dataset(root, train_videos=2, val_videos=1)


def write_tiny_config(path: Path, result_path: Path, **changes: object) -> Path:
    """The shipped tiny CPU config shrunk further (64x64, 8 frames, batch 1) for tests.

    ``changes`` replace top-level or ``train``/``val`` keys, e.g. ``n_epochs=2``, ``evaluate=True``.
    """
    raw = yaml.safe_load(TINY_CONFIG.read_text())
    raw["result_path"] = str(result_path)
    raw["cap_max"] = 20
    vit = raw["model"]["backbone"]["subbackbone"]["kwargs"]
    vit.update(img_size=64, all_frames=8)
    raw["model"]["head"]["kwargs"].update(reduce_dim=64, hidden_dim=32)
    for split in ("train", "val"):
        raw[split]["batch_size"] = 1
        raw[split]["augmentation"]["spatial"][0]["kwargs"]["resize"] = [64, 64]
        raw[split]["augmentation"]["temporal"]["kwargs"].update(size=16, step=2)
    raw["train"].update(n_epochs=2, val_freq=1, save_freq=1)
    for key, value in changes.items():
        if key in ("n_epochs", "val_freq", "save_freq"):
            raw["train"][key] = value
        else:
            raw[key] = value
    if raw.get("evaluate"):
        raw.pop("train")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path
