#!/usr/bin/env bash
# GPU checks in one command (on a machine with CUDA): the gpu-marked tests, the sampler benchmark's eager vs
# CUDA-graph rows, and GPU training throughput. Results land in $OUT (or benchmarks/results/gpu/).
#   bash benchmarks/gpu_check.sh
# Packages missing on the GPU host can travel as wheels in .whl/ (installed to /tmp/site first).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT_DIR="${OUT:-benchmarks/results/gpu}"
mkdir -p "$OUT_DIR"
if compgen -G ".whl/*.whl" > /dev/null; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
  export PYTHONPATH="/tmp/site:${PYTHONPATH:-}"
fi
export PYTHONPATH="$PWD:${PYTHONPATH:-}" PYTHONUNBUFFERED=1 WANDB_MODE=offline HF_HUB_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT_DIR/gpu.txt"
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)" | tee -a "$OUT_DIR/gpu.txt"
python3 -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu.py 2>&1 | tail -15 | tee "$OUT_DIR/gpu_tests.txt"
python3 benchmarks/sampler.py --gpu-only --steps 50 --repeats 3 --out "$OUT_DIR/sampler.json" 2>&1 | tee "$OUT_DIR/sampler.txt"
python3 benchmarks/train_speed.py --steps 20 --configs pendulum32 pendulum96 --devices cuda --out "$OUT_DIR/train_speed.json" 2>&1 \
  | tee "$OUT_DIR/train_speed.txt"
