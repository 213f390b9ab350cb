#!/usr/bin/env bash
# One GPU session for benchmarks/world_models_gpu.py: a smoke run of the whole loop (one minute),
# then Push-T and Two-Room side by side on the one GPU (each records with $WORKERS processes),
# then the merged table. Results go to $RESULTS (default benchmarks/results).
set -uo pipefail
RESULTS=${RESULTS:-benchmarks/results}
WORKERS=${WORKERS:-7}
PY=${PYTHON:-python3}   # the interpreter that holds torch (PYTHON=.venv/bin/python here)
export SDL_VIDEODRIVER=dummy PYTHONUNBUFFERED=1 OMP_NUM_THREADS=1
# a machine without network: install carried wheels (gym-pusht, stable-worldmodel and their deps) if any
if ls .whl/*.whl >/dev/null 2>&1; then
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
        || exit 1
    export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH}
else
    export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
fi
mkdir -p "$RESULTS"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" benchmarks/world_models_gpu.py --quick --envs pusht tworoom --workers 4 --work /tmp/wm_gpu_quick \
    > "$RESULTS/world_models_gpu_smoke.log" 2>&1 || { tail -40 "$RESULTS/world_models_gpu_smoke.log"; exit 1; }
grep -E "^\[|success" "$RESULTS/world_models_gpu_smoke.log"
for env in pusht tworoom; do
    "$PY" benchmarks/world_models_gpu.py --envs $env --workers "$WORKERS" --work /tmp/wm_gpu \
        --out "$RESULTS/world_models_gpu_$env.json" > "$RESULTS/world_models_gpu_$env.log" 2>&1 &
done
wait
tail -5 "$RESULTS"/world_models_gpu_pusht.log "$RESULTS"/world_models_gpu_tworoom.log
for env in pusht tworoom; do   # the compact planning model on the same recorded data
    "$PY" benchmarks/world_models_gpu.py --recipe compact --envs $env --workers "$WORKERS" --work /tmp/wm_gpu \
        --out "$RESULTS/world_models_gpu_compact_$env.json" > "$RESULTS/world_models_gpu_compact_$env.log" 2>&1 &
done
wait
"$PY" benchmarks/world_models_gpu.py --md "$RESULTS/world_models_gpu.md" "$RESULTS"/world_models_gpu_*.json
