"""The two pixel scales: uint8 [0, 255] on disk and in the worlds, floats in [-1, 1] in every model."""

from __future__ import annotations

import torch
from torch import Tensor


def to_unit(x: Tensor) -> Tensor:
    """uint8 [0, 255] → float32 [-1, 1] (same shape)."""
    return x.float() / 127.5 - 1


def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] floats → uint8 [0, 255] (same shape, on the CPU), clamped and rounded."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
