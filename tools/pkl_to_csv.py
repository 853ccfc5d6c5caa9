"""Annotation pkl -> the evaluator's ground-truth csv (one line per box and label, labels + 1)."""
from __future__ import annotations

import argparse
import logging
from collections.abc import Sequence
from pathlib import Path

from common.cli import run_main
from formats.annotation_pkl import load_annotation_pkl
from formats.eval_csv import write_ground_truth_csv
from tools.gt_csv import pkl_to_ground_truth

LOGGER = logging.getLogger(__name__)


def convert_pkl_to_csv(pkl_path: str | Path, out_csv: str | Path) -> int:
    """Write the ground truth held by an annotation pkl in the evaluator's csv format, atomically.

    Lines: ``video_id,%04d time,x1,y1,x2,y2,label+1,person_id``, no header, one per (box, label)
    in element order. A per-row pkl gives back the lines of its csv; a merged pkl gives each
    distinct (keyframe, person box, label) once.

    Args:
        pkl_path: annotation pkl (trusted: unpickling executes code).
        out_csv: ground-truth csv to write.

    Returns:
        The number of lines written.

    Raises:
        FileNotFoundError: the pkl is missing.
        FormatError: the pkl breaks the schema (element index named).
    """
    annotations = load_annotation_pkl(pkl_path)
    ground_truth = pkl_to_ground_truth(annotations.elements)
    write_ground_truth_csv(out_csv, ground_truth)
    LOGGER.info("wrote %s: %d lines from %d elements", out_csv, len(ground_truth.video), len(annotations.elements))
    return len(ground_truth.video)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.pkl_to_csv",
        description="Annotation pkl -> evaluator ground-truth csv (labels + 1, time %04d, no header).",
    )
    parser.add_argument("--pkl", required=True, help="annotation pkl (only load files you trust)")
    parser.add_argument("--out", required=True, help="ground-truth csv to write")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the number of lines written."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    count = convert_pkl_to_csv(args.pkl, args.out)
    print(f"{args.out}: {count} ground-truth lines")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
