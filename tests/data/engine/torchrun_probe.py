"""Worker run by test_engine_distributed under torchrun: join the group from the environment, reduce, gather."""
from __future__ import annotations

import datetime
import json
import sys
from pathlib import Path

import torch

from engine import distributed


def main(out_dir: str) -> None:
    info = distributed.init_distributed(distributed.world_info_from_env(), backend="gloo",
                                        timeout=datetime.timedelta(seconds=60))
    try:
        total = distributed.all_reduce_sum(torch.tensor([info.rank + 1.0]))
        gathered = distributed.gather_objects_to_main(info.rank * 10)
        result = {"rank": info.rank, "local_rank": info.local_rank, "world": info.world_size,
                  "launcher": info.launcher, "total": total.tolist(), "gathered": gathered}
        Path(out_dir, f"rank{info.rank}.json").write_text(json.dumps(result), encoding="utf-8")
    finally:
        distributed.cleanup()


if __name__ == "__main__":
    main(sys.argv[1])
