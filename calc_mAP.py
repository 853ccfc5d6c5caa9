"""Command line for the AVA frame-mAP of a predict.csv, at one capacity or swept over a range.

    python calc_mAP.py -l LABELMAP.pbtxt -g GT.csv -d PREDICT.csv [-e EXCLUSIONS.csv]
        [--capacity K | --cap-range MIN MAX] [--ties original|stable] [--json OUT.json] [--plot OUT.png]

By default equal scores are ordered exactly as the original evaluator ordered them (``--ties original``),
so the mAP of the original's own per-row predict files is comparable with the published figures;
``--ties stable`` orders them by predict-file row instead. Either way the summary shows the tie band, the
same interval for both: the lowest and highest mAP over every order of equal scores (which tied rows the
capacity cut keeps, which tied detection takes a box, where tied true positives rank), exact or, where
groups of equal scores straddle the cut, guaranteed bounds (docs/protocol.md, section 3).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

# Runnable from any working directory: the evaluation and formats packages live beside this file.
sys.path.insert(0, str(Path(__file__).resolve().parent))

from common.cli import KNOWN_ERRORS, run_main  # noqa: E402
from evaluation import DEFAULT_CAPACITY, format_summary, run_evaluation, save_plot, write_json  # noqa: E402
from evaluation.api import DEFAULT_TIES, TIES  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="AVA frame-mAP@0.5IoU of a predict.csv (official protocol).")
    parser.add_argument("-l", "--labelmap", required=True, help="label map pbtxt (list_action.pbtxt)")
    parser.add_argument("-g", "--groundtruth", required=True, help="ground-truth csv (chaos_test_t_+1.csv)")
    parser.add_argument("-d", "--detections", required=True, help="predict.csv")
    parser.add_argument("-e", "--exclusions", default=None, help="optional video_id,timestamp csv")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--capacity", type=int, default=DEFAULT_CAPACITY, metavar="K",
                      help=f"rows kept per keyframe over all classes; 0 = unlimited (default {DEFAULT_CAPACITY})")
    mode.add_argument("--cap-range", type=int, nargs=2, default=None, metavar=("MIN", "MAX"),
                      help="sweep every capacity in MIN..MAX (inclusive) in one pass; report the best")
    parser.add_argument("--ties", choices=TIES, default=DEFAULT_TIES,
                        help="order of equal scores: 'original' = exactly the original evaluator's (numpy 1.21.6 "
                             f"introsort; reproduces published figures), 'stable' = earlier file row first "
                             f"(default {DEFAULT_TIES})")
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json", help="write the result as JSON")
    parser.add_argument("--plot", type=Path, default=None, metavar="OUT.png",
                        help="plot mAP vs capacity (sweep) and per-class AP")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress")
    args = parser.parse_args(argv)
    if args.capacity < 0:
        parser.error(f"--capacity must be >= 0 (0 = unlimited), got {args.capacity}")
    if args.cap_range is not None and not 1 <= args.cap_range[0] <= args.cap_range[1]:
        parser.error(f"--cap-range needs 1 <= MIN <= MAX, got {args.cap_range[0]} {args.cap_range[1]}")
    return args


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints the summary. A bad input file: one line, exit status 1 (as before common/cli.py)."""
    return run_main(parse_args, _run, argv, failures=KNOWN_ERRORS,
                    log_level=lambda args: logging.INFO if args.verbose else logging.WARNING)


def _run(args: argparse.Namespace) -> int:
    result = run_evaluation(args.labelmap, args.groundtruth, args.detections, args.exclusions,
                            capacity=args.capacity, cap_range=tuple(args.cap_range) if args.cap_range else None,
                            ties=args.ties)
    if args.json is not None:
        write_json(args.json, result)
    if args.plot is not None:
        save_plot(args.plot, result, title=f"{Path(args.detections).name} vs {Path(args.groundtruth).name}")
    print(format_summary(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
