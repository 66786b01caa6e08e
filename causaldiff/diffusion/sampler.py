"""DDIM sampling and deterministic inversion loops (eta = 0), with classifier-free guidance in one network call.

``eps_fn(x, t, cond) -> eps`` is any denoiser: ``x`` (B, C, H, W), ``t`` (B,) long, ``cond`` (B, E).
The loops keep every coefficient on the device and make no host syncs.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

from causaldiff.diffusion.kernels import ddim_update
from causaldiff.diffusion.schedule import DDIMTables

EpsFn = Callable[[Tensor, Tensor, Tensor], Tensor]


def guided_eps(eps_fn: EpsFn, x: Tensor, t: Tensor, cond: Tensor, null: Tensor | None,
               guidance: float) -> tuple[Tensor, Tensor | None]:
    """(eps_c, eps_u): conditional and null predictions from **one** batched call (eps_u None without guidance)."""
    if null is None or guidance == 1.0:
        return eps_fn(x, t, cond), None
    eps = eps_fn(torch.cat([x, x]), torch.cat([t, t]), torch.cat([cond, null.expand_as(cond)]))
    eps_c, eps_u = eps.chunk(2)
    return eps_c, eps_u


def ddim_loop(eps_fn: EpsFn, x: Tensor, cond: Tensor, tables: DDIMTables, guidance: float = 1.0,
              null: Tensor | None = None, clip: float | None = None) -> Tensor:
    """Run every step of ``tables`` from ``x``; sampling or inversion depending on the tables."""
    b = x.shape[0]
    tables = tables.to(x.device)
    for i in range(len(tables)):
        t = tables.t[i].expand(b)
        eps_c, eps_u = guided_eps(eps_fn, x, t, cond, null, guidance)
        x = ddim_update(x, eps_c, eps_u, tables.a_from[i], tables.a_to[i], guidance, clip)
    return x


def ddim_sample(eps_fn: EpsFn, noise: Tensor, cond: Tensor, tables: DDIMTables, guidance: float = 1.0,
                null: Tensor | None = None, clip: float | None = None) -> Tensor:
    """Decode ``noise`` (x_T) to an image under ``cond``; ``guidance`` w > 1 strengthens the condition."""
    if guidance != 1.0 and null is None:
        raise ValueError("guidance != 1 needs the null condition")
    return ddim_loop(eps_fn, noise, cond, tables, guidance, null, clip)


def ddim_invert(eps_fn: EpsFn, x: Tensor, cond: Tensor, tables: DDIMTables) -> Tensor:
    """Deterministic DDIM inversion x_0 → x_T under ``cond`` (the abduction of the decoder's noise)."""
    return ddim_loop(eps_fn, x, cond, tables)
