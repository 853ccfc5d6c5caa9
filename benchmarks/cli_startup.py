"""Benchmark: how fast every command line answers ``--help`` and a bad argument (target: under 2 s each).

    python benchmarks/cli_startup.py [--repeats 3] [--budget 2.0] [--only main.py tools.demo ...]

Each command runs in a fresh interpreter from the repository root; the time is the best of ``--repeats``
runs, so a busy machine inflates it less. The baseline measured in the same run is a bare ``python -c
pass``: the ratio column says how many interpreter start-ups a command's ``--help`` costs. The exit status
is 1 when a command exceeds the budget, 2 when one fails to answer ``--help`` with status 0 or a bad
argument with status 2.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # runnable as a script: the project packages live beside benchmarks/

from common.cli import run_main  # noqa: E402

# Every command line of the project: scripts by path, modules by dotted name.
COMMANDS = ("main.py", "calc_mAP.py", "datasets.frame_store", "datasets.synthetic", "detect.convert",
            "detect.infer", "detect.quality", "detect.train", "tools.ava_frames", "tools.ava_to_pkl",
            "tools.check_data", "tools.csv_to_pkl", "tools.demo", "tools.ensemble", "tools.extract_frames",
            "tools.gt_csv", "tools.pkl_to_csv", "tools.precompute_vit_cache", "tools.prepare_synthetic",
            "tools.video_demo")
BAD_ARGUMENT = "--no-such-option"


def command_line(command: str) -> list[str]:
    """The argv that runs ``command`` (a script path or a module name)."""
    return [sys.executable, command] if command.endswith(".py") else [sys.executable, "-m", command]


def best_time(argv: list[str], repeats: int) -> tuple[float, int]:
    """``(best wall seconds, exit status of the last run)`` of ``argv`` run ``repeats`` times."""
    best, status = float("inf"), 0
    for _ in range(repeats):
        start = time.perf_counter()
        status = subprocess.run(argv, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode
        best = min(best, time.perf_counter() - start)
    return best, status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget", type=float, default=2.0, help="seconds allowed per command (default 2)")
    parser.add_argument("--only", nargs="+", choices=COMMANDS, metavar="COMMAND", help="time only these")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Time every command line; returns the exit status (module docstring)."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    baseline, _ = best_time([sys.executable, "-c", "pass"], args.repeats)
    print(f"baseline: python -c pass {baseline:.3f} s (best of {args.repeats})")
    print(f"{'command':<28}{'--help s':>10}{'x base':>8}{'bad arg s':>11}  verdict")
    slow, broken = [], []
    for command in args.only or COMMANDS:
        help_s, help_status = best_time(command_line(command) + ["--help"], args.repeats)
        bad_s, bad_status = best_time(command_line(command) + [BAD_ARGUMENT], args.repeats)
        verdict = "ok"
        if help_status != 0 or bad_status != 2:
            verdict = f"FAIL (status {help_status} / {bad_status})"
            broken.append(command)
        elif max(help_s, bad_s) > args.budget:
            verdict = f"SLOW (> {args.budget:g} s)"
            slow.append(command)
        print(f"{command:<28}{help_s:>10.2f}{help_s / baseline:>8.1f}{bad_s:>11.2f}  {verdict}")
    print(f"{len(args.only or COMMANDS) - len(slow) - len(broken)} within {args.budget:g} s, {len(slow)} slow: "
          f"{', '.join(slow) or '-'}; {len(broken)} failing: {', '.join(broken) or '-'}")
    return 2 if broken else 1 if slow else 0


if __name__ == "__main__":
    sys.exit(main())
