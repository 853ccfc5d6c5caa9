"""``main.py``'s arguments (torch-free, so that ``--help`` and argument errors answer at once).

Every option has the original's underscore spelling and torchrun's hyphenated one
(``--nproc_per_node`` / ``--nproc-per-node``, ...), so commands written for either work.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass

# How long a process waits for the whole job to join the rendezvous before failing, in seconds.
DEFAULT_RENDEZVOUS_TIMEOUT_S = 300.0


@dataclass(frozen=True)
class LaunchOptions:
    """The process layout of a run (``main.py``'s flags of the same names; their defaults are these).

    ``engine.launch`` hands each spawned worker a copy (it pickles) with ``nproc_per_node``,
    ``master_port`` and ``backend`` resolved.

    Attributes:
        nproc_per_node: processes on this node; None = one per visible GPU, else 1.
        backend: ``nccl``, ``gloo`` or None (nccl with CUDA, else gloo).
        master_addr: rendezvous host (rank 0's node).
        master_port: rendezvous port; None = a free port (single node only).
        nnodes: nodes in the job.
        node_rank: this node's index, ``0..nnodes-1``.
        rendezvous_timeout: seconds to wait for every process to join before failing.
    """

    nproc_per_node: int | None = None
    backend: str | None = None
    master_addr: str = "127.0.0.1"
    master_port: int | None = None
    nnodes: int = 1
    node_rank: int = 0
    rendezvous_timeout: float = DEFAULT_RENDEZVOUS_TIMEOUT_S

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> LaunchOptions:
        """The layout ``build_parser`` parsed."""
        return cls(**{field.name: getattr(args, field.name) for field in dataclasses.fields(cls)})


def _spellings(name: str) -> list[str]:
    """``--a_b`` and ``--a-b`` (one option string when the name has no underscore or hyphen)."""
    underscore, hyphen = f"--{name.replace('-', '_')}", f"--{name.replace('_', '-')}"
    return [underscore] if underscore == hyphen else [underscore, hyphen]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="Train or evaluate the SlowFast + ViT ACAR action model from a YAML config "
                    "(the original's configs run unchanged).")
    parser.add_argument("--config", required=True, help="YAML config (original schema)")
    parser.add_argument(*_spellings("nproc_per_node"), type=int, default=LaunchOptions.nproc_per_node,
                        help="processes to start on this node (default: one per GPU, 1 without CUDA)")
    parser.add_argument("--backend", default=LaunchOptions.backend, choices=["nccl", "gloo"],
                        help="torch.distributed backend (default: nccl with CUDA, gloo without)")
    parser.add_argument(*_spellings("master_addr"), default=LaunchOptions.master_addr,
                        help="rendezvous host (rank 0's node)")
    parser.add_argument(*_spellings("master_port"), type=int, default=LaunchOptions.master_port,
                        help="rendezvous port (default: a free port; required with --nnodes > 1)")
    parser.add_argument("--nnodes", type=int, default=LaunchOptions.nnodes, help="number of nodes")
    parser.add_argument(*_spellings("node_rank"), type=int, default=LaunchOptions.node_rank,
                        help="this node's index, 0..nnodes-1")
    parser.add_argument(*_spellings("rendezvous_timeout"), type=float, default=LaunchOptions.rendezvous_timeout,
                        help="seconds to wait for every process to join before failing (default %(default)s)")
    parser.add_argument("--debug", action="store_true", help="show tracebacks, not only one line per error")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override one config key, e.g. --set train.batch_size=2 (repeatable)")
    parser.add_argument(*_spellings("predict_order"), choices=["element", "original"], default=None,
                        help="row order of predict.csv, short for --set val.predict_order=...: element (pkl "
                             "element by element) or original (the original's sampler order); default: the "
                             "config's val.predict_order")
    return parser
