#!/usr/bin/env bash
# Sets up everything heldout needs on a fresh Debian/Ubuntu machine, idempotently:
# Debian's Fashion-MNIST files (the default data) and a virtualenv in .venv with the
# pinned dependencies. HELDOUT_GPU=1 installs the CUDA build of TensorFlow instead.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

fashion_dir=/usr/share/datasets/fashion-mnist
if [ ! -f "$fashion_dir/train-images-idx3-ubyte.gz" ]; then
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  echo "setup: installing Debian's dataset-fashion-mnist"
  $sudo_cmd apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -qq dataset-fashion-mnist >/dev/null
fi

python_bin=${PYTHON:-python3.11}
command -v "$python_bin" >/dev/null || python_bin=python3
[ -x .venv/bin/python ] || "$python_bin" -m venv .venv

extra=cpu
[ "${HELDOUT_GPU:-0}" = 1 ] && extra=gpu
stamp=".venv/.heldout-installed"
wanted="$extra $(sha256sum pyproject.toml | cut -c1-16)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
  echo "setup: installing python dependencies into .venv ($extra)"
  .venv/bin/python -m pip install -q -e ".[$extra,dev]"
  echo "$wanted" > "$stamp"
fi
