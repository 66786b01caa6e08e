"""The per-step DDIM update (guidance + x0 prediction + optional clipping + move to the next noise level).

DDIM (Song et al., 2021, eq. 12, eta = 0) with classifier-free guidance (Ho & Salimans, 2022):
  eps  = eps_u + w (eps_c - eps_u)
  x0   = (x - sqrt(1 - a_from) eps) / sqrt(a_from)
  x'   = sqrt(a_to) x0 + sqrt(1 - a_to) eps
Sampling moves to a lower noise level, inversion to a higher one; the maths is the same.
``ddim_update`` runs one fused Triton kernel (one read of x, eps_c, eps_u and one write, fp32 arithmetic) on
CUDA and the torch reference elsewhere. The step's ``a_from``/``a_to`` are 0-d device tensors read inside the
kernel: no host sync, so the loop can be captured in a CUDA graph.
"""

from __future__ import annotations

import os

import torch
from torch import Tensor

from causaldiff.diffusion.schedule import Step

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - triton ships with CUDA builds of torch
    triton = None


def ddim_update_reference(x: Tensor, eps_c: Tensor, eps_u: Tensor | None, step: Step, guidance: float = 1.0,
                          clip: float | None = None) -> Tensor:
    """Torch reference. ``x, eps_*``: (B, C, H, W); ``step`` holds 0-d tensors on x's device.

    Without clipping it uses the linear form ``c_x x + c_eps eps`` (three kernels a step: lerp, mul, addcmul).
    """
    eps = eps_c if eps_u is None else torch.lerp(eps_u, eps_c, guidance)
    if clip is None:
        return torch.addcmul(eps * step.c_eps, x, step.c_x)
    x0 = ((x - (1 - step.a_from).sqrt() * eps) / step.a_from.sqrt()).clamp(-clip, clip)
    return step.a_to.sqrt() * x0 + (1 - step.a_to).sqrt() * eps


if triton is not None:

    @triton.jit
    def _ddim_kernel(x_ptr, ec_ptr, eu_ptr, out_ptr, a_from_ptr, a_to_ptr, n, w, clip,
                     HAS_UNCOND: tl.constexpr, CLIP: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        m = offs < n
        x = tl.load(x_ptr + offs, mask=m).to(tl.float32)
        eps = tl.load(ec_ptr + offs, mask=m).to(tl.float32)
        if HAS_UNCOND:
            eu = tl.load(eu_ptr + offs, mask=m).to(tl.float32)
            eps = eu + w * (eps - eu)
        a_from = tl.load(a_from_ptr).to(tl.float32)
        a_to = tl.load(a_to_ptr).to(tl.float32)
        x0 = (x - tl.sqrt(1.0 - a_from) * eps) / tl.sqrt(a_from)
        if CLIP:
            x0 = tl.minimum(tl.maximum(x0, -clip), clip)
        out = tl.sqrt(a_to) * x0 + tl.sqrt(1.0 - a_to) * eps
        tl.store(out_ptr + offs, out.to(out_ptr.dtype.element_ty), mask=m)


def ddim_update_fused(x: Tensor, eps_c: Tensor, eps_u: Tensor | None, step: Step, guidance: float = 1.0,
                      clip: float | None = None, block: int = 1024) -> Tensor:
    """The same maths as :func:`ddim_update_reference` in one Triton kernel (CUDA, or CPU under TRITON_INTERPRET=1)."""
    if triton is None:
        raise RuntimeError("triton is not installed")
    x, eps_c = x.contiguous(), eps_c.contiguous()
    eps_u = eps_c if eps_u is None else eps_u.contiguous()
    out = torch.empty_like(x)
    n = x.numel()
    _ddim_kernel[(triton.cdiv(n, block),)](
        x, eps_c, eps_u, out, step.a_from, step.a_to, n, float(guidance), float(clip or 0.0),
        HAS_UNCOND=eps_u is not eps_c, CLIP=clip is not None, BLOCK=block,
    )
    return out


def fused_available(x: Tensor) -> bool:
    """Use the Triton kernel on CUDA tensors (opt out with CAUSALDIFF_FUSED=0)."""
    return triton is not None and x.is_cuda and os.environ.get("CAUSALDIFF_FUSED", "1") != "0"


def ddim_update(x: Tensor, eps_c: Tensor, eps_u: Tensor | None, step: Step, guidance: float = 1.0,
                clip: float | None = None) -> Tensor:
    """One DDIM step: fused Triton kernel on CUDA, torch reference elsewhere."""
    if fused_available(x):
        return ddim_update_fused(x, eps_c, eps_u, step, guidance, clip)
    return ddim_update_reference(x, eps_c, eps_u, step, guidance, clip)
