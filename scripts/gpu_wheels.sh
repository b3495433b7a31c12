#!/usr/bin/env bash
# Download, here (where PyPI is reachable), the wheels of the Python packages that the lent GPU
# machine lacks, for its Python (3.12, manylinux x86_64), into .whl/ (ignored by git). The
# `device` tool carries them (carry: [".whl"]); scripts/check_gpu.sh installs them into
# /tmp/site before its checks. The versions are the ones this project's .venv holds, so the
# GPU machine runs what the CPU suite tested. The GPU image already has torch, torchvision,
# numpy, scipy, timm, pillow, pyyaml, matplotlib, tensorboard, tqdm, safetensors, huggingface_hub,
# filelock, onnx, onnxruntime (docs of the device tool: KINDS.md).
#   bash scripts/gpu_wheels.sh            # -> .whl/*.whl
#   WHEEL_DIR=dir PY=python bash scripts/gpu_wheels.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
DEST="${WHEEL_DIR:-.whl}"
# what main.py, engine.py and the check's tests import that the GPU image has not
PACKAGES=(pycocotools addict termcolor defusedxml submitit faster-coco-eval)
PLATFORMS=(manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_24_x86_64 manylinux_2_17_x86_64
           manylinux2014_x86_64 manylinux1_x86_64)

mkdir -p "$DEST"
for name in "${PACKAGES[@]}"; do
    version=$("$PY" -m pip show "$name" 2>/dev/null | awk '/^Version:/ {print $2}')
    if [ -z "$version" ]; then
        echo "gpu_wheels: $name is not installed in $PY's environment (scripts/setup_env.sh installs it)" >&2
        exit 2
    fi
    args=(--no-deps --only-binary=:all: --python-version 3.12 --implementation cp -d "$DEST")
    for p in "${PLATFORMS[@]}"; do args+=(--platform "$p"); done
    "$PY" -m pip download -q "${args[@]}" "$name==$version" ||
        { echo "gpu_wheels: no wheel of $name==$version for CPython 3.12 on manylinux x86_64" >&2; exit 1; }
    echo "gpu_wheels: $name==$version"
done
echo "gpu_wheels: $(ls "$DEST"/*.whl | wc -l) wheels, $(du -sh "$DEST" | cut -f1) in $DEST (carry it: [\"$DEST\"])"
