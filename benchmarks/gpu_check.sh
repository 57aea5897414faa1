#!/usr/bin/env bash
# GPU performance check (issue 6), at most 5 minutes on one GPU, two parts:
#  1. benchmarks/gpu_check.py (killed at 210 s; the JSON keeps finished cases): the runners' sampling path for the
#     three tiny configs and a medium text-to-image model, fp32 per-image vs batched vs bf16 vs channels_last vs
#     torch.compile: images/s, s/step, peak GPU memory, deviation from the exact fp32 per-image outputs.
#  2. benchmarks/throughput.py (killed at 75 s): the inpainting runner end to end at 256 px on the GPU, PNG writer
#     threads 0 vs 4 (does the GPU wait on PNG encoding and the biharmonic baseline?).
#
#   benchmarks/gpu_check.sh                          # writes reports/gpu_check/{gpu_check,throughput}.json
#   benchmarks/gpu_check.sh --out /tmp/check.json    # other options: benchmarks/gpu_check.py --help
#   benchmarks/gpu_check.sh --dry-run                # no GPU: part 1 on the CPU, tiny sizes, 2 steps (tested)
#
# On a lent GPU machine (python3 there has torch but not every dependency, and no network): run
# `make device-wheels` here first and carry .whl; this script installs those wheels into /tmp/site, and writes
# into $OUT when that is set (the device tool's folder of files that come back).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
if [ ! -x .venv/bin/python ] && compgen -G ".whl/*.whl" >/dev/null; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
default_out=reports/gpu_check/gpu_check.json
[ -n "${OUT:-}" ] && default_out="$OUT/gpu_check.json"
case " $* " in *" --out "*) ;; *) set -- --out "$default_out" "$@" ;; esac
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "| cuda", torch.cuda.is_available(),
      "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
status=0
timeout --signal=INT --kill-after=10 210 "$PYTHON" benchmarks/gpu_check.py "$@" || status=$?
case " $* " in *" --dry-run "*) exit "$status" ;; esac
out=$(printf '%s\n' "$@" | sed -n '/^--out$/{n;p;}' | head -n1)
timeout --signal=INT --kill-after=10 75 "$PYTHON" benchmarks/throughput.py --task inpainting --images 16 --batch 8 \
    --steps 20 --resolution 256 --device cuda --dtype bf16 --variants batched:0 batched:4 per-image:4 \
    --out "$(dirname "$out")/throughput.json" || status=$?
exit "$status"
