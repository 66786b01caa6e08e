#!/usr/bin/env bash
# On a GPU host: fine-tune brain32 with configs/brain32_balanced.yaml (lesion-balanced batches, P2 weighting,
# posterior-mean latents) for MAX_STEPS at batch 128, then measure whether do(lesion=1) now draws lesions:
# decoder condition use, and the augmentation benchmark with the fine-tuned model.
#   MAX_STEPS=20000 bash benchmarks/gpu_lesion.sh     → $OUT (or runs/gpu_lesion)/{condition_use,augment}.*, model
# Smoke test on a CPU: MAX_STEPS=5 AUG_N=200 SEEDS=1 EPOCHS=1 bash benchmarks/gpu_lesion.sh
set -euo pipefail
cd "$(dirname "$0")/.."
DEST="${OUT:-runs/gpu_lesion}"
mkdir -p "$DEST"
if compgen -G ".whl/*.whl" > /dev/null; then  # the device lacks some wheels: carry them in .whl/
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 WANDB_MODE=offline HF_HUB_OFFLINE=1
python3 -m causaldiff.cli fit --config configs/brain32_balanced.yaml --data.batch_size=128 \
  --trainer.max_steps="${MAX_STEPS:-20000}" --trainer.max_time=null --trainer.enable_progress_bar=false \
  > "$DEST/fit.log" 2>&1
CKPT=runs/brain32_balanced/checkpoints/last.ckpt
python3 -c "from causaldiff.training.export import export_checkpoint as e; e('$CKPT', '$DEST/brain32_balanced.ckpt')"
python3 benchmarks/condition_use.py --checkpoint brain32 "$CKPT" --out "$DEST/condition_use.json" | tail -6
python3 benchmarks/augment.py --checkpoint "$CKPT" --n "${AUG_N:-2000}" --seeds "${SEEDS:-3}" \
  --epochs "${EPOCHS:-8}" --out "$DEST/augment.json" | tail -8
