"""Site codes: where a local finding (a lesion) that ``do()`` switches on is drawn.

A binary node's finding can be local with an exogenous site: a lesion-free image cannot say where a lesion would be,
and the causal latent of a model trained on images alone need not carry it (ablation.md section 7). The site is
therefore its own exogenous code, kept outside the network:

- **abducted** from an image that shows the finding as where removing it changes the image most: the brightest
  3×3-smoothed |x̂(do(node=0)) − x|, with that change's height (:func:`abduct_sites`);
- **drawn** from a bank of such sites (:class:`SiteBank`, the empirical prior) when ``do()`` switches the node on,
  seeded, so several seeds give several plausible counterfactuals;
- **decoded** by :func:`site_loop`: a Gaussian bump of 1.5 × the bank's height is placed at the site once, at the
  first sampling step at or below a tenth of the training timesteps (x_t += sqrt(ā_t) · bump: an x0 bump, the rare
  class's initial-noise nudge), and guidance w acts only inside a disk around the site while every other pixel is
  decoded under the factual condition (the masked sampling of Fontanella et al., 2023, with the mask given by the
  site instead of the prediction change). A late, small nudge draws a lesion near the real size; an early one
  (t = T/2) needs 8 × the height and draws it twice the real area (guidance.md, "Site codes").
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.nn import functional as F

from causaldiff.diffusion.kernels import ddim_update
from causaldiff.diffusion.sampler import EpsFn, local_weight
from causaldiff.diffusion.schedule import DDIMTables

SIGMA_PX, DISK_PX = 1.0, 3.5  # bump width and guidance disk radius, in pixels of a 32 px image (scaled with size)
BUMP_GAIN = 1.5  # the bump's height over the bank's: a nudge that guidance grows into the finding
BUMP_AT = 0.1  # the nudge's timestep, as a fraction of the training timesteps
BUMP_MEAN_3X3 = float(sum(torch.exp(torch.tensor(-(dy * dy + dx * dx) / 2.0)) for dy in (-1, 0, 1)
                          for dx in (-1, 0, 1)) / 9)  # a unit 1 px-σ bump's 3×3 mean at its peak (0.544)


def change_peaks(x: Tensor, removed: Tensor) -> Tensor:
    """(B, 3) sites where the 3×3-smoothed channel-mean x − removed is largest in size: (row, col) as fractions of
    the image side (pixel centres) and the finding's signed height in [-1, 1] image units (> 0: brighter)."""
    change = F.avg_pool2d((x - removed).mean(1, keepdim=True), 3, 1, 1, count_include_pad=False).flatten(1)
    size = x.shape[-1]
    i = change.abs().argmax(1)
    rows, cols = (i // size).float(), (i % size).float()
    height = change.gather(1, i[:, None])[:, 0]
    return torch.stack([(rows + 0.5) / size, (cols + 0.5) / size, height / BUMP_MEAN_3X3], 1)


class SiteBank:
    """The empirical prior of a node's sites: (M, 3) rows of (row, col, height) (see :func:`change_peaks`)."""

    def __init__(self, sites: Tensor):
        if sites.ndim != 2 or sites.shape[1] != 3 or sites.shape[0] == 0:
            raise ValueError(f"a site bank needs (M >= 1, 3) sites, got {tuple(sites.shape)}")
        self.sites = sites.float().cpu()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Tensor:
        """(n, 3) sites drawn uniformly from the bank, seeded by ``generator`` (CPU)."""
        return self.sites[torch.randint(self.sites.shape[0], (n,), generator=generator)]


def site_maps(sites: Tensor, size: int, gain: float = BUMP_GAIN, disk_px: float = DISK_PX) -> tuple[Tensor, Tensor]:
    """The bump (B, 1, size, size) of ``gain`` × each site's height (NaN rows: none) and the disk
    (B, 1, size, size) bool of radius ``disk_px`` (at 32 px) around it where guidance acts."""
    scale = size / 32
    grid = (torch.arange(size, dtype=torch.float32, device=sites.device) + 0.5) / size
    dy = (grid.view(1, -1, 1) - sites[:, 0].view(-1, 1, 1)) * size
    dx = (grid.view(1, 1, -1) - sites[:, 1].view(-1, 1, 1)) * size
    d2 = dy ** 2 + dx ** 2
    bump = gain * sites[:, 2].view(-1, 1, 1) * torch.exp(-d2 / (2 * (SIGMA_PX * scale) ** 2))
    disk = d2 <= (disk_px * scale) ** 2
    drawn = sites[:, 0].isfinite().view(-1, 1, 1)
    return torch.where(drawn, bump, 0.0)[:, None], (disk & drawn)[:, None]


def site_loop(eps_fn: EpsFn, noise: Tensor, c_cf: Tensor, c_f: Tensor, tables: DDIMTables, guidance: float,
              sites: Tensor, t_bump: int, gain: float = BUMP_GAIN, disk_px: float = DISK_PX,
              residuals: Tensor | None = None) -> Tensor:
    """DDIM decoding of ``noise`` (B, C, H, W) that draws a finding at ``sites`` (B, 3); NaN rows (images whose
    finding is not switched on) are decoded with masked guidance (:func:`local_weight`, 0 outside the mask).

    For drawn images: ``eps = eps_f + W (eps_cf - eps_f)`` with W = ``guidance`` inside the site's disk and 0
    outside (the rest stays the factual decoding), and the site's bump added once at the first step with
    t <= ``t_bump``. ``residuals`` (S, B, C, H, W) of an exact abduction are added after each step. One network
    call of 2B a step; no host sync inside the loop.
    """
    bump, disk = site_maps(sites.to(noise.device), noise.shape[-1], gain, disk_px)
    drawn = sites[:, 0].isfinite().to(noise.device).view(-1, 1, 1, 1)
    weight = torch.where(disk, guidance, 0.0).to(noise.dtype)
    all_drawn = bool(drawn.all())
    due = torch.nonzero(tables.t.cpu() <= t_bump).flatten()
    bump_at = int(due[0]) if len(due) else -1  # the step index, found once: no host sync in the loop
    x = noise
    for i, step in enumerate(tables.to(noise.device).steps(noise.shape[0])):
        if i == bump_at:
            x = x + step.a_from.sqrt() * bump
        eps_cf, eps_f = eps_fn(torch.cat([x, x]), torch.cat([step.t, step.t]), torch.cat([c_cf, c_f])).chunk(2)
        w = weight if all_drawn else torch.where(drawn, weight, local_weight(eps_cf, eps_f, guidance, outside=0.0))
        x = ddim_update(x, torch.addcmul(eps_f, w, eps_cf - eps_f), None, step)
        if residuals is not None:
            x = x + residuals[i]
    return x


@torch.no_grad()
def abduct_sites(pipe, x: Tensor, labels: dict[str, Tensor], node: str, steps: int = 20) -> Tensor:
    """(B, 3) sites of ``node``'s finding in images x (B, C, H, W) that show it: where do(node=0) changes them most."""
    ab = pipe.abduct(x, labels, steps)
    cf_z, _ = pipe.intervene(ab, {node: 0.0}, torch.Generator().manual_seed(0))
    removed = pipe.predict(ab.noise, cf_z, ab.s, steps, 1.0, ab.z, residuals=ab.residuals)
    return change_peaks(x.to(removed.device), removed).cpu()
