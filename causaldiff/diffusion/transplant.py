"""Transplant decoding: a finding's banked appearance added late at a site, guided inside a disk around it, every
other pixel the factual decoding's (:mod:`causaldiff.inference.sites` abducts, banks and draws the sites).

The image follows its factual decoding until the first sampling step at or below ``TransplantSettings.at`` of the
training timesteps, where the banked change is added to x_t at the site (x_t += sqrt(ā_t) · patch: an x0 edit);
from there guidance acts inside a disk around the site and every pixel outside it is taken from the factual decoding
(the known-region replacement of RePaint, Lugmayr et al., 2022, with the region given by the site).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from causaldiff.diffusion.kernels import ddim_update
from causaldiff.diffusion.sampler import EpsFn
from causaldiff.diffusion.schedule import DDIMTables


@dataclass(frozen=True)
class TransplantSettings:
    """How a banked finding is transplanted. Lengths are multiples of the finding's measured size, the half width at
    half maximum (HWHM, in px) of its banked change (:func:`~causaldiff.inference.sites.finding_hwhm`, stored with
    its site bank), so that a finding of another size gets a disk and a window in proportion.

    The values were measured on the brain world (docs/results.md, "Decisions"), whose lesions measure 1.26 px HWHM
    at 32 px: a disk of 3.5 px (2.8 HWHM) holds them, a 7 px window (half side 2.4 HWHM) their appearance; at w = 1
    the decoder erases half of a transplanted lesion (``guidance`` 3 keeps it), and a removal decoded at w = 1 leaves
    part of the lesion, so the banked change is weaker (``removal_guidance`` 2: 76 % → 92 % of do(lesion=1) read
    back). The multiples were fixed there and checked on lesions half and twice as wide (docs/results.md).
    """

    disk: float = 2.8  # radius of the disk around the site where guidance acts and pixels may change, in HWHMs
    window: float = 2.4  # half side of the banked appearance window, in HWHMs
    at: float = 0.05  # the transplant's timestep, as a fraction of the training timesteps
    gain: float = 1.0  # the transplanted change over the banked one
    guidance: float = 3.0  # guidance weight inside the disk
    removal_guidance: float = 2.0  # guidance of the removal that abducts a site (sites.abduct_sites), the least
    # inside a removal's disk (masked_loop)

    def patch_side(self, hwhm: float) -> int:
        """The (odd) side of the appearance window of a finding ``hwhm`` px wide at half maximum."""
        return 2 * max(1, round(self.window * hwhm)) + 1

    def step(self, tables: DDIMTables, train_timesteps: int) -> int:
        """The index of the first step of ``tables`` at or below ``at`` × ``train_timesteps`` (found on the host,
        once: the loop itself never syncs); ``len(tables)`` when there is none."""
        due = torch.nonzero(tables.t.cpu() <= round(self.at * train_timesteps)).flatten()
        return int(due[0]) if len(due) else len(tables.t)


def windows(where: Tensor, size: int, p: int) -> tuple[Tensor, Tensor]:
    """(B, p) row and column indices of the p × p window centred on each site of ``where`` (B, 3) in an image of
    ``size`` px (NaN rows: the centre's window); indices may fall outside [0, size)."""
    centre = (where[:, :2].nan_to_num(0.5) * size).long().clamp(0, size - 1)
    offsets = torch.arange(p, device=where.device) - p // 2
    return centre[:, :1] + offsets, centre[:, 1:] + offsets


def take(img: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """(B, C, n, m): img[b, :, rows[b], cols[b]] for index grids rows (B, n) and cols (B, m) of img (B, C, H, H),
    zero where an index falls outside the image."""
    h = img.shape[-1]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < h))[:, None, :]
    b = torch.arange(len(img), device=img.device)[:, None, None]
    taken = img.permute(0, 2, 3, 1)[b, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, h - 1)[:, None, :]]
    return torch.where(inside[..., None], taken, 0.0).permute(0, 3, 1, 2)


def place_patches(where: Tensor, patches: Tensor, size: int) -> Tensor:
    """(B, C, size, size): each patch (B, C, P, P) centred on its site of ``where`` (B, 3), zero elsewhere (and for a
    NaN row)."""
    rows, cols = windows(where, size, patches.shape[-1])
    pixels = torch.arange(size, device=rows.device)[None, :]
    placed = take(patches, pixels - rows[:, :1], pixels - cols[:, :1])  # each pixel's index in its window
    return torch.where(where[:, 0].isfinite().view(-1, 1, 1, 1), placed, 0.0)


def site_disk(where: Tensor, size: int, radius: Tensor | float) -> Tensor:
    """(B, 1, size, size) bool disk of ``radius`` px (a number, or (B,) one per site) around each site of ``where``
    (B, 3) (NaN rows: empty)."""
    grid = (torch.arange(size, dtype=torch.float32, device=where.device) + 0.5) / size
    dy = (grid.view(1, -1, 1) - where[:, 0].view(-1, 1, 1)) * size
    dx = (grid.view(1, 1, -1) - where[:, 1].view(-1, 1, 1)) * size
    radius = torch.as_tensor(radius, dtype=torch.float32, device=where.device).expand(len(where))
    return (dy ** 2 + dx ** 2 <= radius.view(-1, 1, 1) ** 2)[:, None]  # NaN compares False


def transplant_loop(eps_fn: EpsFn, noise: Tensor, c_cf: Tensor, c_f: Tensor, where: Tensor, patches: Tensor,
                    hwhm: Tensor, residuals: Tensor | None = None, path: Tensor | None = None,
                    eps_f: Tensor | None = None, *,
                    tables: DDIMTables, settings: TransplantSettings, bump_at: int) -> Tensor:
    """DDIM decoding of ``noise`` (B, C, H, W) that transplants ``patches`` (B, C, P, P) at each image's site of
    ``where`` (B, 3) at step ``bump_at`` (:meth:`TransplantSettings.step`); ``hwhm`` (B,): each finding's size in px.

    Before it, the factual decoding under ``c_f``; at it, x_t += ``settings.gain`` · sqrt(ā_t) · placed patch; after it,
    ``eps = eps_f + W (eps_cf - eps_f)`` with W = ``settings.guidance`` inside the site's disk (radius ``settings.disk``
    × ``hwhm``), every pixel outside the disk the factual path's. An exact abduction's ``residuals`` (S, B, C, H, W) are
    added after each step to both paths; with its ``path`` and ``eps_f`` too (a
    :class:`~causaldiff.diffusion.sampler.Trace`), the factual path is read from it: no network call before the
    transplant and two of B a step after it (else one of B before, three after). No host sync, so
    :class:`~causaldiff.diffusion.sampler.LoopRunner` can capture it.
    """
    size = noise.shape[-1]
    bump = settings.gain * place_patches(where, patches, size).to(noise.dtype)
    disk = site_disk(where, size, settings.disk * hwhm)
    weight = torch.where(disk, settings.guidance, 0.0).to(noise.dtype)
    x = x_f = noise
    for i, step in enumerate(tables.to(noise.device).steps(noise.shape[0])):
        r = 0.0 if residuals is None else residuals[i]
        if i < bump_at:  # still the factual decoding
            x = x_f = ddim_update(x_f, eps_fn(x_f, step.t, c_f), None, step) + r if path is None else path[i]
            continue
        if i == bump_at:
            x = x + step.a_from.sqrt() * bump
        if eps_f is None:
            eps_cf, eps_u, eps_ff = eps_fn(torch.cat([x, x, x_f]), torch.cat([step.t] * 3),
                                           torch.cat([c_cf, c_f, c_f])).chunk(3)
        else:
            (eps_cf, eps_u), eps_ff = eps_fn(torch.cat([x, x]), torch.cat([step.t] * 2),
                                             torch.cat([c_cf, c_f])).chunk(2), eps_f[i]
        x_f = ddim_update(x_f, eps_ff, None, step) + r if path is None else path[i]
        x = torch.where(disk, ddim_update(x, torch.addcmul(eps_u, weight, eps_cf - eps_u), None, step) + r, x_f)
    return x
