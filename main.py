"""Train or evaluate the action model from a YAML config: ``python main.py --config X.yaml [...]``."""
from __future__ import annotations

import argparse
import sys

from common.cli import run_main
from engine.launch_args import build_parser


def main(argv: list[str] | None = None) -> int:
    """Parse first (``--help`` and argument errors need no torch), then validate and launch.

    Exit status 2: the config, the data or the layout is wrong; 1: a worker failed (``engine.launch.run``).
    """
    return run_main(build_parser().parse_args, _launch, argv)


def _launch(args: argparse.Namespace) -> int:
    from engine.launch import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
