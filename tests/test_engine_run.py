"""End-to-end runs of main.py on a tiny synthetic dataset (CPU, gloo): training, evaluation, resume."""
from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest
import torch
import yaml
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from config import load_config
from engine.distributed import spawn_info
from engine.plan import make_plan
from engine.runner import run_worker
from formats.annotation_pkl import load_annotation_pkl
from formats.eval_csv import read_predict_csv
from tests.engine_fixtures import prepare_tiny_dataset, run_main_py, write_tiny_config
from tools.csv_to_pkl import convert_csv_to_pkl

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_tiny_dataset(tmp_path_factory.mktemp("cw"))


@pytest.fixture(scope="module")
def trained(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two epochs with two gloo processes."""
    result = tmp_path_factory.mktemp("train")
    config = write_tiny_config(result / "train.yaml", result / "run")
    proc = run_main_py(config, dataset, "--nproc_per_node", "2", "--backend", "gloo")
    assert proc.returncode == 0, proc.stderr[-3000:]
    (result / "stderr.txt").write_text(proc.stderr)
    return result / "run"


# A line of the run's log: time, level, logger (other ranks add their tag).
_LOG_LINE = re.compile(r"^(\[rank \d+\] )?\d\d:\d\d:\d\d [A-Z]+ [\w.]+: ")


def _assert_each_log_line_once(stderr: str) -> None:
    """No log line printed twice, and the model described once (not once per check that builds it)."""
    lines = [line for line in stderr.splitlines() if _LOG_LINE.match(line)]
    repeated = {line: count for line, count in Counter(lines).items() if count > 1}
    assert lines and not repeated, repeated
    assert sum(" models.build: model: " in line for line in lines) == 1, stderr
    assert sum(" engine.runner: ViT attention on cpu: " in line for line in lines) == 1, stderr


def test_two_process_run_prints_each_log_line_once(trained: Path) -> None:
    _assert_each_log_line_once((trained.parent / "stderr.txt").read_text())


def test_two_process_training_writes_checkpoints_logs_and_predictions(trained: Path, dataset: Path) -> None:
    for name in ("ckpt_1.pth.tar", "ckpt_2.pth.tar", "train.log", "train_batch.log", "val.log", "log.txt",
                 "opts.json", "predict_epoch2.csv", "cap_mAP_records_multi2.txt", "eval_epoch2.json", "map_epoch2.png",
                 "run_summary.json"):
        assert (trained / name).is_file(), name
    assert any((trained / "tb").iterdir())
    checkpoint = torch.load(trained / "ckpt_2.pth.tar", map_location="cpu", weights_only=True)
    assert {"epoch", "state_dict", "optimizer", "scheduler"} <= set(checkpoint)
    assert checkpoint["epoch"] == 2 and all(k.startswith("module.") for k in checkpoint["state_dict"])
    assert len(checkpoint["extra"]["rng_per_rank"]) == 2
    train_log = (trained / "train.log").read_text().splitlines()
    assert train_log[0] == "epoch\tloss\tlr" and len(train_log) == 3
    # SFMViT's sweep: K over range(cap_min, cap_max) = 1..19 (cap_max 20 left out), then the best line.
    records = (trained / "cap_mAP_records_multi2.txt").read_text().splitlines()
    assert len(records) == 20 and records[0].startswith("cap: 1, mAP: ") and records[18].startswith("cap: 19, mAP: ")
    assert records[19].startswith("cap:")
    preds = read_predict_csv(trained / "predict_epoch2.csv")
    assert len(preds.video) % 50 == 0 and len(preds.video) > 0
    assert set(preds.class_id.tolist()) == set(range(1, 51))


def _scalar_steps(tb: Path) -> dict[str, list[int]]:
    events = EventAccumulator(str(tb))
    events.Reload()
    return {tag: [event.step for event in events.Scalars(tag)] for tag in events.Tags()["scalars"]}


def test_every_tensorboard_scalar_is_on_the_global_step_axis(trained: Path) -> None:
    iters = [epoch["iterations"] for epoch in json.loads((trained / "run_summary.json").read_text())["epochs"]]
    assert len(iters) == 2 and iters[0] == iters[1] > 0
    end_of_epoch = [iters[0], 2 * iters[0]]
    steps = _scalar_steps(trained / "tb")
    # Epoch-level scalars at the global step reached at the end of their epoch (this tiny run has few
    # iterations per epoch; tests/test_engine_loops.py checks the runner with several).
    assert steps["train/epoch_loss"] == end_of_epoch
    assert steps["val/mAP"] == end_of_epoch
    # The per-iteration scalars (none when print_freq exceeds the epoch) at the iterations train_batch.log lists.
    batch_log = [line.split("\t") for line in (trained / "train_batch.log").read_text().splitlines()]
    assert batch_log[0][2] == "iter"
    assert steps.get("train/loss", []) == steps.get("lr", []) == [int(row[2]) for row in batch_log[1:]]
    assert all(1 <= step <= end_of_epoch[1] for tag_steps in steps.values() for step in tag_steps)


def _evaluated_step(out: Path) -> list[int]:
    return _scalar_steps(out / "tb")["val/mAP"]


def test_predict_csv_is_identical_for_one_two_and_torchrun_processes(trained: Path, dataset: Path,
                                                                     tmp_path: Path) -> None:
    outputs, losses = {}, {}
    for layout in ("1", "2", "torchrun"):  # main.py's own processes, or 2 started by torchrun
        config = write_tiny_config(tmp_path / f"eval{layout}.yaml", tmp_path / f"eval{layout}", evaluate=True,
                                   resume_path=str(trained / "ckpt_2.pth.tar"))
        raw = yaml.safe_load(config.read_text())
        raw["val"]["with_label"] = True  # the val pkl holds ground-truth labels
        config.write_text(yaml.safe_dump(raw, sort_keys=False))
        if layout == "torchrun":
            proc = run_main_py(config, dataset, "--backend", "gloo", torchrun_nproc=2)
        else:
            proc = run_main_py(config, dataset, "--nproc_per_node", layout, "--backend", "gloo")
        assert proc.returncode == 0, proc.stderr[-3000:]
        out = tmp_path / f"eval{layout}"
        outputs[layout] = (out / "predict_epoch2.csv").read_bytes()
        losses[layout] = json.loads((out / "run_summary.json").read_text())["evaluations"][0]["val_loss"]
        val_log = (out / "val.log").read_text().splitlines()
        assert val_log[0] == "epoch\tmAP\tloss" and val_log[1].split("\t")[2] == str(losses[layout])
        # Evaluating ckpt_2 only: the scalars sit at the step its weights trained to, the end of epoch 2.
        trained_to = 2 * json.loads((trained / "run_summary.json").read_text())["epochs"][0]["iterations"]
        assert _scalar_steps(out / "tb") == {"val/loss": [trained_to], "val/mAP": [trained_to]}
    assert outputs["1"] == outputs["2"] == outputs["torchrun"]
    assert outputs["1"] == (trained / "predict_epoch2.csv").read_bytes()
    # Per-box losses summed exactly in box order: the same value for any number of processes.
    assert losses["1"] == losses["2"] == losses["torchrun"] and 0.0 < losses["1"] < 1.0


def test_original_predict_order_is_the_samplers_permutation_of_the_elements(trained: Path, dataset: Path,
                                                                          tmp_path: Path) -> None:
    # A per-row val pkl (the original's layout): more elements than keyframes, so the order shows.
    per_row = tmp_path / "cw_data_test1fps.pkl"
    annotations = dataset / "AR_ava_format"
    convert_csv_to_pkl(annotations / "chaos_test_1fps.csv", annotations / "list_action.pbtxt", per_row)
    elements = load_annotation_pkl(per_row).elements
    rows = {}
    for order in ("element", "original"):
        config = write_tiny_config(tmp_path / f"{order}.yaml", tmp_path / order, evaluate=True,
                                   resume_path=str(trained / "ckpt_2.pth.tar"))
        extra = ["--predict-order", "original"] if order == "original" else []
        proc = run_main_py(config, dataset, "--nproc_per_node", "2", "--backend", "gloo",
                           "--set", f"val.annotation_path={per_row}", *extra)
        assert proc.returncode == 0, proc.stderr[-3000:]
        rows[order] = (tmp_path / order / "predict_epoch2.csv").read_text().splitlines()
    default, original = rows["element"], rows["original"]
    # Each element holds one box: its 50 class rows, element after element in the default file.
    assert len(elements) > 2 and len(default) == 50 * len(elements)
    for index, element in enumerate(elements):
        assert default[50 * index].split(",")[:2] == [element["video"], str(element["time"])]
    permutation = torch.randperm(len(elements), generator=torch.Generator().manual_seed(0)).tolist()
    assert permutation != sorted(permutation)
    assert original == [row for element in permutation for row in default[50 * element:50 * (element + 1)]]
    assert sorted(original) == sorted(default)


def test_evaluates_a_checkpoint_in_the_original_format(trained: Path, dataset: Path, tmp_path: Path) -> None:
    full = torch.load(trained / "ckpt_2.pth.tar", map_location="cpu", weights_only=True)
    original = {"epoch": 7, "state_dict": full["state_dict"], "optimizer": {}, "scheduler": {}}
    torch.save(original, tmp_path / "released.pth.tar")
    config = write_tiny_config(tmp_path / "eval.yaml", tmp_path / "out", evaluate=True,
                               resume_path=str(tmp_path / "released.pth.tar"))
    proc = run_main_py(config, dataset, "--nproc_per_node", "1", "--backend", "gloo")
    assert proc.returncode == 0, proc.stderr[-3000:]
    # One process: the worker runs in the launcher's process, whose logging was set up first.
    _assert_each_log_line_once(proc.stderr)
    assert (tmp_path / "out" / "predict_epoch7.csv").is_file()
    assert _evaluated_step(tmp_path / "out") == [0]  # the original's format does not record the step
    assert (tmp_path / "out" / "cap_mAP_records_multi7.txt").is_file()


def test_bad_config_fails_before_any_process_starts(dataset: Path, tmp_path: Path) -> None:
    config = write_tiny_config(tmp_path / "bad.yaml", tmp_path / "out")
    config.write_text(config.read_text().replace("batch_size:", "batch_sise:", 1))
    proc = run_main_py(config, dataset)
    assert proc.returncode == 2
    assert "bad.yaml" in proc.stderr and "batch_sise" in proc.stderr and "batch_size" in proc.stderr
    assert not (tmp_path / "out").exists()


class _Crash(RuntimeError):
    pass


def _run_in_process(config: Path, dataset: Path, hook=None) -> None:
    cwd = os.getcwd()
    os.chdir(dataset)
    try:
        run_worker(make_plan(load_config(config)), spawn_info(0, 1), "gloo", on_iteration=hook)
    finally:
        os.chdir(cwd)


def test_run_killed_mid_epoch_resumes_to_the_same_weights(dataset: Path, tmp_path: Path) -> None:
    straight = write_tiny_config(tmp_path / "a.yaml", tmp_path / "a", n_epochs=3, val_freq=3)
    _run_in_process(straight, dataset)

    resumed = write_tiny_config(tmp_path / "b.yaml", tmp_path / "b", n_epochs=3, val_freq=3, auto_resume=True)

    def crash(epoch: int, iteration: int) -> None:
        if epoch == 3 and iteration == 0:
            raise _Crash("simulated kill in the middle of epoch 3")

    with pytest.raises(_Crash):
        _run_in_process(resumed, dataset, crash)
    assert not (tmp_path / "b" / "ckpt_3.pth.tar").exists()
    _run_in_process(resumed, dataset)

    final_a = torch.load(tmp_path / "a" / "ckpt_3.pth.tar", map_location="cpu", weights_only=True)["state_dict"]
    final_b = torch.load(tmp_path / "b" / "ckpt_3.pth.tar", map_location="cpu", weights_only=True)["state_dict"]
    assert final_a.keys() == final_b.keys()
    for key in final_a:
        assert torch.equal(final_a[key], final_b[key]), key
    assert (tmp_path / "a" / "predict_epoch3.csv").read_bytes() == (tmp_path / "b" / "predict_epoch3.csv").read_bytes()


def test_frame_store_gives_byte_identical_predictions(trained: Path, dataset: Path, tmp_path: Path) -> None:
    config = write_tiny_config(tmp_path / "eval.yaml", tmp_path / "out", evaluate=True,
                               resume_path=str(trained / "ckpt_2.pth.tar"))
    text = config.read_text().replace("  workers: 0\n", f"  workers: 0\n  frame_store: {tmp_path / 'store'}\n")
    config.write_text(text)
    proc = run_main_py(config, dataset, "--nproc_per_node", "1", "--backend", "gloo")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert any((tmp_path / "store").iterdir())
    assert (tmp_path / "out" / "predict_epoch2.csv").read_bytes() == (trained / "predict_epoch2.csv").read_bytes()
