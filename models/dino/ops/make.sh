#!/usr/bin/env bash
# Build and install the MultiScaleDeformableAttention extension into the current
# Python environment. CUDA kernels are added when a GPU is visible or
# FORCE_CUDA=1; examples:
#   ./make.sh
#   FORCE_CUDA=1 TORCH_CUDA_ARCH_LIST="8.0;8.6" CUDA_HOME=/usr/local/cuda ./make.sh
set -euo pipefail
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python}"
"$PYTHON" setup.py build install
