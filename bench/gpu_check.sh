#!/usr/bin/env bash
# The GPU check of issue 26, one table: installs the `gpu` extra, restores SmallInception and
# ResNet-50 from checkpoints with the release's variable names, evaluates them with
# `heldout evaluate --outputs=margins`, reports images/s (float32 and bfloat16 products)
# against this workplace's CPU figures (bench/gpu_check_cpu.json), and runs the tf-gpu
# influence backend's equality tests. Meant to finish within 8 minutes on one GPU.
#
#   bash bench/gpu_check.sh            # on a GPU machine with network (pip install)
#   WHEELS=/path bash bench/gpu_check.sh   # offline: the gpu extra's wheels in /path
#   bash bench/gpu_check.sh --cpu      # here: small sizes on the CPU, no install; with
#                                      # --write_reference=bench/gpu_check_cpu.json
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
if [[ "${1:-}" != "--cpu" ]]; then
  if ! "$PYTHON" -c "import tensorflow as tf, sys; sys.exit(not tf.config.list_physical_devices('GPU'))" 2>/dev/null; then
    if [[ -n "${WHEELS:-}" ]]; then
      "$PYTHON" -m pip install -q --no-index --find-links "$WHEELS" -e ".[gpu]"
    else
      "$PYTHON" -m pip install -q -e ".[gpu]"
    fi
  fi
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" TF_CPP_MIN_LOG_LEVEL=2
# What is left of the 8 minutes after the install (at least 2 minutes for the checks).
left=$((480 - SECONDS)); (( left < 120 )) && left=120
exec timeout "$left" "$PYTHON" bench/_gpu_check.py "$@"
