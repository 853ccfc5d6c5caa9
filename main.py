"""Train or evaluate the action model from a YAML config: ``python main.py --config X.yaml [...]``."""
from __future__ import annotations

import sys

from engine.launch_args import build_parser


def main(argv: list[str] | None = None) -> int:
    """Parse first (``--help`` and argument errors need no torch), then validate and launch."""
    args = build_parser().parse_args(argv)
    from engine.launch import run

    return run(args)


if __name__ == "__main__":
    sys.exit(main())
