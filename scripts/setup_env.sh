#!/usr/bin/env bash
# Set up everything this project needs, from a fresh clone: a virtual
# environment in .venv with the Python packages of requirements.txt, and the
# MultiScaleDeformableAttention op built in place (C++ CPU kernels always,
# CUDA kernels too when a GPU is visible or FORCE_CUDA=1). Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
    echo "[setup] creating .venv with $($PYTHON --version)"
    "$PYTHON" -m venv .venv
fi
echo "[setup] installing Python packages (requirements.txt)"
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -r requirements.txt
echo "[setup] installing the ONNX export packages (requirements-export.txt)"
.venv/bin/python -m pip install --quiet -r requirements-export.txt || \
    echo "[setup] onnx/onnxruntime could not be installed; the export tests will be skipped" >&2

echo "[setup] building the MultiScaleDeformableAttention op"
(cd models/dino/ops && ../../../.venv/bin/python setup.py build_ext --inplace > ../../../.venv/op_build.log 2>&1) || {
    echo "[setup] building the op failed (log: .venv/op_build.log); the model still runs on its PyTorch path" >&2
    tail -n 20 .venv/op_build.log >&2
}
.venv/bin/python - <<'PY'
from models.dino.ops import backend, extension_error
path = backend("cpu")
print("[setup] MSDeformAttn on the CPU uses:", path, "" if path != "pytorch" else f"({extension_error()})")
PY
