"""Benchmark: clips per second from PNG frames (PIL) vs the packed frame store, per worker and with workers.

    python benchmarks/data_path.py [--root DATASET] [--config C.yaml] [--split train|val] [--items N]
        [--workers 0 2] [--batch B] [--store DIR] [--threads 1] [--seed 0]

Builds the config's dataset for the split (``configs/tiny_cpu_synthetic.yaml`` by default: Scale to
112x112, random flip, 16 of 32 frames), then measures:
1. per worker: ``dataset[i]`` for N items in the main process with one torch thread (as a
   DataLoader worker has), PIL path vs frame store (built before
   timing, its packing time printed separately; each path timed after one untimed pass), and
   checks that the clips are bit-identical;
2. through a ``DataLoader`` for each ``--workers`` count, both paths, with ``pin_memory`` only when
   CUDA is available (as the engine does; pinning is meaningless on a CPU-only machine).
Prints clips/s (per worker also per CPU-second of the process, which a busy shared machine
disturbs less than wall-clock time) and the ``RATIO`` line for the per-worker speed-up. ``--root`` is a prepared dataset
folder (default: a small synthetic one generated in a temporary folder); ``--store`` keeps the
store (default: a temporary folder).
"""
from __future__ import annotations

import argparse
import contextlib
import random
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import torch
from torch.utils.data import DataLoader

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import PRESET_CONFIGS, describe_device, ratio_line  # noqa: E402
from common.cli import run_main  # noqa: E402
from config import read_yaml  # noqa: E402
from datasets.ava import AVADataset, collate_batch  # noqa: E402
from datasets.frame_store import FrameStore  # noqa: E402
from datasets.transforms import build_spatial, build_spatial_views, build_temporal  # noqa: E402
from tools.prepare_synthetic import prepare_synthetic_dataset  # noqa: E402


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=None, help="prepared dataset folder (default: generated)")
    parser.add_argument("--config", type=Path, default=PRESET_CONFIGS["tiny"])
    parser.add_argument("--split", choices=("train", "val"), default="train")
    parser.add_argument("--items", type=int, default=24, help="items timed per measurement")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader worker counts")
    parser.add_argument("--batch", type=int, default=4, help="DataLoader batch size")
    parser.add_argument("--store", type=Path, default=None, help="frame store folder (default: temporary)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads of the main process (DataLoader workers always use 1)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def build_dataset(root: Path, raw: dict, split: str, store: FrameStore | None) -> AVADataset:
    """The config's dataset for ``split`` (paths relative to ``root``), reading frames from ``store`` if given."""
    section = raw[split]
    spatial = section["augmentation"]["spatial"]
    views = build_spatial(spatial) if split == "train" else build_spatial_views(spatial)
    return AVADataset(root / section["root_path"], root / section["annotation_path"], views,
                      build_temporal(section["augmentation"]["temporal"]), training=split == "train",
                      frame_store=store)


def _time_items(dataset: AVADataset, indices: list[int], seed: int) -> tuple[float, float, list[dict]]:
    """Wall-clock and CPU seconds (this process) of loading ``indices``, and the items."""
    items = []
    start, start_cpu = time.perf_counter(), time.process_time()
    for position, index in enumerate(indices):
        random.seed(seed + position)  # same flips for both paths
        items.append(dataset[index])
    return time.perf_counter() - start, time.process_time() - start_cpu, items


def _same_clips(first: list[dict], second: list[dict]) -> bool:
    def clips(item: dict) -> list[torch.Tensor]:
        return item["clip"] if isinstance(item["clip"], list) else [item["clip"]]

    return all(len(clips(a)) == len(clips(b)) and all(torch.equal(x, y) for x, y in zip(clips(a), clips(b)))
               and a["aug_info"] == b["aug_info"] for a, b in zip(first, second))


def _time_loader(dataset: AVADataset, indices: list[int], workers: int, batch: int, seed: int) -> float:
    loader = DataLoader(torch.utils.data.Subset(dataset, indices), batch_size=batch, num_workers=workers,
                        collate_fn=collate_batch, pin_memory=torch.cuda.is_available(),
                        generator=torch.Generator().manual_seed(seed),
                        persistent_workers=False)
    start = time.perf_counter()
    for _ in loader:
        pass
    return time.perf_counter() - start


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurements and print them; returns 1 if the two paths gave different clips."""
    return run_main(parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    torch.set_num_threads(args.threads)
    raw = read_yaml(args.config)
    with contextlib.ExitStack() as stack:
        scratch = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        root = args.root or prepare_synthetic_dataset(scratch / "data", train_videos=2, val_videos=1)
        store = FrameStore(args.store or scratch / "store")
        pil_dataset = build_dataset(root, raw, args.split, None)
        store_dataset = build_dataset(root, raw, args.split, store)
        indices = [k % len(pil_dataset) for k in range(args.items)]
        print(f"data_path on {describe_device(torch.device('cpu'))}; pin_memory {torch.cuda.is_available()}")
        print(f"config {args.config.name}, split {args.split}, {len(pil_dataset)} elements in "
              f"{root if args.root else 'a generated synthetic dataset'}; {args.items} items timed; store resize "
              f"{store_dataset.store_resize.key if store_dataset.store_resize else 'decoded'}")
        start = time.perf_counter()
        for index in sorted(set(indices)):
            store_dataset.load_frames(index)  # packs each video once (all its frames)
        print(f"frame store: packed/opened {len(store._videos)} video(s) in {time.perf_counter() - start:.2f} s")
        # One torch thread, as in a DataLoader worker (multi-threaded small tensor ops only add
        # synchronisation); one untimed pass each first, so that both read from a warm page cache.
        torch.set_num_threads(1)
        _time_items(pil_dataset, indices, args.seed)
        pil_seconds, pil_cpu, pil_items = _time_items(pil_dataset, indices, args.seed)
        _time_items(store_dataset, indices, args.seed)
        store_seconds, store_cpu, store_items = _time_items(store_dataset, indices, args.seed)
        torch.set_num_threads(args.threads)
        identical = _same_clips(pil_items, store_items)
        frames = pil_items[0]["clip"].shape[1] if args.split == "train" else pil_items[0]["clip"][0].shape[1]
        for name, seconds, cpu in (("PIL (decode PNG + resize)", pil_seconds, pil_cpu),
                                   ("frame store", store_seconds, store_cpu)):
            print(f"per worker, {name:<26}: {args.items / seconds:.2f} clips/s wall-clock, "
                  f"{args.items / cpu:.2f} clips per CPU-second ({frames} frames per clip)")
        print(f"clips bit-identical between the paths: {identical}")
        for workers in args.workers:
            for name, dataset in (("PIL", pil_dataset), ("frame store", store_dataset)):
                seconds = _time_loader(dataset, indices, workers, args.batch, args.seed)
                print(f"DataLoader workers={workers}, batch {args.batch}, {name:<11}: "
                      f"{args.items / seconds:.2f} clips/s")
        print(ratio_line("data_path clips/s per worker", "PIL", pil_seconds / args.items, "frame store",
                         store_seconds / args.items, (pil_cpu / args.items, store_cpu / args.items)))
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
