"""predict.csv row order: pkl element order (default) or the original's sampler order (``val.predict_order``)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from config import ConfigError, load_config
from datasets.sampler import RankSliceSampler
from engine.eval_loop import BoxScores, gather_predictions, original_element_ranks
from engine.launch import build_parser
from tests.engine_fixtures import ROOT


def _box(element: int, box: int) -> BoxScores:
    return BoxScores(element, box, f"v{element}", "1", (0.0, 0.0, 1.0, 1.0), np.zeros(2, dtype=np.float32))


@pytest.mark.parametrize("num_elements", [1, 2, 7, 10, 23])
def test_original_order_is_the_concatenated_rank_shares_for_any_world_size(num_elements: int) -> None:
    permutation = torch.randperm(num_elements, generator=torch.Generator().manual_seed(0)).tolist()
    ranks = original_element_ranks(num_elements)
    assert sorted(range(num_elements), key=lambda e: ranks[e]) == permutation
    for world_size in (1, 2, 3, 4, 32):
        # What the original's rank files hold, concatenated in rank order by its rank 0.
        concatenated = [e for rank in range(world_size)
                        for e in RankSliceSampler(num_elements, world_size, rank, round_down=False)]
        assert concatenated == permutation, world_size


def test_gathered_rows_follow_the_element_ranks_then_the_box_order() -> None:
    local = [_box(e, b) for e in (3, 0, 2, 1) for b in (1, 0)]
    default = gather_predictions(local)
    assert [(x.element_index, x.box_index) for x in default] == [(e, b) for e in range(4) for b in (0, 1)]
    ranks = original_element_ranks(4)  # permutation [0, 1, 3, 2]
    original = gather_predictions(local, ranks)
    assert [(x.element_index, x.box_index) for x in original] == [(e, b) for e in (0, 1, 3, 2) for b in (0, 1)]


def test_cli_flag_is_short_for_the_config_key() -> None:
    parser = build_parser()
    assert parser.parse_args(["--config", "x.yaml"]).predict_order is None
    assert parser.parse_args(["--config", "x.yaml", "--predict-order", "original"]).predict_order == "original"
    with pytest.raises(SystemExit):
        parser.parse_args(["--config", "x.yaml", "--predict-order", "shuffled"])


def test_config_key_defaults_to_element_order_and_rejects_other_values() -> None:
    eval_yaml = ROOT / "configs" / "eval_VITSF_ACAR_HR2O_CW.yaml"
    assert load_config(eval_yaml).val.predict_order == "element"
    assert load_config(eval_yaml, ["val.predict_order=original"]).val.predict_order == "original"
    with pytest.raises(ConfigError, match=r"eval_VITSF_ACAR_HR2O_CW.yaml: val.predict_order: expected one of"):
        load_config(eval_yaml, ["val.predict_order=shuffled"])


def test_main_accepts_torchruns_hyphenated_spellings_beside_the_originals() -> None:
    args = build_parser().parse_args(["--config", "x.yaml", "--nproc-per-node", "2", "--master-addr", "h",
                                      "--master-port", "29501", "--node-rank", "1", "--nnodes", "2",
                                      "--rendezvous-timeout", "5", "--predict_order", "original"])
    assert (args.nproc_per_node, args.master_addr, args.master_port, args.node_rank, args.rendezvous_timeout,
            args.predict_order) == (2, "h", 29501, 1, 5.0, "original")
    assert build_parser().parse_args(["--config", "x.yaml", "--nproc_per_node", "3"]).nproc_per_node == 3
