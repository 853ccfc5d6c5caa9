"""The whole AVA path on CPU: synthetic AVA files -> tools -> pkls -> ACAR-Net-style config -> train, eval, mAP."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml

from config import LossConfig, ModelConfig, section
from formats.annotation_pkl import load_annotation_pkl
from formats.ava import read_ava_csv
from formats.eval_csv import read_predict_csv
from models.build import build_model, model_spec
from tests.engine_fixtures import run_main_py
from tools.prepare_synthetic import prepare_synthetic_ava_dataset

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TINY_ACAR = ROOT / "configs" / "ava" / "tiny_cpu_acar.yaml"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_synthetic_ava_dataset(tmp_path_factory.mktemp("ava"), train_videos=2, val_videos=1, seconds=6)


def _summary(run: Path) -> dict:
    return json.loads((run / "run_summary.json").read_text(encoding="utf-8"))


def test_synthetic_ava_files_follow_the_official_layout(dataset: Path) -> None:
    rows = read_ava_csv(dataset / "annotations" / "ava_val_v2.2.csv")
    assert {row.time for row in rows} == {902, 903, 904}
    assert any(row.action_id == 2 for row in rows)  # an id outside the 60 evaluated classes
    train = load_annotation_pkl(dataset / "annotations" / "ava_train_v2.2_with_fair_0.9.pkl")
    assert len(train.classes) == 60
    assert any(entry["person_id"] == [-1] for e in train.elements for entry in e["labels"])
    val = load_annotation_pkl(dataset / "annotations" / "ava_val_v2.2_fair_0.85.pkl")
    element = val.elements[0]
    assert (dataset / "data" / element["video"] / (element["format_str"] % element["mid_frame"])).is_file()
    assert (dataset / "data" / element["video"] /
            (element["format_str"] % (element["start_frame"] + element["n_frames"] - 1))).is_file()


def test_train_one_epoch_on_two_processes_then_evaluate(dataset: Path, tmp_path: Path) -> None:
    run = tmp_path / "run"
    proc = run_main_py(TINY_ACAR, dataset, "--nproc_per_node", "2", "--backend", "gloo",
                       "--set", "train.n_epochs=1", "--set", "train.val_freq=1", "--set", "train.save_freq=1",
                       "--set", f"result_path={run}")
    assert proc.returncode == 0, proc.stderr[-3000:]
    checkpoint = torch.load(run / "ckpt_1.pth.tar", map_location="cpu", weights_only=True)
    assert not any(".submodule." in key or "BN_vit" in key for key in checkpoint["state_dict"])
    preds = read_predict_csv(run / "predict_epoch1.csv")
    assert len(preds.video) > 0 and len(preds.video) % 60 == 0
    assert set(preds.class_id.tolist()) <= set(range(1, 81))
    evaluation = _summary(run)["evaluations"][0]
    assert evaluation["epoch"] == 1 and 0.0 <= evaluation["mAP"] <= 1.0


def test_acar_net_format_checkpoint_evaluates_through_top_level_pretrain(dataset: Path, tmp_path: Path) -> None:
    """A model-zoo-style file (plain state dict, module. keys) and an eval config in ACAR-Net's form."""
    raw = yaml.safe_load(TINY_ACAR.read_text(encoding="utf-8"))
    torch.manual_seed(7)
    model = build_model(model_spec(section(ModelConfig, raw["model"], "model"),
                                   section(LossConfig, raw["loss"], "loss")))
    zoo = tmp_path / "AVA_TINY_ACAR.pth.tar"
    torch.save({"module." + key: value for key, value in model.state_dict().items()}, zoo)
    # ACAR-Net's eval configs: evaluate True, top-level pretrain, no train section.
    eval_raw = {"evaluate": True, "pretrain": {"path": str(zoo)}, "result_path": str(tmp_path / "eval"),
                **{key: raw[key] for key in ("manual_seed", "print_freq", "model", "loss", "val")}}
    config = tmp_path / "eval_tiny_acar.yaml"
    config.write_text(yaml.safe_dump(eval_raw, sort_keys=False), encoding="utf-8")
    proc = run_main_py(config, dataset, "--nproc_per_node", "1", "--backend", "gloo")
    assert proc.returncode == 0, proc.stderr[-3000:]
    run = tmp_path / "eval"
    logs = proc.stderr + (run / "log.txt").read_text(encoding="utf-8")
    count = len(model.state_dict())
    assert f"loaded {count} of {count} keys into the model" in logs and "keys missing" not in logs
    assert (run / "predict_epoch0.csv").is_file()  # ACAR-Net evaluates a pretrain file at epoch 0
    assert 0.0 <= _summary(run)["evaluations"][0]["mAP"] <= 1.0


def test_bad_head_width_fails_before_any_process_starts(dataset: Path, tmp_path: Path) -> None:
    raw = yaml.safe_load(TINY_ACAR.read_text(encoding="utf-8"))
    raw["model"]["head"]["kwargs"]["width"] = 600
    config = tmp_path / "bad_width.yaml"
    config.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    proc = run_main_py(config, dataset)
    assert proc.returncode == 2
    assert "bad_width.yaml: model.head.kwargs.width: must equal" in proc.stderr and "= 576" in proc.stderr


def test_demo_dataset_ava_runs_the_whole_path(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tools import demo

    out = tmp_path / "demo_ava"
    assert demo.main(["--dataset", "ava", "--out", str(out), "--train-videos", "2", "--val-videos", "1",
                      "--seconds", "6", "--epochs", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    assert summary["epochs"] == 1 and 0.0 <= summary["map_proposals"] <= 1.0
    assert "AVA demo" in capsys.readouterr().out
