"""``main.py``'s arguments (torch-free, so that ``--help`` and argument errors answer at once).

Every option has the original's underscore spelling and torchrun's hyphenated one
(``--nproc_per_node`` / ``--nproc-per-node``, ...), so commands written for either work.
"""
from __future__ import annotations

import argparse

# How long a process waits for the whole job to join the rendezvous before failing, in seconds.
DEFAULT_RENDEZVOUS_TIMEOUT_S = 300.0


def _spellings(name: str) -> list[str]:
    """``--a_b`` and ``--a-b`` (one option string when the name has no underscore or hyphen)."""
    underscore, hyphen = f"--{name.replace('-', '_')}", f"--{name.replace('_', '-')}"
    return [underscore] if underscore == hyphen else [underscore, hyphen]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train or evaluate the SlowFast + ViT ACAR action model from a YAML config "
                    "(the original's configs run unchanged).")
    parser.add_argument("--config", required=True, help="YAML config (original schema)")
    parser.add_argument(*_spellings("nproc_per_node"), type=int, default=None,
                        help="processes to start on this node (default: one per GPU, 1 without CUDA)")
    parser.add_argument("--backend", default=None, choices=["nccl", "gloo"],
                        help="torch.distributed backend (default: nccl with CUDA, gloo without)")
    parser.add_argument(*_spellings("master_addr"), default="127.0.0.1", help="rendezvous host (rank 0's node)")
    parser.add_argument(*_spellings("master_port"), type=int, default=None,
                        help="rendezvous port (default: a free port; required with --nnodes > 1)")
    parser.add_argument("--nnodes", type=int, default=1, help="number of nodes")
    parser.add_argument(*_spellings("node_rank"), type=int, default=0, help="this node's index, 0..nnodes-1")
    parser.add_argument(*_spellings("rendezvous_timeout"), type=float, default=DEFAULT_RENDEZVOUS_TIMEOUT_S,
                        help="seconds to wait for every process to join before failing (default %(default)s)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks, not only one line per error")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.batch_size=2 (repeatable)")
    parser.add_argument(*_spellings("predict_order"), choices=["element", "original"], default=None,
                        help="row order of predict.csv, short for --set val.predict_order=...: element (pkl "
                             "element by element) or original (the original's sampler order); default: the "
                             "config's val.predict_order")
    return parser
