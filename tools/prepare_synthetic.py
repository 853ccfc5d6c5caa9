"""A small prepared synthetic Chaotic World dataset in one call, for tests and benchmarks."""
from __future__ import annotations

from pathlib import Path

from datasets.synthetic import generate_dataset
from tools.csv_to_pkl import convert_csv_to_pkl
from tools.extract_frames import extract_frames
from tools.gt_csv import write_evaluator_ground_truth


def prepare_synthetic_dataset(root: Path, train_videos: int = 1, val_videos: int = 1, seconds: int = 3,
                              seed: int = 0) -> Path:
    """Generate, extract and convert a small synthetic Chaotic World dataset under ``root`` (seconds).

    Args:
        root: output folder.
        train_videos, val_videos: videos per split (the 'tiny' preset otherwise).
        seconds: video length; keyframes lie at seconds 1 .. seconds - 1.
        seed: generator seed.

    Returns:
        ``root``, laid out as DESIGN.md says (frames/, AR_ava_format/ with merged pkls and ground truth).
    """
    root = Path(root)
    generate_dataset(root, preset="tiny", seed=seed, progress=False, train_videos=train_videos,
                     val_videos=val_videos, seconds=seconds)
    extract_frames(root / "videos", root / "frames", workers=1, progress=False)
    annotations = root / "AR_ava_format"
    label_map = annotations / "list_action.pbtxt"
    convert_csv_to_pkl(annotations / "chaos_train_1fps.csv", label_map, annotations / "cw_data_train1fps.pkl")
    convert_csv_to_pkl(annotations / "chaos_test_1fps.csv", label_map, annotations / "cw_data_test1fps.pkl")
    write_evaluator_ground_truth(annotations / "chaos_test_1fps.csv", annotations / "chaos_test_t_+1.csv")
    return root
