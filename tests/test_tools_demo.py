"""The demo orchestrator on the tiny synthetic preset: stages, summary.json, skipping completed work."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from datasets.synthetic import read_manifest
from formats.annotation_pkl import load_annotation_pkl
from formats.eval_csv import read_ground_truth_csv
from tools.demo import DATA_STAGES, DemoContext, format_summary, run_demo


def _context(out: Path, seed: int = 0) -> DemoContext:
    return DemoContext(out=out, seed=seed, preset="tiny", workers=1)


def test_demo_prepares_the_dataset_end_to_end_and_skips_on_rerun(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = run_demo(_context(out), only=DATA_STAGES)
    assert list(result["timings_s"]) == list(DATA_STAGES)
    data = out / "data" / "AR_ava_format"
    train = load_annotation_pkl(data / "cw_data_train1fps.pkl")
    assert train.elements and len(train.classes) == 50
    ground_truth = read_ground_truth_csv(data / "chaos_test_t_+1.csv")
    assert len(ground_truth.video) == result["stages"]["annotations"]["ground_truth_rows"] > 0
    assert result["stages"]["check"]["ok"] is True
    summary = json.loads((out / "summary.json").read_text())
    assert set(summary["stages"]) == {"generate", "extract_frames", "annotations", "check"}
    assert summary["stages"]["generate"]["videos"] == 2 and summary["stages"]["generate"]["skipped"] is False
    table = format_summary(result, out / "summary.json")
    assert "fighting" in table and "extract_frames" in table

    again = run_demo(_context(out), only=DATA_STAGES)
    assert again["stages"]["generate"]["skipped"] is True
    assert again["stages"]["extract_frames"]["extracted"] == 0

    # Another seed regenerates, and the old frames go with the old videos.
    other = run_demo(_context(out, seed=1), only=DATA_STAGES)
    assert other["stages"]["generate"]["skipped"] is False
    videos = set(read_manifest(out / "data")["video_ids"])
    assert {path.name for path in (out / "data" / "frames").iterdir()} == videos


def test_demo_refuses_to_wipe_a_foreign_data_folder(tmp_path: Path) -> None:
    data = tmp_path / "demo" / "data"
    data.mkdir(parents=True)
    (data / "my_thesis.tex").write_text("precious")
    with pytest.raises(FileExistsError, match="my_thesis.tex"):
        run_demo(_context(tmp_path / "demo"), only=["generate"])
    assert (data / "my_thesis.tex").exists()
    assert "error" in json.loads((tmp_path / "demo" / "summary.json").read_text())


def test_unknown_stage_is_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="trainn"):
        run_demo(_context(tmp_path), only=["trainn"])
