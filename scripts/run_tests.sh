#!/usr/bin/env bash
# Set up (scripts/setup_env.sh) and run the whole test suite on the CPU.
# Extra arguments go to pytest, e.g. scripts/run_tests.sh -k parity
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-2}"
.venv/bin/python -m pytest -q "$@"
