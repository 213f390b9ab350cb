#!/usr/bin/env bash
# Create .venv and install jepalab into it.
# On a machine without an NVIDIA GPU this pins the CPU build of torch (2.13.0) so that pip never
# pulls the multi-GB CUDA stack. If torch is already importable in .venv (e.g. a GPU user installed
# their own build first), it is kept: the package accepts torch>=2.2.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=".venv/bin/python -m pip"
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    $PIP install -q torch              # CUDA build from PyPI for GPU machines
  else
    # CPU build: from a local wheel (find-links) when present, else PyTorch's CPU index.
    $PIP install -q torch==2.13.0 2>/dev/null \
      || $PIP install -q torch==2.13.0 --index-url https://download.pytorch.org/whl/cpu
  fi
fi
$PIP install -q -e ".[dev]"
