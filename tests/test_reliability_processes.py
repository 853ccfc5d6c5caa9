"""Reliability: no orphans, no silent waits, no silent crashes (host lists, rendezvous, launcher kill, exit)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine import distributed as dist_engine
from engine.hostlist import expand_hostlist
from tests.engine_fixtures import ROOT, prepare_tiny_dataset, write_tiny_config


@pytest.mark.parametrize(("hostlist", "hosts"), [
    ("a[1-2]-b[3-4]", ["a1-b3", "a1-b4", "a2-b3", "a2-b4"]),
    ("gpu-a[1-2]-ib", ["gpu-a1-ib", "gpu-a2-ib"]),
    ("node[1-2].cluster", ["node1.cluster", "node2.cluster"]),
    ("n[1-2]x[3-4]", ["n1x3", "n1x4", "n2x3", "n2x4"]),
    ("a[01-03,7]", ["a01", "a02", "a03", "a7"]),
    ("login1,gpu[09-10],cpu", ["login1", "gpu09", "gpu10", "cpu"]),
    ("solo", ["solo"]),
])
def test_slurm_host_lists_expand_in_every_documented_form(hostlist: str, hosts: list[str]) -> None:
    assert expand_hostlist(hostlist, use_scontrol=False) == hosts
    assert dist_engine.first_host(hostlist) == hosts[0]


@pytest.mark.parametrize(("hostlist", "expected"), [
    ("gpu[1-2", r"unbalanced brackets in 'gpu\[1-2'"), ("gpu[a-b]", r"cannot read the range 'a-b'"),
    ("gpu[5-3]", r"runs backwards"), ("", r"empty SLURM host list"),
])
def test_unreadable_host_lists_are_named(hostlist: str, expected: str) -> None:
    with pytest.raises(ValueError, match=expected):
        expand_hostlist(hostlist, use_scontrol=False)


def test_the_rendezvous_says_what_it_waits_for_and_times_out(caplog) -> None:
    port = dist_engine.find_free_port()
    info = dist_engine.DistInfo(rank=1, world_size=2, master_addr="127.0.0.1", master_port=port, launcher="spawn",
                                rendezvous_timeout_s=2.0)
    with caplog.at_level("INFO", logger="engine.distributed"), \
            pytest.raises(dist_engine.RendezvousError,
                          match=rf"rank 1 of 2 waited 2 s for the others at 127\.0\.0\.1:{port} .*--rendezvous_timeout"):
        dist_engine.init_distributed(info, "gloo")
    assert f"waiting for 2 processes at 127.0.0.1:{port} (rendezvous timeout 2 s)" in caplog.text
    assert not dist_engine.is_initialized()


def _children(pid: int) -> set[int]:
    found = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.add(int(entry.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM, signal.SIGINT])
def test_killing_the_launcher_ends_its_workers(tmp_path: Path, sig: signal.Signals) -> None:
    dataset = prepare_tiny_dataset(tmp_path / "cw")
    config = write_tiny_config(tmp_path / "run.yaml", tmp_path / "run", n_epochs=50)
    # PYTHONFAULTHANDLER: a launcher that does not end is sent SIGABRT and prints where it waited.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONFAULTHANDLER": "1"}
    stderr = tmp_path / "launcher_stderr.txt"
    with stderr.open("w") as stderr_file:
        # SIGINT at its default, as in a terminal: a shell runs background jobs with SIGINT ignored, the
        # launcher then inherits that (and rightly keeps it), and the SIGINT case would test nothing.
        launcher = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "--config", str(config),
                                     "--nproc_per_node", "2", "--backend", "gloo"], cwd=dataset, env=env,
                                    stdout=subprocess.DEVNULL, stderr=stderr_file,
                                    preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        workers: set[int] = set()
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and not (tmp_path / "run" / "train_batch.log").exists():
            workers |= {pid for pid in _children(launcher.pid)}
            time.sleep(0.5)
        workers |= _children(launcher.pid)
        assert (tmp_path / "run" / "train_batch.log").exists() and len(workers) >= 2, workers
        launcher.send_signal(sig)
        try:
            launcher.wait(timeout=90)  # 2-6 s on the 2-core CPU machine, also with 4 busy loops beside it
        except subprocess.TimeoutExpired:
            launcher.send_signal(signal.SIGABRT)
            launcher.wait(timeout=30)
            pytest.fail(f"the launcher outlived {sig.name} by 90 s; it was at:\n{stderr.read_text()[-4000:]}")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(pid) for pid in workers):
            time.sleep(0.2)
        assert not [pid for pid in workers if _alive(pid)]
    finally:
        if launcher.poll() is None:
            launcher.kill()


_CHILD = """
import logging, sys
from engine.worker_errors import leave_worker, watch_for_crashes
logging.basicConfig(filename=sys.argv[1], level=logging.INFO)
logging.getLogger("child").info("written before leaving")
sys.stdout.write("no newline, still buffered")
watch_for_crashes()
if sys.argv[2] == "abort":
    import os
    def deep_in_the_run():
        os.abort()
    deep_in_the_run()
leave_worker()
"""


def test_a_worker_leaves_with_status_0_and_its_output_flushed(tmp_path: Path) -> None:
    log = tmp_path / "child.log"
    done = subprocess.run([sys.executable, "-c", _CHILD, str(log), "leave"], cwd=ROOT, capture_output=True,
                          text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout == "no newline, still buffered"
    assert log.read_text() == "INFO:child:written before leaving\n"


def test_a_worker_that_crashes_in_native_code_prints_where(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, "-c", _CHILD, str(tmp_path / "child.log"), "abort"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == -signal.SIGABRT
    assert "Fatal Python error: Aborted" in done.stderr and "deep_in_the_run" in done.stderr
