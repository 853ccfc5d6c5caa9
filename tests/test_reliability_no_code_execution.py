"""Reliability: no weight, checkpoint or state file runs code unless the user opted in."""
from __future__ import annotations

import argparse
import json
import logging
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from models.weights import WeightsError, load_model_checkpoint, load_weights_file, trusted_checkpoints


class _Payload:
    """Unpickling this runs ``os.system("touch MARKER")``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def _torch_zip(path: Path, marker: Path) -> None:
    torch.save({"epoch": 1, "state_dict": {"w": torch.ones(1)}, "evil": _Payload(marker)}, path)


def _torch_legacy(path: Path, marker: Path) -> None:
    torch.save({"epoch": 1, "state_dict": {"w": torch.ones(1)}, "evil": _Payload(marker)}, path,
               _use_new_zipfile_serialization=False)


def _plain_pickle(path: Path, marker: Path) -> None:
    path.write_bytes(pickle.dumps({"state_dict": {}, "evil": _Payload(marker)}))


@pytest.mark.parametrize(("write", "expected"), [
    (_torch_zip, r"holds posix\.system.*trust_checkpoints: true"),
    (_torch_legacy, r"trust_checkpoints: true"),
    (_plain_pickle, r"trust_checkpoints: true"),
])
@pytest.mark.parametrize("loader", [load_weights_file, load_model_checkpoint])
def test_a_checkpoint_that_runs_code_is_refused_and_never_runs(tmp_path: Path, write, expected: str,
                                                               loader) -> None:
    marker, path = tmp_path / "MARKER", tmp_path / "evil.pth.tar"
    write(path, marker)
    with pytest.raises(WeightsError, match=expected) as info:
        loader(path)
    assert "evil.pth.tar" in str(info.value) and "\n" not in str(info.value)
    assert not marker.exists()


def test_trust_is_an_explicit_opt_in(tmp_path: Path, caplog) -> None:
    marker, path = tmp_path / "MARKER", tmp_path / "evil.pth"
    _torch_zip(path, marker)
    with caplog.at_level(logging.WARNING, logger="models.weights"), trusted_checkpoints(True):
        load_weights_file(path)
    assert marker.exists() and "executes code" in caplog.text
    marker.unlink()
    with pytest.raises(WeightsError):  # the block ended: trust ended with it
        load_weights_file(path)
    assert not marker.exists()


def test_foreign_checkpoints_with_numpy_and_namespace_load_without_trust(tmp_path: Path) -> None:
    path = tmp_path / "foreign.pth"
    torch.save({"epoch": 3, "state_dict": {"w": torch.ones(2)}, "best": np.float64(0.5), "step": np.int64(7),
                "mean": np.arange(3, dtype=np.float32), "kind": np.dtype("float64"),
                "args": argparse.Namespace(lr=0.1)}, path)
    obj = load_weights_file(path)
    assert obj["best"] == 0.5 and obj["step"] == 7 and obj["args"].lr == 0.1
    assert obj["mean"].tolist() == [0.0, 1.0, 2.0] and obj["kind"] == np.float64


def test_an_empty_checkpoint_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ckpt_1.pth.tar"
    path.write_bytes(b"")
    with pytest.raises(WeightsError, match=r"ckpt_1\.pth\.tar: empty file"):
        load_model_checkpoint(path)


def test_detector_resume_state_is_json_and_an_old_pickle_state_is_ignored(tmp_path: Path, caplog) -> None:
    from detect import infer

    signature = {"weights": "best.pt", "conf": 0.3, "imgsz": [180, 320]}
    done = {("vid_a", 12): [{"bounding_box": [0.1, 0.2, 0.3, 0.4], "label": [0], "person_id": [0],
                              "score": 0.123456789}], ("vid_b", 3): []}
    state = tmp_path / "proposals.pkl.partial"
    infer._save_state(state, signature, done)
    assert json.loads(state.read_text())["version"] == infer.STATE_VERSION
    assert infer._load_state(state, signature) == done
    marker = tmp_path / "MARKER"
    state.write_bytes(pickle.dumps({"version": 1, "signature": signature, "done": _Payload(marker)}, protocol=4))
    with caplog.at_level(logging.WARNING, logger="detect.infer"):
        assert infer._load_state(state, signature) == {}
    assert "old pickle state" in caplog.text and not marker.exists()
