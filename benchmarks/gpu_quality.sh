#!/usr/bin/env bash
# On a GPU host: train the three 32 px worlds in parallel (one process each; the models are small and
# launch-bound, so they share the GPU well), evaluate every variant, export the EMA models.
#   bash benchmarks/gpu_quality.sh            → $OUT (or runs/gpu_quality)/{results,models,logs}
set -uo pipefail
cd "$(dirname "$0")/.."
DEST="${OUT:-runs/gpu_quality}"
mkdir -p "$DEST/results" "$DEST/models" "$DEST/logs"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 WANDB_MODE=offline HF_HUB_OFFLINE=1
ARGS="--batch-size 128 --max-steps ${MAX_STEPS:-2000} --predictor-epochs 6 --n 256 --steps 20 --cycles 10"
for w in pendulum morpho brain; do
  python3 benchmarks/quality.py --worlds $w --part-only $ARGS --workdir /tmp/quality \
    --results "$DEST/results" --export "$DEST/models" > "$DEST/logs/$w.log" 2>&1 &
done
wait
python3 benchmarks/quality.py --merge-only --results "$DEST/results" | tail -40
for w in pendulum morpho brain; do
  tail -3 "$DEST/logs/$w.log"
  cp /tmp/quality/$w/lightning_logs/version_0/metrics.csv "$DEST/logs/${w}_metrics.csv" 2>/dev/null
  cp /tmp/quality/$w/lightning_logs/version_0/grids/*.png "$DEST/logs/${w}_grid.png" 2>/dev/null
done
ls -la "$DEST/models"
