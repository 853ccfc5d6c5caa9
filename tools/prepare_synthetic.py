"""A small prepared synthetic dataset in one call (Chaotic World or AVA v2.2 layout), for tests and benchmarks."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from common.cli import run_main
from datasets.synthetic import SPLITS, generate_dataset
from datasets.synthetic_ava import ANNOTATIONS, LABELMAP_NAME, split_files, write_ava_annotations
from tools.ava_frames import extract_ava_frames
from tools.ava_to_pkl import convert_ava
from tools.csv_to_pkl import convert_csv_to_pkl
from tools.extract_frames import extract_frames
from tools.gt_csv import seconds_exclusions_path, write_evaluator_ground_truth

# Annotation pkls merged per keyframe (``tools.csv_to_pkl --merge``). Not the original's names
# (``cw_data_train1fps_woXGXJVBCQ.pkl``, ``cw_data_test1fps.pkl``), which hold one element per csv row.
MERGED_PKL_NAMES = {"train": "cw_data_train1fps_merged.pkl", "val": "cw_data_test1fps_merged.pkl"}


def prepare_synthetic_dataset(root: Path, train_videos: int = 1, val_videos: int = 1, seconds: int = 3,
                              seed: int = 0) -> Path:
    """Generate, extract and convert a small synthetic Chaotic World dataset under ``root`` (seconds).

    Args:
        root: output folder.
        train_videos, val_videos: videos per split (the 'tiny' preset otherwise).
        seconds: video length; keyframes lie at seconds 1 .. seconds - 1.
        seed: generator seed.

    Returns:
        ``root``, laid out as DATA.md says (frames/, AR_ava_format/ with merged pkls named by
        ``MERGED_PKL_NAMES``, and the evaluator's ground truth).
    """
    root = Path(root)
    generate_dataset(root, preset="tiny", seed=seed, progress=False, train_videos=train_videos,
                     val_videos=val_videos, seconds=seconds)
    extract_frames(root / "videos", root / "frames", workers=1, progress=False)
    annotations = root / "AR_ava_format"
    label_map = annotations / "list_action.pbtxt"
    # Merged pkls (opt-in), under names of our own, as configs/tiny_cpu_synthetic.yaml reads them:
    # the tests train on them, and per-row files would multiply the samples per epoch.
    for split, stem in SPLITS.items():
        convert_csv_to_pkl(annotations / f"chaos_{stem}_1fps.csv", label_map,
                           annotations / MERGED_PKL_NAMES[split], merge=True)
    exclusions = annotations / "chaos_test_exclude.csv"
    write_evaluator_ground_truth(annotations / "chaos_test_1fps.csv", annotations / "chaos_test_t_+1.csv",
                                 exclusions=(exclusions, seconds_exclusions_path(exclusions)))
    return root


def prepare_synthetic_ava_dataset(root: Path, train_videos: int = 1, val_videos: int = 1, seconds: int = 6,
                                  seed: int = 0, height: int = 120) -> Path:
    """Generate, extract and convert a small synthetic dataset in the AVA v2.2 / ACAR-Net layout.

    Writes ``annotations/`` (official-layout csvs, excluded timestamps, 60-class label map, proposals
    pickles; see ``datasets/synthetic_ava.py``), ``data/<vid>/image_%06d.jpg`` (30 fps, ``height``
    pixels high; each video stands for the 900-1800 s window) and the pkls ACAR-Net's configs name:
    ``ava_train_v2.2_with_fair_0.9.pkl``, ``ava_val_v2.2_fair_0.85.pkl``, ``ava_train_v2.2.pkl``,
    ``ava_val_v2.2_gt.pkl``.

    Args:
        root: output folder (run main.py from it with ``configs/ava/tiny_cpu_acar.yaml``).
        train_videos, val_videos: videos per split.
        seconds: video length; keyframes 0902 .. 900 + seconds - 2 (the 91-frame window must fit).
        seed: generator seed.
        height: frame height in pixels (ACAR-Net: 340).

    Returns:
        ``root``.
    """
    root = Path(root)
    generate_dataset(root, preset="tiny", seed=seed, progress=False, train_videos=train_videos,
                     val_videos=val_videos, seconds=seconds, fps=30)
    write_ava_annotations(root, seconds, seed)
    extract_ava_frames(root / "videos", root / "data", workers=1, height=height, start_seconds=0,
                       num_frames=seconds * 30, progress=False)
    folder = root / ANNOTATIONS
    label_map = folder / LABELMAP_NAME
    train, val = split_files(root, "train"), split_files(root, "val")
    convert_ava(train.csv, label_map, folder / "ava_train_v2.2_with_fair_0.9.pkl", boxes="gt+proposals",
                proposals_path=train.proposals, threshold=0.9)
    convert_ava(train.csv, label_map, folder / "ava_train_v2.2.pkl", boxes="gt")
    convert_ava(val.csv, label_map, folder / "ava_val_v2.2_fair_0.85.pkl", boxes="proposals",
                proposals_path=val.proposals, threshold=0.85)
    convert_ava(val.csv, label_map, folder / "ava_val_v2.2_gt.pkl", boxes="gt")
    return root


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Make a small prepared synthetic dataset (frames, pkls, evaluator files) under ROOT; "
                    "run main.py from ROOT with configs/tiny_cpu_synthetic.yaml.")
    parser.add_argument("root", type=Path, help="output folder")
    parser.add_argument("--train-videos", type=int, default=8, help="training videos (default 8)")
    parser.add_argument("--val-videos", type=int, default=2, help="validation videos (default 2)")
    parser.add_argument("--seconds", type=int, default=6, help="video length in seconds (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    parser.add_argument("--layout", choices=("cw", "ava"), default="cw",
                        help="cw (default): Chaotic World files; ava: AVA v2.2 files in ACAR-Net's layout "
                             "(run configs/ava/tiny_cpu_acar.yaml)")
    return parser


def main(argv: list[str] | None = None) -> int:
    """CLI entry point; prints what was prepared."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    if args.layout == "ava":
        root = prepare_synthetic_ava_dataset(args.root, args.train_videos, args.val_videos, args.seconds, args.seed)
        frames = sum(1 for _ in (root / "data").rglob("*.jpg"))
    else:
        root = prepare_synthetic_dataset(args.root, args.train_videos, args.val_videos, args.seconds, args.seed)
        frames = sum(1 for _ in (root / "frames").rglob("*.png"))
    print(f"prepared {root}: {args.train_videos} train + {args.val_videos} val videos, {frames} frames, "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
