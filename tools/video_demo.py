"""Video demo: raw video -> frames -> person detector -> action model -> mp4 with boxes and top-3 actions.

This module is the command line and the inputs it resolves, so that ``--help`` answers at once; the
pipeline (``tools/video_annotate.py``: torch, OpenCV, ultralytics) is imported after parsing. Its public
names stay importable from here, loaded on first use.
"""
from __future__ import annotations

import argparse
import importlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from formats.cli import run_main
from formats.official_csv import read_official_csv

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_OUT = REPO_ROOT / "runs" / "demo"
# Chaotic World frames: 25 fps, 320x180 (what the detector and the action model were trained on).
FRAME_RATE = 25
FRAME_SIZE = (320, 180)
TOP_K = 3
# Where `make demo` (tools/demo.py) leaves what the video demo reuses, relative to its output folder.
DEMO_DETECTOR = Path("detector") / "train" / "weights" / "best.pt"
DEMO_ACTION = Path("action")
DEMO_CONFIG_COPY = "demo_config.yaml"
# BGR colours (cv2 draws in the frame's channel order, and frames here are bgr24 throughout).
PALETTE = ((0, 200, 255), (255, 160, 0), (80, 220, 80), (200, 80, 255), (0, 90, 255), (255, 255, 0))


@dataclass
class DemoInputs:
    """What the video demo runs on: a video, where the boxes come from, and the action model."""

    video: Path
    config: Path
    checkpoint: Path
    detector: Path | None = None
    boxes_pkl: Path | None = None

def demo_defaults(demo_out: str | Path = DEMO_OUT,
                  needed: Iterable[str] = ("video", "detector", "config", "checkpoint")) -> dict[str, Path]:
    """The inputs `make demo` leaves behind: first val video, trained detector, action config and checkpoint.

    Args:
        demo_out: the demo's output folder (``runs/demo``).
        needed: which of ``video``, ``detector``, ``config``, ``checkpoint`` must exist.

    Returns:
        ``{name: path}`` for the ``needed`` names, all existing.

    Raises:
        FileNotFoundError: something needed is missing (the message says to run ``make demo`` first).
    """
    demo_out, needed = Path(demo_out), list(needed)
    hint = f"run `make demo` first (it writes them under {demo_out}), or pass the paths explicitly"
    detector = demo_out / DEMO_DETECTOR
    # ultralytics writes best.pt when a validation ran (always, in the demo); last.pt otherwise.
    paths = {"detector": detector if detector.is_file() else detector.with_name("last.pt"),
             "config": demo_out / DEMO_ACTION / DEMO_CONFIG_COPY}
    if "video" in needed:
        csv = demo_out / "data" / "AR_ava_format" / "chaos_test_1fps.csv"
        rows = read_official_csv(csv) if csv.is_file() else []
        paths["video"] = demo_out / "data" / "videos" / f"{rows[0].video}.mp4" if rows else csv
    summary = demo_out / DEMO_ACTION / "run_summary.json"
    checkpoints = json.loads(summary.read_text()).get("checkpoints") if summary.is_file() else None
    paths["checkpoint"] = Path(checkpoints[-1]) if checkpoints else summary
    missing = [f"{name} ({paths[name]})" for name in needed if not paths[name].is_file()]
    if missing:
        raise FileNotFoundError(f"the outputs of make demo are missing: {', '.join(missing)}; {hint}")
    return {name: paths[name] for name in needed}


def __getattr__(name: str) -> object:
    """The pipeline's names (``tools.video_annotate``), imported on first access."""
    module = importlib.import_module("tools.video_annotate")
    try:
        return getattr(module, name)
    except AttributeError:
        raise AttributeError(f"module 'tools.video_demo' has no attribute {name!r}") from None


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.video_demo",
        description="Annotate a video with person boxes and their top-3 actions (defaults: the outputs of make demo).")
    parser.add_argument("--video", help="input video (default: the first validation video of the demo dataset)")
    parser.add_argument("--out", required=True, help="annotated mp4 to write (a .json report goes beside it)")
    boxes = parser.add_mutually_exclusive_group()
    boxes.add_argument("--detector", help="YOLO .pt (default: the detector trained by make demo)")
    boxes.add_argument("--boxes-pkl", help="annotation/proposals pkl whose boxes to use instead of a detector")
    parser.add_argument("--config", help="action model config (default: the one make demo trained)")
    parser.add_argument("--checkpoint", help="action model checkpoint (default: make demo's last one)")
    parser.add_argument("--demo-out", default=str(DEMO_OUT), help="make demo's output folder (for the defaults)")
    parser.add_argument("--conf", type=float, default=0.3, help="detector confidence threshold (default 0.3)")
    parser.add_argument("--imgsz", type=int, help="detector inference size (default: the frame size, 320)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, 0, ...")
    parser.add_argument("--display", choices=("original", "frames"), default="original",
                        help="draw on the video's own frames (default) or on the 320x180 model frames")
    parser.add_argument("--labelmap", help="pbtxt of the action classes (default: the 50 Chaotic World classes)")
    parser.add_argument("--work", help="keep the extracted frames and pkls in this folder")
    return parser


def resolve_inputs(args: argparse.Namespace) -> DemoInputs:
    """Fill the inputs not given on the command line from make demo's outputs.

    Raises:
        FileNotFoundError: a default is needed and make demo has not produced it.
    """
    given = {"video": args.video, "config": args.config, "checkpoint": args.checkpoint}
    if not args.boxes_pkl:
        given["detector"] = args.detector
    needed = [name for name, value in given.items() if value is None]
    chosen = {name: Path(value) for name, value in given.items() if value is not None}
    chosen.update(demo_defaults(args.demo_out, needed) if needed else {})
    return DemoInputs(video=chosen["video"], config=chosen["config"], checkpoint=chosen["checkpoint"],
                      detector=chosen.get("detector"), boxes_pkl=Path(args.boxes_pkl) if args.boxes_pkl else None)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints where the video and its report went. A missing or bad input: one line, exit 1."""
    return run_main(build_parser().parse_args, _run, argv, failures=(FileNotFoundError, ValueError))


def _run(args: argparse.Namespace) -> int:
    from tools.video_annotate import run_video_demo

    inputs = resolve_inputs(args)
    report = run_video_demo(inputs, args.out, args.work, args.conf, args.device, args.display, args.labelmap,
                            args.imgsz)
    print(f"{report['out']}: {report['frames']} frames {report['size'][0]}x{report['size'][1]}, "
          f"{report['keyframes_count']} keyframes, {report['boxes']} boxes; report {Path(report['out']).with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
