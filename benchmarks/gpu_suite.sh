#!/usr/bin/env bash
# Every GPU figure of benchmarks/RESULTS.md in one command, for a session that is lent a GPU machine
# for a short while: ViT-g forward (speed-up, TFLOP/s, MFU), training step (float32 vs amp vs
# amp + cache), evaluation throughput, and, given a prepared dataset, a main.py run on the GPU path
# (nccl, amp: bf16, SDPA kernel log) followed by the bf16 score drift of its checkpoint.
#
# Usage: bash benchmarks/gpu_suite.sh OUT_DIR [DATASET_ROOT]
#   OUT_DIR       logs, one per step, and summary.txt (the RATIO / MFU / drift lines and exit codes)
#   DATASET_ROOT  optional: a prepared synthetic dataset, made here (the GPU machine may have no
#                 ffmpeg) and carried: python -m tools.prepare_synthetic DIR --train-videos 6
#                 --val-videos 2 --seconds 3 (about 50 MB, under the device tool's 64 MiB)
# Steps run one after another and a failing step does not stop the others; the exit code is the
# number of failed steps. On a CPU the benchmarks use their depth-reduced defaults, so the script
# can be tried here first.
set -u
out=${1:?usage: bash benchmarks/gpu_suite.sh OUT_DIR [DATASET_ROOT]}
data=${2:-}
cd "$(dirname "$0")/.."
mkdir -p "$out"
export PYTHONUNBUFFERED=1
python=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
failed=0
: >"$out/summary.txt"

step() {  # step NAME COMMAND...: run, log to OUT/NAME.log, note the exit code and timing
    local name=$1; shift
    local start=$SECONDS
    echo "=== $name: $*" | tee -a "$out/summary.txt"
    "$@" >"$out/$name.log" 2>&1
    local rc=$?
    echo "    exit $rc after $((SECONDS - start)) s" | tee -a "$out/summary.txt"
    grep -iE "^RATIO|MFU|TFLOP/s|drift|ViT attention|running on|peak|WARNING|Error" "$out/$name.log" | head -20 \
        | sed 's/^/    /' | tee -a "$out/summary.txt"
    [ $rc -eq 0 ] || failed=$((failed + 1))
}

step environment "$python" -c "
import torch
print('torch', torch.__version__, '| cuda', torch.version.cuda, '| available', torch.cuda.is_available())
if torch.cuda.is_available():
    print('device', torch.cuda.get_device_name(0), '| bf16', torch.cuda.is_bf16_supported())
    print('SDPA flash', torch.backends.cuda.flash_sdp_enabled(), '| efficient',
          torch.backends.cuda.mem_efficient_sdp_enabled(), '| cudnn', torch.backends.cuda.cudnn_sdp_enabled())
    print('nccl', torch.distributed.is_nccl_available(), torch.cuda.nccl.version())
"
step vit_forward "$python" benchmarks/vit_forward.py
step train_step "$python" benchmarks/train_step.py
step eval_throughput "$python" benchmarks/eval_throughput.py --views 2

if [ -n "$data" ]; then
    repo=$(pwd); data=$(realpath "$data"); run=$(realpath -m "$out/tiny_run")
    case $python in /*) ;; */*) python=$repo/$python ;; esac
    # The tiny config (paths relative to the dataset root) on the GPU path: one process, nccl when
    # CUDA is there, bf16 autocast, SDPA kernel logged; two epochs, evaluated at the end.
    step main_train_bf16 bash -c "cd '$data' && '$python' '$repo/main.py' --config '$repo/configs/tiny_cpu_synthetic.yaml' \
        --nproc_per_node 1 --set result_path='$run' --set amp=bf16 --set train.n_epochs=2 --set train.val_freq=2"
    checkpoint=$(ls "$run"/ckpt_*.pth.tar 2>/dev/null | sort -V | tail -1)
    if [ -n "$checkpoint" ]; then
        step amp_drift "$python" benchmarks/eval_throughput.py --amp-drift --root "$data" \
            --config "$run/opts.json" --checkpoint "$checkpoint"
    fi
    grep -hE "ViT attention|running on|frame-mAP" "$run/log.txt" 2>/dev/null | head -8 | sed "s/^/    /" | tee -a "$out/summary.txt"
fi

echo "=== $failed step(s) failed; logs in $out" | tee -a "$out/summary.txt"
exit $failed
