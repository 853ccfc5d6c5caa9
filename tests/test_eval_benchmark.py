"""benchmarks/capacity_sweep.py on a small generated set: it runs, reports the ratio, and curves agree."""
from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks.capacity_sweep import generate_dataset, main
from evaluation.frame_map import FrameMapResult
from formats.eval_csv import read_ground_truth_csv, read_predict_csv


def test_generated_data_is_readable(tmp_path: Path) -> None:
    labelmap, gt_path, predict_path = generate_dataset(tmp_path, seed=1, keyframes=6)
    preds = read_predict_csv(predict_path)
    assert len(preds) % 50 == 0 and set(preds.class_id.tolist()) == set(range(1, 51))
    assert len(read_ground_truth_csv(gt_path)) > 0 and labelmap.is_file()


def test_benchmark_small_run(capsys: pytest.CaptureFixture) -> None:
    assert main(["--keyframes", "30", "--cap-range", "5", "200", "--brute-samples", "4"]) == 0
    out = capsys.readouterr().out
    assert "EXTRAPOLATED" in out and "speed-up" in out and "max |difference|" in out


def test_benchmark_fails_when_curves_differ(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    import benchmarks.capacity_sweep as bench

    honest = bench.evaluate_at_capacity

    def off_by_a_bit(data, capacity):
        result = honest(data, capacity)
        return FrameMapResult(result.average_precision, result.mean_ap + 1e-6, result.num_kept,
                              result.num_true_positives)

    monkeypatch.setattr(bench, "evaluate_at_capacity", off_by_a_bit)
    assert bench.main(["--keyframes", "10", "--cap-range", "5", "50", "--brute-samples", "3"]) == 1
    assert "FAIL" in capsys.readouterr().out
