"""Where bf16 arithmetic pays: CUDA, and CPUs with native bf16 units (AVX512-BF16 or AMX). Elsewhere PyTorch falls
back to a bf16 convolution that ran a pendulum32 training step 17x slower than float32 (benchmarks/train_speed.py)."""

from __future__ import annotations

import torch


def native_bf16(device: str | torch.device = "cpu") -> bool:
    """Whether ``device`` computes bf16 natively."""
    return torch.device(device).type == "cuda" or torch.ops.mkldnn._is_mkldnn_bf16_supported()
