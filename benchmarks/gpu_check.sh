#!/usr/bin/env bash
# GPU performance check (issue 6): fp32 vs bf16 vs bf16+torch.compile(UNet) for the three tiny configs and a
# medium text-to-image model: images/s, s/step, peak GPU memory, bf16-vs-fp32 output deviation -> JSON.
# Budget: at most 5 minutes on one GPU (the python part is killed at 290 s; the JSON keeps finished cases).
#
#   benchmarks/gpu_check.sh                          # writes reports/gpu_check/gpu_check.json
#   benchmarks/gpu_check.sh --out /tmp/check.json    # other options: benchmarks/gpu_check.py --help
#   benchmarks/gpu_check.sh --dry-run                # no GPU: CPU, tiny sizes, 2 steps, no compile (tested)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
case " $* " in *" --out "*) ;; *) set -- --out reports/gpu_check/gpu_check.json "$@" ;; esac
"$PYTHON" -c 'import torch; print("torch", torch.__version__, "| cuda", torch.cuda.is_available(),
      "|", torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU")'
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
exec timeout --signal=INT --kill-after=10 290 "$PYTHON" benchmarks/gpu_check.py "$@"
