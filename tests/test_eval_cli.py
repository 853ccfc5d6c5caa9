"""calc_mAP.py: hand-computed fixture end to end, JSON contract, plots, and bad input messages.

Fixture (tests/data/eval): classes 1 stand, 2 walk, 3 run (no ground truth); predict rows
r1 vidA TP c1 .90, r2 vidA c3 .80, r3 vidA TP c2 .30, r4 vidA FP c2 .70, r5 vidA c9 .99 (not in the
label map: dropped before the cut), r6 vidB TP c1 .50, r7 vidC FP c1 .95 (no ground truth there),
r8 vidB inverted c1 .99 (uses a slot, dropped). Ground truth: c1 at vidA and vidB, c2 at vidA.

- unlimited / K >= 4: c1 = FP(r7), TP(r1), TP(r6) with 2 GT -> 1/2 * 2/3 + 1/2 * 2/3 = 2/3;
  c2 = FP(r4), TP(r3) -> 1/2; mAP = 7/12.
- K = 1: vidA keeps r1, vidB keeps r8 (dropped) -> c1 = FP(r7), TP(r1) -> 1/4; c2 = 0; mAP 1/8.
- K = 2 and 3: c1 = 2/3, c2: r3 is cut (r4 alone at K=3 is an FP) -> 0; mAP = 1/3.
- exclusions (vidB 0005): c1 = FP(r7), TP(r1) with 1 GT -> 1/2; c2 = 1/2; mAP = 1/2.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import calc_mAP

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "tests" / "data" / "eval"
LABELMAP, GT, PREDICT, EXCLUDE = (DATA / name for name in ("list_action.pbtxt", "gt.csv", "predict.csv", "exclude.csv"))
EXPECTED_BY_K = {1: 1 / 8, 2: 1 / 3, 3: 1 / 3, 4: 7 / 12, 5: 7 / 12}


def _no_nan(text: str) -> dict:
    def refuse(constant: str) -> None:
        raise AssertionError(f"JSON holds {constant}")
    return json.loads(text, parse_constant=refuse)


def _cli(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the CLI as a user would, from a working directory outside the repository."""
    command = [sys.executable, str(ROOT / "calc_mAP.py"), "-l", str(LABELMAP), "-g", str(GT), *extra]
    return subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=120)


def test_single_run_from_another_cwd(tmp_path: Path) -> None:
    done = _cli(tmp_path, "-d", str(PREDICT), "--json", "out.json", "--plot", "out.png")
    assert done.returncode == 0, done.stderr
    payload = _no_nan((tmp_path / "out.json").read_text())
    assert payload["mAP"] == pytest.approx(7 / 12, abs=1e-12)
    assert list(payload["per_class"]) == ["1", "2", "3"]
    assert payload["per_class"]["1"] == pytest.approx(2 / 3) and payload["per_class"]["2"] == pytest.approx(0.5)
    assert payload["per_class"]["3"] is None
    assert payload["capacity"] == 50 and "sweep" not in payload
    assert payload["counts"]["detection_rows_outside_label_map"] == 1
    assert (tmp_path / "out.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "58.33%" in done.stdout and "stand" in done.stdout
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json", "out.png"]  # no temp files left


def test_sweep_from_another_cwd(tmp_path: Path) -> None:
    done = _cli(tmp_path, "-d", str(PREDICT), "--cap-range", "1", "5", "--json", "sweep.json", "--plot", "sweep.png")
    assert done.returncode == 0, done.stderr
    payload = _no_nan((tmp_path / "sweep.json").read_text())
    sweep = payload["sweep"]
    assert list(sweep["mAP_by_capacity"]) == ["1", "2", "3", "4", "5"]
    for key, value in sweep["mAP_by_capacity"].items():
        assert isinstance(value, float) and value == pytest.approx(EXPECTED_BY_K[int(key)], abs=1e-12)
    assert sweep["best_capacity"] == 4 and isinstance(sweep["best_capacity"], int)
    assert sweep["best_mAP"] == sweep["mAP_by_capacity"]["4"] == max(sweep["mAP_by_capacity"].values())
    assert payload["mAP"] == sweep["best_mAP"] and payload["per_class"]["3"] is None
    assert (tmp_path / "sweep.png").stat().st_size > 0
    assert "best K = 4" in done.stdout


@pytest.mark.parametrize("capacity,expected", [(1, 1 / 8), (2, 1 / 3), (3, 1 / 3), (4, 7 / 12), (0, 7 / 12)])
def test_capacity_values(tmp_path: Path, capsys: pytest.CaptureFixture, capacity: int, expected: float) -> None:
    out = tmp_path / "r.json"
    argv = ["-l", str(LABELMAP), "-g", str(GT), "-d", str(PREDICT), "--capacity", str(capacity), "--json", str(out)]
    assert calc_mAP.main(argv) == 0
    payload = _no_nan(out.read_text())
    assert payload["mAP"] == pytest.approx(expected, abs=1e-12)
    assert payload["capacity"] == capacity
    assert "frame-mAP" in capsys.readouterr().out


def test_exclusions(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    argv = ["-l", str(LABELMAP), "-g", str(GT), "-d", str(PREDICT), "-e", str(EXCLUDE), "--json", str(out)]
    assert calc_mAP.main(argv) == 0
    payload = _no_nan(out.read_text())
    assert payload["mAP"] == pytest.approx(0.5, abs=1e-12)
    assert payload["per_class"] == {"1": pytest.approx(0.5), "2": pytest.approx(0.5), "3": None}
    assert payload["counts"]["gt_rows_excluded"] == 1


def test_padded_and_plain_times_are_one_keyframe(tmp_path: Path) -> None:
    (tmp_path / "gt.csv").write_text("vidA,902,0.1,0.1,0.4,0.9,1,0\n")
    (tmp_path / "p.csv").write_text("vidA,0902,0.100,0.100,0.400,0.900,1,0.500\n")
    out = tmp_path / "r.json"
    argv = ["-l", str(LABELMAP), "-g", str(tmp_path / "gt.csv"), "-d", str(tmp_path / "p.csv"), "--json", str(out)]
    assert calc_mAP.main(argv) == 0
    assert _no_nan(out.read_text())["mAP"] == 1.0


@pytest.mark.parametrize("which,content,fragment", [
    ("predict", "vidA,902,0.1,0.1,0.4,0.9,1,0.5\nvidA,902,0.1,0.1,0.4,0.9,1\n", "line 2"),
    ("predict", "vidA,902,0.1,0.1,0.4,0.9,1,0.5\nvidA,902,0.1,0.1,0.4,0.9,1.5,0.5\n", "line 2"),
    ("predict", "vidA,902,0.1,0.1,0.4,0.9,1,0.5\n\nvidA,902,0.1,zero,0.4,0.9,1,0.5\n", "line 3"),
    ("predict", "", "empty file"),
    ("gt", "vidA,0902,0.1,0.1,0.4,0.9,1,0\nvidA,0902,0.1,0.1,0.4,0.9,one,0\n", "line 2"),
])
def test_bad_input_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture, which: str, content: str,
                                       fragment: str) -> None:
    bad = tmp_path / f"bad_{which}.csv"
    bad.write_text(content)
    gt, predict = (GT, bad) if which == "predict" else (bad, PREDICT)
    assert calc_mAP.main(["-l", str(LABELMAP), "-g", str(gt), "-d", str(predict)]) == 1
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and str(bad) in err and fragment in err


def test_bad_input_from_a_subprocess_has_no_traceback(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    done = _cli(tmp_path, "-d", str(missing))
    assert done.returncode == 1
    assert "Traceback" not in done.stderr and "nope.csv" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_capacity_and_range_are_exclusive(tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as info:
        calc_mAP.parse_args(["-l", "x", "-g", "y", "-d", "z", "--capacity", "3", "--cap-range", "1", "2"])
    assert info.value.code == 2
    with pytest.raises(SystemExit):
        calc_mAP.parse_args(["-l", "x", "-g", "y", "-d", "z", "--cap-range", "5", "2"])


def test_negative_capacity_is_an_argument_error(capsys: pytest.CaptureFixture) -> None:
    # -3 used to mean "unlimited" without a word (capacity < 1 keeps all); 0 is the spelling for that.
    with pytest.raises(SystemExit) as info:
        calc_mAP.parse_args(["-l", "x", "-g", "y", "-d", "z", "--capacity", "-3"])
    assert info.value.code == 2
    assert "--capacity must be >= 0 (0 = unlimited), got -3" in capsys.readouterr().err


def test_tie_protocol_choice(capsys: pytest.CaptureFixture) -> None:
    assert calc_mAP.parse_args(["-l", "x", "-g", "y", "-d", "z"]).ties == "original"
    assert calc_mAP.parse_args(["-l", "x", "-g", "y", "-d", "z", "--ties", "stable"]).ties == "stable"
    with pytest.raises(SystemExit):
        calc_mAP.parse_args(["-l", "x", "-g", "y", "-d", "z", "--ties", "random"])
