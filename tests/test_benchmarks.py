"""The performance benchmarks run at their smallest sizes and print their figures; the bf16/SDPA helpers they use.

Output formats only: no timing is asserted.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from benchmarks import data_path, eval_throughput, train_step, virtual_ranks, vit_forward
from benchmarks.common import ratio_line, vit_forward_flops
from tools.prepare_synthetic import prepare_synthetic_dataset
from engine.attention_kernels import describe_sdpa_kernel, sdpa_backend, sdpa_eligible_backends, vit_sdpa_backend
from engine.precision import cast_frozen_vit
from models.backbones.vit import vit_giant_patch14_224, vit_small_patch16_224

RATIO = re.compile(r"^RATIO [^:]+: \d+\.\d\dx \(.+ vs .+; \d+\.\d+ -> \d+\.\d+ s per call, measured in this run"
                   r"(; CPU-time ratio \d+\.\d\dx)?\)$", re.MULTILINE)


@pytest.fixture(scope="module")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return prepare_synthetic_dataset(tmp_path_factory.mktemp("bench") / "data", train_videos=1, val_videos=1)


def _tiny_vit():
    torch.manual_seed(0)
    vit = vit_small_patch16_224(img_size=32, all_frames=4, depth=2, embed_dim=48, num_heads=4)
    return vit.eval().requires_grad_(False)


def test_ratio_line_format() -> None:
    line = ratio_line("x speed-up", "base", 2.0, "ours", 0.5)
    assert RATIO.fullmatch(line) and "4.00x" in line and "CPU-time" not in line
    line = ratio_line("x speed-up", "base", 2.0, "ours", 0.5, (3.0, 1.0))
    assert RATIO.fullmatch(line) and line.endswith("; CPU-time ratio 3.00x)")


def test_vit_forward_prints_ratio_and_says_depth_reduced(capsys: pytest.CaptureFixture) -> None:
    assert vit_forward.main(["--depth", "1", "--frames", "2", "--img", "28", "--repeats", "1"]) == 0
    out = capsys.readouterr().out
    assert RATIO.search(out) and "DEPTH-REDUCED to 1 of ViT-g's 40 blocks" in out
    assert re.search(r"ours: float32 weights, SDPA \[(flash|math)\]", out)
    assert re.search(r"max \|ours - baseline\| = \d\.\d+e[-+]\d+", out)


def test_train_step_prints_ratio(capsys: pytest.CaptureFixture) -> None:
    argv = ["--preset", "tiny", "--frames", "16", "--size", "48", "--batch", "1", "--boxes", "1", "--warmup", "0",
            "--repeats", "1"]
    assert train_step.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^RATIO train_step amp vs float32: ", out, re.MULTILINE) and RATIO.search(out)
    assert re.search(r"^float32 +\(eager attention\): .* per iteration, [\d,]+ ViT tokens/s", out, re.MULTILINE)
    assert "amp+cache" in out  # timed, or skipped with the reason


def test_virtual_ranks_prints_memory_and_time_ratios(capsys: pytest.CaptureFixture) -> None:
    argv = ["--ranks", "2", "--preset", "tiny", "--frames", "16", "--size", "48", "--batch", "1", "--boxes", "1",
            "--warmup", "0", "--repeats", "1"]
    assert virtual_ranks.main(argv) == 0
    out = capsys.readouterr().out
    assert re.search(r"^W=1 +1 micro-batch\(es\) per step: .* per step; peak (resident set|allocated GPU memory) "
                     r"[\d,.]+ MiB", out, re.MULTILINE)
    assert re.search(r"^W=2 +2 micro-batch\(es\) per step: ", out, re.MULTILINE)
    for what in ("peak memory", "seconds per optimiser step", "seconds per micro-batch"):
        assert re.search(rf"^RATIO {what}, W=2 / W=1: \d+\.\d+ \(", out, re.MULTILINE), what


def test_eval_throughput_prints_ratio(capsys: pytest.CaptureFixture) -> None:
    argv = ["--preset", "tiny", "--frames", "16", "--size", "48", "--batch", "1", "--boxes", "1", "--views", "2",
            "--warmup", "0", "--repeats", "1"]
    assert eval_throughput.main(argv) == 0
    out = capsys.readouterr().out
    assert RATIO.search(out) and re.search(r"keyframes/s, [\d.]+ clips/s", out)


def test_eval_amp_drift_on_synthetic_data(synthetic_root: Path, capsys: pytest.CaptureFixture) -> None:
    status = eval_throughput.main(["--amp-drift", "--root", str(synthetic_root), "--frames", "8", "--size", "64"])
    out = capsys.readouterr().out
    match = re.search(r"^DRIFT max \|bf16 score - float32 score\| = (\d\.\d+): (within|ABOVE) the target 0.01$",
                      out, re.MULTILINE)
    assert match and status == (0 if float(match.group(1)) <= 0.01 else 1)
    assert "bf16 autocast + bf16 ViT weights" in out and "seeded random initialisation" in out


def test_data_path_prints_ratio_and_identity(synthetic_root: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture) -> None:
    argv = ["--root", str(synthetic_root), "--items", "2", "--workers", "0", "--batch", "1", "--store",
            str(tmp_path / "store")]
    assert data_path.main(argv) == 0
    out = capsys.readouterr().out
    assert RATIO.search(out) and "clips bit-identical between the paths: True" in out
    assert "store resize 112x112_i2" in out and "DataLoader workers=0" in out


def test_vit_g_forward_flops_match_the_issue() -> None:
    with torch.device("meta"):
        vit = vit_giant_patch14_224(all_frames=32, img_size=224, num_classes=0)
    tokens, width, hidden = 4096, 1408, 6144
    per_block = 2 * tokens * (4 * width**2 + 2 * width * hidden) + 4 * tokens**2 * width
    expected = 40 * per_block + 2 * tokens * width * 3 * 2 * 14 * 14
    assert vit_forward_flops(vit, 2) == pytest.approx(2 * expected, rel=1e-12)
    assert vit_forward_flops(vit, 1) / 1e12 == pytest.approx(12.06, abs=0.01)


def test_sdpa_backend_reports_what_runs_on_cpu() -> None:
    vit = _tiny_vit()
    assert vit_sdpa_backend(vit) == "flash"  # torch's CPU flash kernel for float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert vit_sdpa_backend(vit) == "flash"
    query = torch.zeros(1, 4, 16, 12)
    with sdpa_kernel([SDPBackend.MATH]):
        assert sdpa_backend(query, query, query) == "math"
        assert vit_sdpa_backend(vit) == "math"
    assert sdpa_eligible_backends(query, query, query) == ["flash", "math"]
    profiled = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    with profiled, torch.no_grad():
        vit(torch.zeros(1, 3, 4, 32, 32))
    names = {event.key for event in profiled.key_averages()}
    assert "aten::_scaled_dot_product_flash_attention_for_cpu" in names


def test_the_logged_kernel_is_the_operator_that_runs_on_the_device() -> None:
    # A CPU run's line names torch's CPU operator, never the bare "flash" of the CUDA FlashAttention.
    vit = _tiny_vit()
    described = describe_sdpa_kernel(vit_sdpa_backend(vit), "cpu")
    assert described.startswith("aten::_scaled_dot_product_flash_attention_for_cpu ") and "CPU" in described
    profiled = torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU])
    with profiled, torch.no_grad():
        vit(torch.zeros(1, 3, 4, 32, 32))
    assert described.split(" ")[0] in {event.key for event in profiled.key_averages()}
    with sdpa_kernel([SDPBackend.MATH]):
        assert "math" in describe_sdpa_kernel(vit_sdpa_backend(vit), "cpu")
    assert describe_sdpa_kernel("flash", "cuda").startswith("aten::_scaled_dot_product_flash_attention (")
    assert "CPU" not in describe_sdpa_kernel("efficient", "cuda")


def test_sdpa_backend_without_the_private_chooser(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(torch, "_fused_sdp_choice")
    query = torch.zeros(1, 2, 8, 8)
    assert sdpa_backend(query, query, query) == "flash"
    assert sdpa_eligible_backends(query, query, query) == ["flash", "math"]


def test_cast_frozen_vit_keeps_interfaces_and_checkpoint_dtype() -> None:
    vit = _tiny_vit()
    clip = torch.randn(2, 3, 4, 32, 32, generator=torch.Generator().manual_seed(1))
    reference = vit(clip)
    state = {k: v.clone() for k, v in vit.state_dict().items()}
    cast_frozen_vit(vit)
    assert {p.dtype for p in vit.parameters()} == {torch.bfloat16}
    output = vit(clip)
    assert output.dtype == torch.float32 and output.shape == reference.shape
    assert (output - reference).abs().max() <= 0.05 * reference.abs().max()
    saved = vit.state_dict()
    assert set(saved) == set(state) and {v.dtype for v in saved.values()} == {torch.float32}
    assert all(torch.equal(saved[k], state[k].bfloat16().float()) for k in state)
    vit.load_state_dict(state)  # float32 weights load into the bf16 ViT (rounded)
    cast_frozen_vit(vit)  # idempotent: hooks are not stacked
    assert len(vit._forward_hooks) == 1 and torch.equal(vit(clip), output)


def test_cast_frozen_vit_refuses_a_trainable_vit() -> None:
    vit = _tiny_vit()
    vit.blocks[1].mlp.fc2.weight.requires_grad_(True)
    with pytest.raises(ValueError, match=r"1 parameter\(s\) require grad, e.g. 'blocks.1.mlp.fc2.weight'"):
        cast_frozen_vit(vit)
