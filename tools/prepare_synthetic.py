"""A small prepared synthetic Chaotic World dataset in one call, for tests and benchmarks."""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from datasets.synthetic import SPLITS, generate_dataset
from tools.csv_to_pkl import convert_csv_to_pkl
from tools.extract_frames import extract_frames
from tools.gt_csv import write_evaluator_ground_truth

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
    write_evaluator_ground_truth(annotations / "chaos_test_1fps.csv", annotations / "chaos_test_t_+1.csv")
    return root


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Make a small prepared synthetic dataset (frames, pkls, evaluator files) under ROOT; "
                    "run main.py from ROOT with configs/tiny_cpu_synthetic.yaml.")
    parser.add_argument("root", type=Path, help="output folder")
    parser.add_argument("--train-videos", type=int, default=8, help="training videos (default 8)")
    parser.add_argument("--val-videos", type=int, default=2, help="validation videos (default 2)")
    parser.add_argument("--seconds", type=int, default=6, help="video length in seconds (default 6)")
    parser.add_argument("--seed", type=int, default=0, help="generator seed (default 0)")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    root = prepare_synthetic_dataset(args.root, args.train_videos, args.val_videos, args.seconds, args.seed)
    frames = sum(1 for _ in (root / "frames").rglob("*.png"))
    print(f"prepared {root}: {args.train_videos} train + {args.val_videos} val videos, {frames} frames, "
          f"in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
