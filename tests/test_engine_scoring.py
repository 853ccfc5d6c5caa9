"""main.py's mAP step: SFMViT's capacity sweep or ACAR-Net's single run, chosen by the config."""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import yaml

import engine.scoring as scoring
from config import Config, ConfigError, from_dict, load_config
from engine.scoring import cap_records_path, map_protocol, score_epoch

ROOT = Path(__file__).resolve().parents[1]
EVAL_YAML = ROOT / "configs" / "eval_VITSF_ACAR_HR2O_CW.yaml"
TINY_YAML = ROOT / "tests" / "data" / "engine" / "tiny_cpu.yaml"
EVAL_DATA = ROOT / "tests" / "data" / "eval"
# tests/data/eval/README.md: mAP 0.125, 1/3, 1/3 at K = 1, 2, 3 and 7/12 from K = 4, without
# exclusions; exclude.csv drops vidB 5 (1 ground-truth row, 2 detection rows): mAP 0.5.
MAP_BY_K = {1: 0.125, 2: 1 / 3, 3: 1 / 3, 4: 7 / 12}
MAP_EXCLUDED = 0.5


class _Writer:
    def __init__(self) -> None:
        self.scalars: dict[str, float] = {}

    def add_scalar(self, name: str, value: float, step: int) -> None:
        self.scalars[name] = value

    def flush(self) -> None:
        pass


def _config(tmp_path: Path, caps: tuple[int, int] | None, **eval_keys: object) -> Config:
    raw = yaml.safe_load(TINY_YAML.read_text())
    raw["result_path"] = str(tmp_path / "out")
    raw.pop("cap_min"), raw.pop("cap_max")
    if caps is not None:
        raw["cap_min"], raw["cap_max"] = caps
    raw["val"]["eval_mAP"] = {"labelmap": str(EVAL_DATA / "list_action.pbtxt"),
                              "groundtruth": str(EVAL_DATA / "gt.csv"),
                              "exclusions": str(EVAL_DATA / "exclude.csv"), **eval_keys}
    (tmp_path / "out").mkdir(exist_ok=True)
    return from_dict(raw, str(tmp_path / "x.yaml"))


def _score(cfg: Config, epoch: int = 1) -> dict:
    return score_epoch(cfg, map_protocol(cfg), EVAL_DATA / "predict.csv", epoch, _Writer(), step=10 * epoch)


def test_the_rule_follows_the_original_whose_config_runs() -> None:
    sfmvit = map_protocol(load_config(EVAL_YAML))
    assert (sfmvit.rule, sfmvit.capacities, sfmvit.exclusions, sfmvit.ties) == ("sfmvit_sweep", (50, 2199), None,
                                                                                 "original")
    opted = map_protocol(load_config(EVAL_YAML, ["val.eval_mAP.include_cap_max=true",
                                                 "val.eval_mAP.use_exclusions_in_sweep=true",
                                                 "val.eval_mAP.ties=stable"]))
    assert (opted.capacities, opted.exclusions, opted.ties) == ((50, 2200), "AR_ava_format/chaos_test_exclude.csv",
                                                                "stable")
    acar = map_protocol(load_config(EVAL_YAML, ["cap_min=null", "cap_max=null"]))
    assert (acar.rule, acar.capacities, acar.exclusions) == ("acar_single", (50, 50),
                                                            "AR_ava_format/chaos_test_exclude.csv")
    raw = yaml.safe_load(EVAL_YAML.read_text())
    del raw["val"]["eval_mAP"]
    assert map_protocol(from_dict(raw)) is None


def test_sfmvit_sweep_leaves_cap_max_out_ignores_exclusions_and_writes_its_records(tmp_path: Path) -> None:
    cfg = _config(tmp_path, (1, 4))
    figures = _score(cfg, epoch=3)
    records = cap_records_path(cfg.result_path, 3)
    assert records.name == "cap_mAP_records_multi3.txt" and figures["cap_records"] == str(records)
    lines = records.read_text().splitlines()
    assert [line.split(",")[0] for line in lines[:-1]] == ["cap: 1", "cap: 2", "cap: 3"]  # K = 4 left out
    assert lines[-1] == f"cap:2,max_mAP:{1 / 3}"
    assert figures["mAP"] == pytest.approx(MAP_BY_K[2]) and figures["best_capacity"] == 2
    assert (figures["protocol"], figures["gt_rows_excluded"], figures["detection_rows_excluded"]) == (
        "sfmvit_sweep", 0, 0)
    payload = json.loads(Path(figures["eval_json"]).read_text())
    assert payload["protocol"] == {"rule": "sfmvit_sweep", "capacities": [1, 3], "exclusions": None,
                                   "ties": "original"}
    assert payload["counts"]["gt_rows_excluded"] == 0 and payload["counts"]["detection_rows_excluded"] == 0
    # Rewritten, not appended to, when the same epoch is scored again.
    _score(cfg, epoch=3)
    assert records.read_text().splitlines() == lines


def test_sweep_opt_ins_include_cap_max_and_the_exclusions(tmp_path: Path) -> None:
    inclusive = _score(_config(tmp_path, (1, 4), include_cap_max=True))
    assert inclusive["best_capacity"] == 4 and inclusive["mAP"] == pytest.approx(MAP_BY_K[4])
    excluded = _score(_config(tmp_path, (4, 6), use_exclusions_in_sweep=True))
    assert excluded["mAP"] == pytest.approx(MAP_EXCLUDED)
    assert (excluded["gt_rows_excluded"], excluded["detection_rows_excluded"]) == (1, 2)


def test_acar_single_run_uses_the_exclusions_at_capacity_50(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = _config(tmp_path, None)
    with caplog.at_level(logging.INFO, logger="engine.scoring"):
        figures = _score(cfg)
    assert figures["mAP"] == pytest.approx(MAP_EXCLUDED) and "best_capacity" not in figures
    assert (figures["protocol"], figures["gt_rows_excluded"], figures["detection_rows_excluded"]) == (
        "acar_single", 1, 2)
    assert not cap_records_path(cfg.result_path, 1).exists()
    payload = json.loads(Path(figures["eval_json"]).read_text())
    assert payload["capacity"] == 50 and payload["protocol"]["exclusions"] == str(EVAL_DATA / "exclude.csv")
    assert "ACAR-Net single run at capacity 50" in caplog.text
    assert "1 ground-truth and 2 detection rows removed" in caplog.text


def test_ties_is_validated_and_passed_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigError) as info:
        _config(tmp_path, (1, 4), ties="random")
    assert str(info.value).startswith(f"{tmp_path / 'x.yaml'}: val.eval_mAP.ties: expected one of 'original'")
    calls: list[dict] = []
    real = scoring.run_evaluation

    def spy(*args, **kwargs):
        calls.append(dict(kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(scoring, "run_evaluation", spy)
    _score(_config(tmp_path, (1, 4)))
    _score(_config(tmp_path, (1, 4), ties="stable"))
    assert calls[0]["ties"] == "original" and calls[1]["ties"] == "stable"
    assert calls[0]["cap_range"] == calls[1]["cap_range"] == (1, 3)


def test_an_empty_sweep_range_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"x.yaml: cap_max: the capacity sweep range\(cap_min, cap_max\)"):
        _config(tmp_path, (5, 5))
    assert map_protocol(_config(tmp_path, (5, 5), include_cap_max=True)).capacities == (5, 5)


def test_scalars_are_written_at_the_step_given(tmp_path: Path) -> None:
    steps: list[tuple[str, int]] = []

    class _StepWriter(_Writer):
        def add_scalar(self, name: str, value: float, step: int) -> None:
            steps.append((name, step))

    cfg = _config(tmp_path, (1, 5))
    score_epoch(cfg, map_protocol(cfg), EVAL_DATA / "predict.csv", 3, _StepWriter(), 120, val_loss=0.25)
    # The epoch names the files; the x-axis is the global step, the training scalars' axis.
    assert steps == [("val/loss", 120), ("val/mAP", 120)]
    assert (tmp_path / "out" / "eval_epoch3.json").is_file()


def _element(video: str, time: int, labels: list[dict]) -> dict:
    return {"video": video, "time": time, "labels": labels}


def test_describe_boxes_tells_ground_truth_from_detector_and_merged_from_per_row() -> None:
    person = {"bounding_box": [0.1, 0.1, 0.5, 0.9], "label": [0], "person_id": [0]}
    labelled = {"bounding_box": [0.1, 0.1, 0.5, 0.9], "label": [3, 11], "person_id": [7]}
    scored = {**labelled, "label": [0], "person_id": [0], "score": 0.8}
    merged_gt = [_element("A", 902, [labelled]), _element("A", 903, [labelled, person])]
    per_row_det = [_element("A", 902, [person]), _element("A", 902, [person]), _element("A", 903, [scored])]
    assert scoring.describe_boxes("x/gt.pkl", merged_gt) == \
        "ground-truth boxes of gt.pkl (merged file: one element per keyframe)"
    assert scoring.describe_boxes("det.pkl", per_row_det) == \
        "detector boxes of det.pkl (per-row file: 3 elements for 2 keyframes)"


def test_the_plot_and_the_log_say_which_boxes_were_scored(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    titles = []
    monkeypatch.setattr(scoring, "save_plot", lambda path, result, title=None: titles.append(title))
    caplog.set_level(logging.INFO, logger="engine.scoring")
    boxes = "detector boxes of det.pkl (merged file: one element per keyframe)"
    cfg = _config(tmp_path, (1, 5))
    score_epoch(cfg, map_protocol(cfg), EVAL_DATA / "predict.csv", 2, _Writer(), 20, boxes=boxes)
    assert titles == [f"predict.csv: {boxes}"]
    assert f"epoch 2 evaluation of predict.csv: {boxes} (SFMViT sweep K = 1..4, original ties;" in caplog.text


def test_scoring_leaves_torch_its_thread_count(tmp_path: Path) -> None:
    # The sweep's parallel numba kernels (OpenMP layer) set the process's OpenMP thread count; the
    # process that scores must train on with the threads it had (same sums as the other ranks).
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _score(_config(tmp_path, (1, 6)))
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(threads)
