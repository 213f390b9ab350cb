#!/usr/bin/env bash
# One GPU session for benchmarks/world_models_gpu.py, sized for 9 minutes: a smoke run of the whole
# loop on the compact recipe (under a minute); then per env (Push-T, Two-Room, side by side on the
# one GPU) LeWM's ViT-tiny records the data ($WORKERS processes) and trains, while the compact model
# starts on the same recording as soon as it is complete; then the merged table.
# Results (JSON + table) go to $RESULTS (default benchmarks/results); logs to $LOGS.
set -uo pipefail
RESULTS=${RESULTS:-benchmarks/results}
LOGS=${LOGS:-$RESULTS}
WORKERS=${WORKERS:-7}
LEWM_GOALS=${LEWM_GOALS:-30}      # LeWM's CEM 300 x 30 costs about 5 s per goal on an H200
COMPACT_GOALS=${COMPACT_GOALS:-100}
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
mkdir -p "$RESULTS" "$LOGS"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader || true
"$PY" benchmarks/world_models_gpu.py --quick --recipe compact --envs tworoom --workers 4 --work /tmp/wm_gpu_quick \
    > "$LOGS/world_models_gpu_smoke.log" 2>&1 || { tail -40 "$LOGS/world_models_gpu_smoke.log"; exit 1; }
grep -E "^\[" "$LOGS/world_models_gpu_smoke.log"
for env in pusht tworoom; do
    "$PY" benchmarks/world_models_gpu.py --envs $env --workers "$WORKERS" --work /tmp/wm_gpu --goals "$LEWM_GOALS" \
        --out "$RESULTS/world_models_gpu_$env.json" > "$LOGS/world_models_gpu_$env.log" 2>&1 &
    # the compact model waits for LeWM's process to finish recording (meta.json is written last)
    ( while [ ! -f /tmp/wm_gpu/$env/mixed/meta.json ]; do sleep 3; done
      "$PY" benchmarks/world_models_gpu.py --recipe compact --envs $env --workers "$WORKERS" --work /tmp/wm_gpu \
        --goals "$COMPACT_GOALS" --out "$RESULTS/world_models_gpu_compact_$env.json" \
        > "$LOGS/world_models_gpu_compact_$env.log" 2>&1 ) &
done
wait
grep -hE "^\[" "$LOGS"/world_models_gpu_*.log
"$PY" benchmarks/world_models_gpu.py --md "$RESULTS/world_models_gpu.md" "$RESULTS"/world_models_gpu_*.json
