"""Fill the frozen-ViT cache of a config ahead of training: every clip of its splits, both flips, every view.

Run it from the dataset root, like main.py. Ranks split the elements (element i goes to rank
i mod W) and write their own shards, so any number of processes or machines may share one cache
folder; clips already cached are skipped, so an interrupted run resumes where it stopped:

    python -m tools.precompute_vit_cache --config configs/x.yaml                   # one process
    python -m tools.precompute_vit_cache --config configs/x.yaml --rank 1 --world 4
    torchrun --nproc_per_node 8 -m tools.precompute_vit_cache --config configs/x.yaml
"""
from __future__ import annotations

import argparse

from common.cli import run_main


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the run's YAML config (main.py's)")
    parser.add_argument("--cache", default=None, help="cache folder (default: the config's vit_cache.path)")
    parser.add_argument("--split", nargs="+", choices=["train", "val"], default=None,
                        help="splits to cache (default: train and val; val only for evaluate configs)")
    parser.add_argument("--rank", type=int, default=None,
                        help="this process's share (default: RANK / SLURM_PROCID, else 0)")
    parser.add_argument("--world", type=int, default=None,
                        help="number of shares (default: WORLD_SIZE / SLURM_NTASKS, else 1)")
    parser.add_argument("--batch-size", type=int, default=4, help="clips per ViT forward")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader processes decoding frames")
    parser.add_argument("--device", default=None, help="default: cuda:<LOCAL_RANK> when CUDA is available, else cpu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, as main.py")
    return parser


def main(argv: list[str] | None = None) -> int:
    """Command line entry point; returns the exit code (a bad config: one line, exit 2)."""
    return run_main(build_parser().parse_args, _run, argv)


def _run(args: argparse.Namespace) -> int:
    # torch, the datasets and the model only now that the arguments are known to be good.
    import torch

    from engine import distributed as dist_utils
    from tools.vit_cache_fill import PrecomputeOptions, checked_config, precompute

    env = dist_utils.world_info_from_env()
    rank = env.rank if args.rank is None else args.rank
    world = env.world_size if args.world is None else args.world
    plan, cache, splits = checked_config(args)
    if args.device is not None:
        device = torch.device(args.device)
    else:
        device = torch.device(f"cuda:{env.local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    options = PrecomputeOptions(rank=rank, world=world, device=device, batch_size=args.batch_size,
                                workers=args.workers, progress=rank == 0)
    summary = precompute(plan, cache, splits, options)
    print(f"rank {summary.rank}/{summary.world}: {summary.clips} clips, {summary.already_cached} already cached, "
          f"{summary.computed} computed in {summary.seconds:.1f} s; {cache}: {summary.store_entries} entries, "
          f"{summary.store_bytes / 2**20:.1f} MiB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
