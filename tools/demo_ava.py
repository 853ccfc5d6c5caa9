"""The AVA variant of the demo (``python -m tools.demo --dataset ava``): synthetic AVA files -> ACAR-Net model -> mAP.

Stages: prepare the synthetic dataset in the AVA v2.2 / ACAR-Net layout (``tools.prepare_synthetic``
``--layout ava``), then ``main.py`` trains ``configs/ava/tiny_cpu_acar.yaml`` (ACAR-Net's model, no
ViT) on gloo processes and evaluates it on the val proposals (FAIR-style, score >= 0.85). Not part
of ``make demo``.
"""
from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from common.atomic import write_text_atomic
from tools.prepare_synthetic import prepare_synthetic_ava_dataset

LOGGER = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parents[1]
AVA_CONFIG = REPO_ROOT / "configs" / "ava" / "tiny_cpu_acar.yaml"
SUMMARY_NAME = "summary.json"


@dataclass(frozen=True)
class AvaDemoOptions:
    """Sizes of the AVA demo (defaults: 8 train + 2 val videos of 8 s, 5 keyframes each)."""

    out: Path
    seed: int = 0
    train_videos: int = 8
    val_videos: int = 2
    seconds: int = 8
    nproc: int = 2
    epochs: int | None = None


def run_ava_demo(options: AvaDemoOptions) -> dict:
    """Prepare the data (skipped when ``out/data`` is complete), train and evaluate; write ``summary.json``.

    Returns:
        ``dataset`` (``out/data``), ``map_proposals`` (frame-mAP at capacity 50 on the val proposals),
        ``epochs``, ``seconds`` per stage, ``predict_csv``.

    Raises:
        RuntimeError: ``main.py`` failed (its log is named).
    """
    out = Path(options.out)
    data = out / "data"
    seconds: dict[str, float] = {}
    started = time.perf_counter()
    if not (data / "annotations" / "ava_val_v2.2_fair_0.85.pkl").is_file():
        prepare_synthetic_ava_dataset(data, options.train_videos, options.val_videos, options.seconds, options.seed)
    seconds["prepare"] = round(time.perf_counter() - started, 1)
    result = (out / "action").resolve()
    command = [sys.executable, str(REPO_ROOT / "main.py"), "--config", str(AVA_CONFIG), "--nproc_per_node",
               str(options.nproc), "--backend", "gloo", "--set", f"result_path={result}"]
    if options.epochs is not None:
        command += ["--set", f"train.n_epochs={options.epochs}", "--set", f"train.val_freq={options.epochs}",
                    "--set", f"train.save_freq={options.epochs}"]
    LOGGER.info("training ACAR-Net's tiny model: %s (cwd %s)", " ".join(command), data)
    started = time.perf_counter()
    completed = subprocess.run(command, cwd=data, env={**os.environ, "OMP_NUM_THREADS": "1"})
    if completed.returncode != 0:
        raise RuntimeError(f"main.py exited with code {completed.returncode}; see {result / 'log.txt'}")
    seconds["action"] = round(time.perf_counter() - started, 1)
    run = json.loads((result / "run_summary.json").read_text(encoding="utf-8"))
    final = run["evaluations"][-1]
    summary = {"dataset": str(data), "config": str(AVA_CONFIG), "map_proposals": final["mAP"],
               "epochs": len(run["epochs"]), "predict_csv": final.get("predict_csv"), "seconds": seconds}
    write_text_atomic(out / SUMMARY_NAME, json.dumps(summary, indent=2) + "\n")
    return summary


def format_ava_summary(summary: dict) -> str:
    """The one-screen summary printed at the end of the AVA demo."""
    return (f"AVA demo (synthetic AVA v2.2 layout, ACAR-Net tiny model, {summary['epochs']} epochs): "
            f"frame-mAP {100 * summary['map_proposals']:.2f}% on the val proposals (capacity 50); "
            f"prepare {summary['seconds']['prepare']} s, train + eval {summary['seconds']['action']} s; "
            f"data in {summary['dataset']}")
