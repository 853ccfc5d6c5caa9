"""Keep torch's intra-op thread count across code that changes it behind torch's back."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch


@contextlib.contextmanager
def torch_threads_kept() -> Iterator[None]:
    """Give torch back its intra-op thread count when the body ends.

    Two libraries change it: ultralytics calls ``torch.set_num_threads(cpu_count - 1)`` when it
    selects the CPU, and numba's OpenMP threading layer (the original protocol's parallel sweep
    kernels) sets the process's OpenMP thread count, which is torch's pool too. Without this, the
    process that scores (rank 0) trained every epoch after its first evaluation on all the cores,
    with other floating-point sums than the other ranks and than a run resumed after that evaluation.
    """
    threads = torch.get_num_threads()
    try:
        yield
    finally:
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
