"""The restricted unpickler: data-only pickles load, anything naming code is refused before it runs."""
from __future__ import annotations

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from common.errors import FormatError
from formats.annotation_pkl import load_annotation_pkl
from formats.safe_pickle import safe_load


class _RunsCommand:
    """Pickles to ``os.system(...)``: loading it with plain pickle would create the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return os.system, (f"touch {self.marker}",)


def test_data_only_pickles_round_trip(tmp_path: Path) -> None:
    data = [[{"video": "v", "time": 3, "labels": [{"bounding_box": [0.1, 0.2, 0.3, 0.4], "label": [1]}]}],
            {"set": {1, 2}, "frozen": frozenset({3}), "tuple": (1.5, None, True), "bytes": b"x"}]
    for protocol in range(0, pickle.HIGHEST_PROTOCOL + 1):
        path = tmp_path / f"p{protocol}.pkl"
        path.write_bytes(pickle.dumps(data, protocol=protocol))
        assert safe_load(path) == data


def test_numpy_arrays_load_only_when_allowed(tmp_path: Path) -> None:
    proposals = {"vid,0902": np.array([[0.1, 0.2, 0.5, 0.9, 0.97]], dtype=np.float32), "n": np.float64(2.5)}
    path = tmp_path / "proposals.pkl"
    path.write_bytes(pickle.dumps(proposals, protocol=4))
    loaded = safe_load(path, allow_numpy=True)
    np.testing.assert_array_equal(loaded["vid,0902"], proposals["vid,0902"])
    assert loaded["n"] == 2.5
    with pytest.raises(FormatError, match="numpy") as info:
        safe_load(path)
    assert str(path) in str(info.value)


@pytest.mark.parametrize("allow_numpy", [False, True])
def test_a_pickle_that_runs_a_command_is_refused_and_the_command_never_runs(tmp_path: Path,
                                                                          allow_numpy: bool) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([[_RunsCommand(marker)], []]))
    with pytest.raises(FormatError, match=r"(posix|os)\.system.*could run code") as info:
        safe_load(path, allow_numpy=allow_numpy)
    assert str(path) in str(info.value)
    assert not marker.exists()


def test_annotation_pkl_reader_refuses_code(tmp_path: Path) -> None:
    marker = tmp_path / "marker"
    path = tmp_path / "evil.pkl"
    path.write_bytes(pickle.dumps([[_RunsCommand(marker)], [{"name": "a", "id": 1, "label_type": "X"}]]))
    with pytest.raises(FormatError, match="could run code"):
        load_annotation_pkl(path)
    assert not marker.exists()


def test_truncated_pickle_is_a_format_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.pkl"
    path.write_bytes(pickle.dumps([[1, 2, 3], "abc"])[:-3])
    with pytest.raises(FormatError, match="not a readable pickle"):
        safe_load(path)
