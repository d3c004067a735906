#!/usr/bin/env bash
# The GPU check in one go: ddpm on shapes with bf16 + --compile + --grad-accum through unigen train,
# DDP over every visible GPU with torchrun, against the bare torch loop in the same run.
#   bash benchmarks/gpu_check.sh [STEPS]          (from the repository root, with the venv's python)
set -euo pipefail
STEPS="${1:-300}"
PY="${PYTHON:-python}"
NGPU="$("$PY" -c 'import torch; print(torch.cuda.device_count())')"
if [ "$NGPU" -lt 1 ]; then
    echo "gpu_check: no CUDA device is visible" >&2
    exit 2
fi
date -u +"%Y-%m-%d %H:%M UTC"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
export UNIGEN_GPU_CHECK_OUT="$(mktemp -d)"
"$PY" -m torch.distributed.run --standalone --nproc_per_node="$NGPU" benchmarks/gpu_check.py --steps "$STEPS"
