"""The per-step DDIM update (guidance + x0 prediction + optional clipping + move to the next noise level).

DDIM (Song et al., 2021, eq. 12, eta = 0) with classifier-free guidance (Ho & Salimans, 2022):
  eps  = eps_u + w (eps_c - eps_u)
  x0   = (x - sqrt(1 - a_from) eps) / sqrt(a_from)
  x'   = sqrt(a_to) x0 + sqrt(1 - a_to) eps
Sampling moves to a lower noise level (a_to > a_from), inversion to a higher one; the maths is the same.
"""

from __future__ import annotations

from torch import Tensor


def ddim_update(x: Tensor, eps_c: Tensor, eps_u: Tensor | None, a_from: Tensor, a_to: Tensor, guidance: float = 1.0,
                clip: float | None = None) -> Tensor:
    """Torch reference of the fused step. ``x, eps_*``: (B, C, H, W); ``a_from, a_to``: 0-d device tensors."""
    eps = eps_c if eps_u is None else eps_u + guidance * (eps_c - eps_u)
    x0 = (x - (1 - a_from).sqrt() * eps) / a_from.sqrt()
    if clip is not None:
        x0 = x0.clamp(-clip, clip)
    return a_to.sqrt() * x0 + (1 - a_to).sqrt() * eps
