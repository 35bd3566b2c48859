#!/usr/bin/env bash
# Create .venv and install tuneport with what the local path and the tests need.
# CPU machines: torch is pinned to 2.13.0 first, which pip takes from the local CPU wheel
# (a bare `torch` would pull several GB of CUDA packages).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null 2>&1 || true
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    .venv/bin/python -m pip install -q torch
  else
    .venv/bin/python -m pip install -q torch==2.13.0
  fi
fi
.venv/bin/python -m pip install -q -e ".[local,dev]"
echo "tuneport installed in $(pwd)/.venv"
