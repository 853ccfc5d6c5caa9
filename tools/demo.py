"""`make demo`: the end-to-end pipeline on the embedded synthetic Chaotic World dataset, as timed stages.

This module is the command line only, so that ``--help`` and argument errors answer at once; the stages
(``tools/demo_stages.py``) and the report (``tools/demo_report.py``) are imported after parsing.
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from common.cli import run_main
from tools.demo_record import STAGE_NAMES

DEFAULT_OUT = "runs/demo"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tools.demo",
                                     description="Run the demo pipeline on the synthetic Chaotic World dataset.")
    parser.add_argument("--out", default=DEFAULT_OUT,
                        help="output folder (default runs/demo; runs/demo_ava with --dataset ava)")
    parser.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    parser.add_argument("--preset", default="demo", help="synthetic dataset preset: demo (default) or tiny")
    parser.add_argument("--train-videos", type=int, help="override the preset's train clips")
    parser.add_argument("--val-videos", type=int, help="override the preset's validation clips")
    parser.add_argument("--seconds", type=int, help="override the preset's clip length (s)")
    parser.add_argument("--workers", type=int, default=2, help="parallel processes (default 2)")
    parser.add_argument("--stages", nargs="+", metavar="STAGE",
                        help=f"run only these stages (of {list(STAGE_NAMES)})")
    parser.add_argument("--dataset", choices=("cw", "ava"), default="cw",
                        help="cw (default): the Chaotic World demo; ava: synthetic AVA v2.2 files and "
                             "ACAR-Net's tiny model (tools/demo_ava.py; --out, --seed, --train-videos, "
                             "--val-videos, --seconds, --workers and --epochs apply)")
    parser.add_argument("--epochs", type=int, default=None, help="--dataset ava: training epochs (default: config)")
    return parser


# What makes the demo exit 1 with one line: a stage that failed (a training run, an extraction) or
# met a folder it must not touch.
_FAILURES = (ValueError, OSError, RuntimeError)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The arguments; a preset size that cannot be generated is an argument error (exit 2)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.dataset == "cw":
        from datasets.synthetic import resolve_config

        try:
            resolve_config(args.preset, workers=args.workers, **_overrides(args))
        except ValueError as error:
            parser.error(str(error))
    return args


def _overrides(args: argparse.Namespace) -> dict[str, int]:
    return {key: getattr(args, key) for key in ("train_videos", "val_videos", "seconds")
            if getattr(args, key) is not None}


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point: run the stages and print the summary table."""
    return run_main(parse_args, _run, argv, failures=_FAILURES)


def _run(args: argparse.Namespace) -> int:
    # Heavy imports (torch, ultralytics, the engine) only now that the arguments are known to be good.
    if args.dataset == "ava":
        from tools.demo_ava import AvaDemoOptions, format_ava_summary, run_ava_demo

        # Its own default folder: runs/demo/data belongs to the Chaotic World demo.
        out = Path("runs/demo_ava") if args.out == DEFAULT_OUT else Path(args.out)
        summary = run_ava_demo(AvaDemoOptions(out=out, seed=args.seed, nproc=args.workers, epochs=args.epochs,
                                              **_overrides(args)))
        print(format_ava_summary(summary))
        return 0
    from tools.demo_record import SUMMARY_NAME
    from tools.demo_report import format_summary
    from tools.demo_stages import DemoContext, run_demo

    ctx = DemoContext(out=Path(args.out), seed=args.seed, preset=args.preset, overrides=_overrides(args),
                      workers=args.workers)
    result = run_demo(ctx, only=args.stages)
    print(format_summary(result, ctx.out / SUMMARY_NAME))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
