"""common/cli.py: the one convention of every command line (error line, exit status, --debug, logging)."""
from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from common.atomic import DiskFullError
from common.cli import BAD_INPUT, FAILED, run_main
from common.errors import FormatError

ROOT = Path(__file__).resolve().parents[1]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m x")
    parser.add_argument("--debug", action="store_true")
    return parser


def _raising(error: BaseException):
    def body(args: argparse.Namespace) -> int:
        raise error
    return body


@pytest.mark.parametrize("error", [FormatError("a.csv", "bad field", line=3), FileNotFoundError("no such file b.pkl"),
                                   DiskFullError("disk full while writing c.pkl"), ValueError("first\n  second")])
def test_a_known_error_is_one_line_and_exit_2(capsys: pytest.CaptureFixture, monkeypatch, error: Exception) -> None:
    monkeypatch.delenv("SFMVIT_DEBUG", raising=False)
    assert run_main(_parser().parse_args, _raising(error), []) == BAD_INPUT == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: ") and "Traceback" not in err, err


def test_named_failures_exit_1_and_other_errors_are_not_hidden(capsys: pytest.CaptureFixture, monkeypatch) -> None:
    monkeypatch.delenv("SFMVIT_DEBUG", raising=False)
    assert run_main(_parser().parse_args, _raising(RuntimeError("video v.mp4 unreadable")), [],
                    failures=(RuntimeError,)) == FAILED == 1
    assert capsys.readouterr().err == "error: video v.mp4 unreadable\n"
    with pytest.raises(KeyError):  # a bug, not a bad input: its traceback stays
        run_main(_parser().parse_args, _raising(KeyError("x")), [])
    assert run_main(_parser().parse_args, lambda args: 0, []) == 0


def test_debug_flag_or_environment_shows_the_traceback(monkeypatch) -> None:
    monkeypatch.delenv("SFMVIT_DEBUG", raising=False)
    with pytest.raises(ValueError, match="bad"):
        run_main(_parser().parse_args, _raising(ValueError("bad")), ["--debug"])
    monkeypatch.setenv("SFMVIT_DEBUG", "1")
    with pytest.raises(ValueError, match="bad"):
        run_main(_parser().parse_args, _raising(ValueError("bad")), [])


def test_usage_errors_stay_argparse_exit_2(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as info:
        run_main(_parser().parse_args, lambda args: 0, ["--no-such-option"])
    assert info.value.code == 2 and "python -m x: error:" in capsys.readouterr().err


def test_the_helper_imports_the_standard_library_only() -> None:
    # Every command line imports it before parsing: it must not slow --help down.
    code = "import sys, common.cli; print(sorted({'numpy', 'torch', 'yaml', 'PIL'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stderr


@pytest.mark.parametrize("module", ["datasets.frame_store", "tools.precompute_vit_cache"])
def test_command_lines_that_used_to_load_torch_before_parsing_no_longer_do(module: str) -> None:
    # --help answered in 4.6 s and 13.5 s while they imported torch at the top (benchmarks/cli_startup.py).
    code = f"import sys, {module}; print('torch' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0 and done.stdout.strip() == "False", done.stderr
