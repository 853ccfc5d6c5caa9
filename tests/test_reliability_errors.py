"""Reliability: every error before spawn, in one line (main.py and the tools' command lines)."""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from engine.launch import main
from tests.engine_fixtures import ROOT, prepare_tiny_dataset, write_tiny_config
from tools import check_data, csv_to_pkl, gt_csv


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_tiny_dataset(tmp_path_factory.mktemp("cw"))


def _set(raw: dict, dotted: str, value: object) -> None:
    *parents, last = dotted.split(".")
    node = raw
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    node[last] = value


def _binary(dataset: Path, name: str) -> str:
    path = dataset / name
    path.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00\x01binary")
    return str(path)


# (changes to the tiny config, extra argv, expected message)
ROWS = [
    ({"model.head.kwargs.width": 999}, [], r"model\.head\.kwargs\.width: must equal the backbone's output channels"),
    ({"model.neck.kwargs.num_classes": 40}, [], r"model\.head\.kwargs\.num_classes: the head predicts 50 classes"),
    ({"train.augmentation.spatial.0.kwargs.resize": "big"}, [], r"train\.augmentation\.spatial\[0\]\.kwargs: Scale: resize .*'big'"),
    ({"model.head.kwargs.dropout": [0.3]}, [], r"model\.head\.kwargs\.dropout: \[0\.3\] is not a float like its default"),
    ({"evaluate": True}, [], r"evaluate: True, but no resume_path, pretrain or checkpoint is set.*"
                             r"evaluate_random_weights: true"),
    ({"resume_path": "empty.pth.tar"}, [], r"resume_path: .*empty\.pth\.tar is an empty file"),
    ({"val.eval_mAP.groundtruth": "binary.csv"}, [], r"binary\.csv: not UTF-8 text"),
    ({"val.eval_mAP.labelmap": "binary.pbtxt"}, [], r"binary\.pbtxt: not a UTF-8 text file"),
    ({"val.annotation_path": "binary.pkl"}, [], r"binary\.pkl: not a readable pickle"),
    ({}, ["--nproc_per_node", "0"], r"--nproc_per_node must be >= 1, got 0"),
    ({"train.batch_size": 1000}, ["--nproc_per_node", "2"],
     r"train\.batch_size: 1000 per process x 2 process\(es\) needs at least 2000 training elements, but .* holds \d+"),
    ({}, ["--nnodes", "2", "--node_rank", "2", "--master_port", "29999"],
     r"--node_rank must lie in 0\.\.1 \(--nnodes 2\), got 2"),
]


@pytest.mark.parametrize(("changes", "argv", "expected"), ROWS, ids=[str(i) for i in range(len(ROWS))])
def test_value_errors_are_one_line_before_anything_starts(dataset: Path, tmp_path: Path, capsys, monkeypatch,
                                                          changes: dict, argv: list[str], expected: str) -> None:
    (dataset / "empty.pth.tar").write_bytes(b"")
    for name in ("binary.csv", "binary.pbtxt", "binary.pkl"):
        _binary(dataset, name)
    config = write_tiny_config(tmp_path / "bad.yaml", tmp_path / "out")
    raw = yaml.safe_load(config.read_text())
    for key, value in changes.items():
        _set(raw, key, value)
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    monkeypatch.chdir(dataset)
    spawned = []
    monkeypatch.setattr("torch.multiprocessing.spawn", lambda *a, **k: spawned.append(a))
    assert main(["--config", str(config), "--backend", "gloo", *argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: "), err
    assert re.search(expected, err), err
    assert "Traceback" not in err and not spawned and not (tmp_path / "out").exists()


def test_a_non_utf8_config_names_the_file(tmp_path: Path, capsys) -> None:
    config = tmp_path / "latin1.yaml"
    config.write_bytes("result_path: r\u00e9sultats\n".encode("latin-1"))
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: .*latin1\.yaml: not UTF-8 text .*\n", err), err


def test_an_sbatch_script_without_srun_is_explained(dataset: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    config = write_tiny_config(tmp_path / "job.yaml", tmp_path / "out")
    for name, value in {"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_JOB_NODELIST": "gpu[1-2]",
                        "SLURM_JOB_ID": "7"}.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("SLURM_STEP_ID", raising=False)
    monkeypatch.delenv("SLURM_STEPID", raising=False)
    monkeypatch.chdir(dataset)
    assert main(["--config", str(config)]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "SLURM_NTASKS=4" in err and "srun python main.py" in err, err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("tool", "argv", "expected"), [
    (csv_to_pkl, ["--csv", "{binary}", "--labelmap", "{labelmap}", "--out", "{out}"], r"binary\.csv: not UTF-8 text"),
    (gt_csv, ["--csv", "{binary}", "--out", "{out}"], r"binary\.csv: not UTF-8 text"),
    (gt_csv, ["--csv", "{absent}", "--out", "{out}"], r"absent\.csv"),
    (check_data, ["--pkl", "{binary}", "--frames", "{dataset}/frames"], r"binary\.csv: not a readable pickle"),
])
def test_tool_command_lines_print_one_line(dataset: Path, tmp_path: Path, capsys, tool, argv: list[str],
                                           expected: str) -> None:
    names = {"binary": _binary(dataset, "binary.csv"), "labelmap": str(dataset / "AR_ava_format" / "list_action.pbtxt"),
             "out": str(tmp_path / "out.pkl"), "absent": str(tmp_path / "absent.csv"), "dataset": str(dataset)}
    assert tool.main([arg.format(**names) for arg in argv]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and re.search(expected, err), err
    assert not (tmp_path / "out.pkl").exists()


@pytest.mark.slow
def test_a_worker_that_fails_is_one_line_per_rank(dataset: Path, tmp_path: Path) -> None:
    # A train pkl that parses but names a video without frames: only a worker finds it, while loading clips.
    from formats.annotation_pkl import load_annotation_pkl, save_annotation_pkl

    config = write_tiny_config(tmp_path / "missing.yaml", tmp_path / "out")
    raw = yaml.safe_load(config.read_text())
    train = load_annotation_pkl(dataset / raw["train"]["annotation_path"])
    elements = [{**element, "video": "no_such_video"} for element in train.elements]
    save_annotation_pkl(tmp_path / "missing_frames.pkl", elements, train.classes)
    raw["train"]["annotation_path"] = str(tmp_path / "missing_frames.pkl")
    config.write_text(yaml.safe_dump(raw, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--config", str(config), "--nproc_per_node", "2",
                           "--backend", "gloo"], cwd=dataset, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert errors and all(re.fullmatch(r"error: rank [01]: \w+: .*no_such_video.*", line)
                          for line in errors), done.stderr[-3000:]
    assert "Traceback" not in done.stderr


def test_a_batch_that_leaves_a_rank_without_data_is_refused_before_spawn(dataset: Path, tmp_path: Path) -> None:
    # batch 50 x 2 ranks exceeds the 3 training elements: the launcher knows both numbers.
    config = write_tiny_config(tmp_path / "big.yaml", tmp_path / "out")
    config.write_text(config.read_text().replace("batch_size: 1", "batch_size: 50", 1))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, str(ROOT / "main.py"), "--config", str(config), "--nproc_per_node", "2",
                           "--backend", "gloo"], cwd=dataset, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and re.fullmatch(
        r"error: .*big\.yaml: train\.batch_size: 50 per process x 2 process\(es\) needs at least 100 training "
        r"elements, but .* holds 4; .*", errors[0]), done.stderr[-3000:]
    assert "Traceback" not in done.stderr
    assert not (tmp_path / "out").exists()
