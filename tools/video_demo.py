"""Video demo: any video in, who did what when out (tracked people, their top actions per second, an
annotated mp4, json, csv and a timeline picture).

This module is the command line and the inputs it resolves, so that ``--help`` answers at once; the
pipeline (``tools/video_annotate.py``: torch, OpenCV, ultralytics) is imported after parsing.
"""
from __future__ import annotations

import argparse
import json
from collections.abc import Iterable, Sequence
from pathlib import Path

from common.cli import run_main
from formats.official_csv import read_official_csv
from tools.video_options import TRACKERS, DemoInputs, DemoSettings, MissingPackageError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEMO_OUT = REPO_ROOT / "runs" / "demo"
# The config --random-weights uses when none is given: small enough for a CPU.
UNTRAINED_CONFIG = REPO_ROOT / "configs" / "tiny_cpu_synthetic.yaml"
# Where `make demo` (tools/demo.py) leaves what the video demo reuses, relative to its output folder.
DEMO_DETECTOR = Path("detector") / "train" / "weights" / "best.pt"
DEMO_ACTION = Path("action")
DEMO_CONFIG_COPY = "demo_config.yaml"
DEMO_VIDEO_CHOICE = Path("video_demo") / "chosen_video.json"


def demo_defaults(demo_out: str | Path = DEMO_OUT,
                  needed: Iterable[str] = ("video", "detector", "config", "checkpoint")) -> dict[str, Path]:
    """The inputs `make demo` leaves behind: its video (the one its video stage chose, else the first
    val video), trained detector, action config and checkpoint.

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
        chosen = demo_out / DEMO_VIDEO_CHOICE
        csv = demo_out / "data" / "AR_ava_format" / "chaos_test_1fps.csv"
        if chosen.is_file():
            paths["video"] = Path(json.loads(chosen.read_text())["video"])
        else:
            rows = read_official_csv(csv) if csv.is_file() else []
            paths["video"] = demo_out / "data" / "videos" / f"{rows[0].video}.mp4" if rows else csv
    summary = demo_out / DEMO_ACTION / "run_summary.json"
    checkpoints = json.loads(summary.read_text()).get("checkpoints") if summary.is_file() else None
    paths["checkpoint"] = Path(checkpoints[-1]) if checkpoints else summary
    missing = [f"{name} ({paths[name]})" for name in needed if not paths[name].is_file()]
    if missing:
        raise FileNotFoundError(f"the outputs of make demo are missing: {', '.join(missing)}; {hint}")
    return {name: paths[name] for name in needed}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m tools.video_demo",
        description="Track the people of a video and show what each does when: an annotated mp4, <out>.json, "
                    "<out>.csv and <out>_timeline.png (defaults: the outputs of make demo).")
    parser.add_argument("--video", help="input video, any size, frame rate and length (default: make demo's)")
    parser.add_argument("--out", required=True,
                        help="annotated mp4 to write; .json, .csv and _timeline.png go beside it")
    boxes = parser.add_mutually_exclusive_group()
    boxes.add_argument("--detector", help="YOLO .pt, a local file (COCO's yolov8n.pt works as it is; default: the "
                                          "detector make demo trained)")
    boxes.add_argument("--boxes", help="csv of given boxes: time_s or frame, x1, y1, x2, y2[, track_id] (no detector)")
    boxes.add_argument("--boxes-pkl", help="annotation/proposals pkl whose keyframes of this video give the boxes")
    parser.add_argument("--config", help="action model config (default: make demo's; with --random-weights: "
                                         "configs/tiny_cpu_synthetic.yaml)")
    parser.add_argument("--checkpoint", help="action model checkpoint (default: make demo's last one, or the "
                                             "config's resume_path / pretrain file)")
    parser.add_argument("--random-weights", action="store_true",
                        help="try the whole path untrained: random action model, and yolov8n.yaml untrained unless "
                             "--detector is given; every frame and the json say UNTRAINED WEIGHTS")
    parser.add_argument("--person-class", type=int, help="index of the person class in the detector (default: the "
                                                         "class named 'person', or the only class)")
    parser.add_argument("--tracker", choices=TRACKERS, default="bytetrack",
                        help="ultralytics tracker, its shipped settings (default bytetrack)")
    parser.add_argument("--detect-every", type=int, default=5,
                        help="run the detector on every n-th frame at 25 fps (default 5: 5 times a second)")
    parser.add_argument("--conf", type=float, default=0.3, help="detector confidence threshold (default 0.3)")
    parser.add_argument("--imgsz", type=int, help="detector inference size (default: the frame width, 320)")
    parser.add_argument("--boxes-time", choices=("seconds", "frame"),
                        help="first column of --boxes: seconds, or 0-based frames at the video's own rate "
                             "(default: the csv's header time_s/frame, else seconds)")
    parser.add_argument("--boxes-normalised", action="store_true", help="--boxes are in [0, 1] (default: pixels)")
    parser.add_argument("--top-k", type=int, default=3, help="actions listed per person (default 3)")
    parser.add_argument("--display-height", type=int,
                        help="height of the annotated video (default: the video's, clamped to 360..1080)")
    parser.add_argument("--labelmap", help="pbtxt of the action classes (default: the 50 Chaotic World classes)")
    parser.add_argument("--device", default="auto", help="auto (default), cpu, 0, cuda:1 ...")
    parser.add_argument("--seed", type=int, default=0, help="seed of --random-weights (default 0)")
    parser.add_argument("--demo-out", default=str(DEMO_OUT), help="make demo's output folder (for the defaults)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser


def resolve_inputs(args: argparse.Namespace) -> DemoInputs:
    """Fill the inputs not given on the command line from make demo's outputs.

    With ``--random-weights`` nothing comes from make demo but the video: the config defaults to
    ``configs/tiny_cpu_synthetic.yaml``, and the detector to ``yolov8n.yaml`` untrained.

    Raises:
        FileNotFoundError: a default is needed and make demo has not produced it.
    """
    given_boxes = args.boxes or args.boxes_pkl
    wanted: dict[str, str | None] = {"video": args.video}
    if args.random_weights:
        config = args.config or str(UNTRAINED_CONFIG)
    else:
        config = args.config
        wanted.update(config=args.config, checkpoint=args.checkpoint)
        if not given_boxes:
            wanted["detector"] = args.detector
        # A config of its own carries its weights (resume_path, pretrain) or says it has none.
        if args.config is not None and args.checkpoint is None:
            wanted.pop("checkpoint")
    needed = [name for name, value in wanted.items() if value is None]
    chosen = {name: Path(value) for name, value in wanted.items() if value is not None}
    chosen.update(demo_defaults(args.demo_out, needed) if needed else {})
    optional = {name: Path(value) if value else None for name, value in
                (("detector", args.detector), ("boxes", args.boxes), ("boxes_pkl", args.boxes_pkl))}
    return DemoInputs(video=chosen["video"], config=Path(config) if config else chosen["config"],
                      checkpoint=chosen.get("checkpoint", Path(args.checkpoint) if args.checkpoint else None),
                      detector=chosen.get("detector", optional["detector"]), boxes=optional["boxes"],
                      boxes_pkl=optional["boxes_pkl"])


def settings_from(args: argparse.Namespace) -> DemoSettings:
    return DemoSettings(conf=args.conf, imgsz=args.imgsz, person_class=args.person_class, tracker=args.tracker,
                        detect_every=args.detect_every, top_k=args.top_k, device=args.device,
                        random_weights=args.random_weights, seed=args.seed,
                        label_map=Path(args.labelmap) if args.labelmap else None,
                        display_height=args.display_height, boxes_time=args.boxes_time,
                        boxes_normalised=args.boxes_normalised, progress=not args.no_progress)


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; prints the summary. A missing or bad input: one line, exit 1."""
    return run_main(build_parser().parse_args, _run, argv,
                    failures=(FileNotFoundError, ValueError, MissingPackageError))


def _run(args: argparse.Namespace) -> int:
    from tools.video_annotate import run_video_demo
    from tools.video_report import summary_lines

    report = run_video_demo(resolve_inputs(args), args.out, settings_from(args))
    print("\n".join(summary_lines(report)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
