#!/bin/bash
# The GPU benchmark (issue 17), a thin wrapper of bench/gpu.py (its docstring says what it measures):
#   bash bench/gpu.sh                        # on a CUDA machine: under 8 minutes on one H100/H200
#   bash bench/gpu.sh --device cpu --tiny    # the same code, tiny, on a CPU: under 2 minutes
# It prints markdown tables and writes bench/results/gpu.json (--tiny: gpu-tiny.json; --out FILE elsewhere).
# Python: $PYTHON, else the project's .venv, else python3 (a plain checkout with torch preinstalled works;
# inrkit need not be installed).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
exec "$PYTHON" bench/gpu.py "$@"
