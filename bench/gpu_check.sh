#!/usr/bin/env bash
# The CUDA paths on a lent GPU machine (issue 11), as one prepared, short run.
# The device machine has no network: the wheels travel with the tree (carry a folder built here with
#   pip wheel --no-deps -w wheels/cuda "llama-cpp-python==$(python -c 'import llama_cpp;print(llama_cpp.__version__)')"
#   (CMAKE_ARGS="-DGGML_CUDA=on", built where nvcc is) plus the project's other wheels), or the
# machine already has a CUDA llama-cpp-python and torch.
#   bash bench/gpu_check.sh [WHEEL_DIR]        last stdout line: one JSON object (bench/gpu_check.py)
set -euo pipefail
cd "$(dirname "$0")/.."
WHEELS="${1:-wheels}"
PY="${PYTHON:-python3}"
if [ -d "$WHEELS" ]; then
  "$PY" -m venv --system-site-packages .venv-gpu
  PY=.venv-gpu/bin/python
  "$PY" -m pip install -q --no-index --find-links "$WHEELS" -e . || true
fi
nvidia-smi --query-gpu=name,memory.total,memory.free,driver_version --format=csv,noheader >&2 || true
export QT_QPA_PLATFORM=offscreen ATELIER_HOME="$(mktemp -d)"
timeout 480 "$PY" bench/gpu_check.py
