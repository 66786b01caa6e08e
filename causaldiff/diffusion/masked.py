"""Masked decoding: a counterfactual that changes the image only where its prediction differs from the factual one."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from causaldiff.diffusion.kernels import ddim_update
from causaldiff.diffusion.sampler import EpsFn
from causaldiff.diffusion.schedule import DDIMTables


@dataclass(frozen=True)
class MaskSettings:
    """Which pixels a counterfactual step may change: where the predicted change is more than ``level`` grey levels
    (of 255), or its 3×3 mean is at least ``share`` of the image's largest.

    Measured on brain32 (residual abduction, n = 128, 50 steps; docs/results.md, "Decisions"), true-CF L1 /
    identity's by share alone: 0.15 → 0.68, 0.3 → 0.43, 0.5 → 0.52; share alone drops a change smaller than the
    largest (do(age) grows the ventricles and no longer shrinks the brain), so the level admits it (12: brain-volume
    reading off by 14 ml at L1 0.47; 24: 29 ml, 0.42; 6: the re-rendered texture comes back, 1.01).
    """

    share: float = 0.3
    level: float = 12.0  # grey levels of 255


def masked_loop(eps_fn: EpsFn, noise: Tensor, c_cf: Tensor, c_f: Tensor, tables: DDIMTables, guidance: float = 1.0,
                mask: MaskSettings = MaskSettings(), residuals: Tensor | None = None, path: Tensor | None = None,
                eps_f: Tensor | None = None, redraw: Tensor | None = None, confined: Tensor | None = None,
                removal_guidance: float = 1.0) -> Tensor:
    """DDIM decoding of ``noise`` (B, C, H, W) under ``c_cf`` (B, E) that keeps the factual decoding (under ``c_f``)
    wherever the counterfactual does not change the predicted image.

    The two paths run side by side. At each step the mask is where the channel-mean |x̂0_cf - x̂0_f| exceeds
    ``mask.level``, or its 3×3 mean is at least ``mask.share`` of that mean's largest value in the image (the main
    change, however faint): there x takes the counterfactual step,
    ``eps_f(x) + w (eps_cf(x) - eps_f(x))`` with w = ``guidance``; everywhere else x is replaced by the factual
    path's x_f (the replacement of RePaint, Lugmayr et al. 2022, and Blended Diffusion, Avrahami et al. 2022, with
    the mask taken from the prediction change as in DiffEdit, Couairon et al. 2023). With an exact abduction's
    ``residuals``, ``path`` and ``eps_f`` (S, B, C, H, W; a :class:`~causaldiff.diffusion.sampler.Trace`), the
    factual path is the inversion's, read from the trace, and every pixel outside the change comes back as it was.
    ``redraw`` (B, 1, H, W) bool: pixels decoded afresh, counterfactual at every step and without the residuals, which
    carry what the latents do not (a removed finding; see :func:`~causaldiff.inference.sites.removal_disks`).
    ``confined`` (B,) bool: rows whose change is ``redraw`` alone (a finding switched off and nothing else), where
    every pixel outside it is the factual path's, as outside a transplant's disk, and w is at least
    ``removal_guidance`` (guidance acts inside the disk alone, as a transplant's does).
    Network calls a step: one of B with a trace (two when w != 1, confined rows included), else two (three); no host
    sync.
    """
    level = mask.level / 127.5  # grey levels of 255 in [-1, 1] units
    if confined is not None and removal_guidance > guidance:
        guidance = torch.where(confined, removal_guidance, guidance).to(noise.dtype)[:, None, None, None]
    x = x_f = noise
    for i, step in enumerate(tables.to(noise.device).steps(noise.shape[0])):
        r = 0.0 if residuals is None else residuals[i] if redraw is None else residuals[i] * ~redraw
        eps_cf, eps_ff = _predictions(eps_fn, x, x_f, step.t, c_cf, c_f, guidance, None if eps_f is None else eps_f[i])
        # x̂0_cf - x̂0_f, from x̂0 = (x_t - sqrt(1 - a_t) eps) / sqrt(a_t) (DDIM eq. 9)
        change = ((x - x_f) - (1 - step.a_from).sqrt() * (eps_cf - eps_ff)) / step.a_from.sqrt()
        change = change.abs().mean(1, keepdim=True)
        smooth = F.avg_pool2d(change, 3, 1, 1)
        changed = (change > level) | (smooth >= mask.share * smooth.amax((2, 3), keepdim=True))
        if redraw is not None:
            changed = redraw | (changed if confined is None else changed & ~confined[:, None, None, None])
        x_f_next = ddim_update(x_f, eps_ff, None, step) + r if path is None else path[i]
        x = torch.where(changed, ddim_update(x, eps_cf, None, step) + r, x_f_next)
        x_f = x_f_next
    return x


def _predictions(eps_fn: EpsFn, x: Tensor, x_f: Tensor, t: Tensor, c_cf: Tensor, c_f: Tensor,
                 guidance: float | Tensor, eps_ff: Tensor | None) -> tuple[Tensor, Tensor]:
    """(guided counterfactual eps at x, factual eps at x_f) in one batched call; ``guidance`` a number or per row
    (B, 1, 1, 1); ``eps_ff`` given: not recomputed."""
    guided = torch.is_tensor(guidance) or guidance != 1.0
    xs, cs = [x], [c_cf]
    if guided:
        xs, cs = xs + [x], cs + [c_f]
    if eps_ff is None:
        xs, cs = xs + [x_f], cs + [c_f]
    eps = eps_fn(torch.cat(xs), torch.cat([t] * len(xs)), torch.cat(cs)).chunk(len(xs))
    eps_cf = torch.lerp(eps[1], eps[0], guidance) if guided else eps[0]
    return eps_cf, eps[-1] if eps_ff is None else eps_ff
