"""Site codes: where a local finding (a lesion) that ``do()`` switches on is drawn, and what it looks like.

A binary node's finding can be local with an exogenous site and appearance: a lesion-free image cannot say where a
lesion would be or what it would look like, and the causal latent of a model trained on images alone need not carry
either (docs/DESIGN.md, "Site codes"). They are therefore an exogenous code of their own, kept outside the network:

- **abducted** from an image that shows the finding by removing it: the site is where do(node=0) changes the image
  most (the brightest 3×3-smoothed |x − x̂(do(node=0))|, with that change's signed height), the appearance is the
  change itself in a small window around the site (:func:`abduct_sites`);
- **drawn** from a bank of such codes (:class:`SiteBank`, the empirical prior) when ``do()`` switches the node on,
  seeded, so several seeds give several plausible counterfactuals;
- **stored** in the checkpoint (:func:`fit_site_banks` at export, :func:`load_site_banks` at inference), so
  inference never reads training images;
- **decoded** by :func:`site_loop`: the image follows its factual decoding until the first sampling step at or
  below ``TransplantSettings.at`` of the training timesteps, where the banked change is added to x_t at the drawn
  site (x_t += sqrt(ā_t) · patch: an x0 edit, a lesion transplant); from there guidance w acts inside a disk around
  the site and every pixel outside the disk is taken from the factual decoding (the RePaint replacement of Lugmayr
  et al., 2022, with the known region given by the site), so the rest of the image is the factual decoding exactly
  (with residual abduction: the source itself). A late transplant keeps the real finding's size and contrast; a
  nudge the decoder has to grow (a Gaussian bump at t = 0.1 T) draws blobs of every size, from none to several times
  a real one, and a classifier trained on them finds fewer real lesions (docs/results.md, "Lesions").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from causaldiff.diffusion.kernels import ddim_update
from causaldiff.diffusion.sampler import EpsFn
from causaldiff.diffusion.schedule import DDIMTables


@dataclass(frozen=True)
class TransplantSettings:
    """How a banked finding is transplanted; lengths are pixels of a 32 px image, scaled with the image size.

    The values were measured on the brain world (docs/results.md, "Decisions"): a disk of 3.5 px holds its lesions,
    a 7 px window their appearance; at w = 1 the decoder erases half of a transplanted lesion (``guidance`` 3 keeps
    it), and a removal decoded at w = 1 leaves part of the lesion, so the banked change is weaker
    (``removal_guidance`` 2: 76 % → 92 % of do(lesion=1) read back).
    """

    disk_px: float = 3.5  # radius of the disk around the site where guidance acts and pixels may change
    patch_px: int = 7  # side of the banked appearance window (kept odd)
    at: float = 0.05  # the transplant's timestep, as a fraction of the training timesteps
    gain: float = 1.0  # the transplanted change over the banked one
    guidance: float = 3.0  # guidance weight inside the disk
    removal_guidance: float = 2.0  # guidance of the masked removal that abducts a site (abduct_sites)

    def patch_side(self, size: int) -> int:
        """The (odd) side of an appearance window for images of ``size`` px."""
        return 2 * round((self.patch_px // 2) * size / 32) + 1


@dataclass
class Sites:
    """Site codes for a batch: ``where`` (B, 3) rows of (row, col) as fractions of the image side and the finding's
    signed height (NaN rows: nothing drawn), ``patches`` (B, C, P, P) its appearance (the change its removal makes)."""

    where: Tensor
    patches: Tensor

    @property
    def drawn(self) -> Tensor:
        """(B,) bool: the images that get a finding."""
        return self.where[:, 0].isfinite()

    @staticmethod
    def cat(parts: list[Sites]) -> Sites:
        return Sites(torch.cat([p.where for p in parts]), torch.cat([p.patches for p in parts]))


def change_peaks(x: Tensor, removed: Tensor) -> Tensor:
    """(B, 3) sites where the 3×3-smoothed channel-mean x − removed is largest in size: (row, col) as fractions of
    the image side (pixel centres) and the change's signed height there (> 0: brighter)."""
    change = F.avg_pool2d((x - removed).mean(1, keepdim=True), 3, 1, 1, count_include_pad=False).flatten(1)
    size = x.shape[-1]
    i = change.abs().argmax(1)
    rows, cols = (i // size).float(), (i % size).float()
    return torch.stack([(rows + 0.5) / size, (cols + 0.5) / size, change.gather(1, i[:, None])[:, 0]], 1)


def _windows(where: Tensor, size: int, p: int) -> tuple[Tensor, Tensor]:
    """(B, p) row and column indices of the p × p window centred on each site of ``where`` (B, 3) in an image of
    ``size`` px (NaN rows: the centre's window); indices may fall outside [0, size)."""
    centre = (where[:, :2].nan_to_num(0.5) * size).long().clamp(0, size - 1)
    offsets = torch.arange(p, device=where.device) - p // 2
    return centre[:, :1] + offsets, centre[:, 1:] + offsets


def _take(img: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """(B, C, n, m): img[b, :, rows[b], cols[b]] for index grids rows (B, n) and cols (B, m) of img (B, C, H, H),
    zero where an index falls outside the image."""
    h = img.shape[-1]
    inside = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < h))[:, None, :]
    b = torch.arange(len(img), device=img.device)[:, None, None]
    taken = img.permute(0, 2, 3, 1)[b, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, h - 1)[:, None, :]]
    return torch.where(inside[..., None], taken, 0.0).permute(0, 3, 1, 2)


def patches_at(change: Tensor, where: Tensor, side: int) -> Tensor:
    """(B, C, side, side) windows of ``change`` (B, C, H, W) centred on each site of ``where`` (B, 3), zero-padded."""
    return _take(change, *_windows(where.to(change.device), change.shape[-1], side))


def place_patches(sites: Sites, size: int) -> Tensor:
    """(B, C, size, size): each drawn image's patch centred on its site, zero elsewhere (and for undrawn images)."""
    rows, cols = _windows(sites.where, size, sites.patches.shape[-1])
    pixels = torch.arange(size, device=rows.device)[None, :]
    placed = _take(sites.patches, pixels - rows[:, :1], pixels - cols[:, :1])  # each pixel's index in its window
    return torch.where(sites.drawn.view(-1, 1, 1, 1), placed, 0.0)


def site_disk(where: Tensor, size: int, disk_px: float) -> Tensor:
    """(B, 1, size, size) bool disk of radius ``disk_px`` (at 32 px) around each site (NaN rows: empty)."""
    grid = (torch.arange(size, dtype=torch.float32, device=where.device) + 0.5) / size
    dy = (grid.view(1, -1, 1) - where[:, 0].view(-1, 1, 1)) * size
    dx = (grid.view(1, 1, -1) - where[:, 1].view(-1, 1, 1)) * size
    return (dy ** 2 + dx ** 2 <= (disk_px * size / 32) ** 2)[:, None]  # NaN compares False


class SiteBank:
    """The empirical prior of a node's site codes: sites (M, 3) (see :func:`change_peaks`) and their appearance
    patches (M, C, P, P) (see :func:`patches_at`)."""

    def __init__(self, sites: Tensor, patches: Tensor):
        if sites.ndim != 2 or sites.shape[1] != 3 or sites.shape[0] == 0:
            raise ValueError(f"a site bank needs (M >= 1, 3) sites, got {tuple(sites.shape)}")
        if patches.ndim != 4 or patches.shape[0] != sites.shape[0] or patches.shape[-1] != patches.shape[-2]:
            raise ValueError(f"a site bank needs (M, C, P, P) patches for its {sites.shape[0]} sites, "
                             f"got {tuple(patches.shape)}")
        self.sites, self.patches = sites.float().cpu(), patches.float().cpu()

    def sample(self, n: int, generator: torch.Generator | None = None) -> Sites:
        """n site codes drawn uniformly from the bank, seeded by ``generator`` (CPU)."""
        i = torch.randint(self.sites.shape[0], (n,), generator=generator)
        return Sites(self.sites[i], self.patches[i])

    def state(self) -> dict[str, Tensor]:
        """Plain tensors for a checkpoint (``torch.load(weights_only=True)`` reads them)."""
        return {"sites": self.sites, "patches": self.patches}


def load_site_banks(ckpt: dict) -> dict[str, SiteBank]:
    """{node: SiteBank} a checkpoint stores (``site_banks``, written by ``export_checkpoint``); {} when none."""
    return {node: SiteBank(b["sites"], b["patches"]) for node, b in (ckpt.get("site_banks") or {}).items()}


def fit_site_banks(pipe, x: Tensor, labels: dict[str, Tensor], steps: int = 50, n: int = 64) -> dict[str, SiteBank]:
    """{node: SiteBank} for each local node of ``pipe``'s graph, abducted from up to ``n`` images of x (N, C, H, W)
    whose label shows the finding (1); sites whose peak has the other sign than most (where the removal missed the
    finding and moved the rest) are dropped."""
    banks = {}
    for node in [k for k in pipe.graph.order if pipe.graph[k].local]:
        show = torch.nonzero(torch.as_tensor(labels[node]) == 1).flatten()[:n]
        if len(show) == 0:
            raise ValueError(f"no image with {node} = 1 to abduct {node}'s sites from")
        where, patches = abduct_sites(pipe, x[show], {k: torch.as_tensor(v)[show] for k, v in labels.items()},
                                      node, steps)
        kept = where[:, 2].sign() == where[:, 2].median().sign()
        banks[node] = SiteBank(where[kept], patches[kept])
    return banks


def site_loop(eps_fn: EpsFn, noise: Tensor, c_cf: Tensor, c_f: Tensor, tables: DDIMTables, sites: Sites,
              settings: TransplantSettings, train_timesteps: int, residuals: Tensor | None = None) -> Tensor:
    """DDIM decoding of ``noise`` (B, C, H, W) that transplants a finding at each image's site of ``sites`` (every
    row drawn; :meth:`CounterfactualPipeline.predict` decodes the others its own way).

    Each image follows the factual decoding x^f (under ``c_f``) until the first step with t <= ``settings.at`` ×
    ``train_timesteps``, where ``settings.gain`` × its placed patch is added (x_t += sqrt(ā_t) patch); after it,
    ``eps = eps_f + W (eps_cf - eps_f)`` with W = ``settings.guidance`` inside the site's disk, and every pixel
    outside the disk is replaced by x^f's (RePaint).
    ``residuals`` (S, B, C, H, W) of an exact abduction are added after each step to both paths. One network call
    of B a step before the transplant, of 3B after it; no host sync inside the loop.
    """
    if not bool(sites.drawn.all()):
        raise ValueError("site_loop transplants at every image's site; decode the images without one elsewhere")
    size = noise.shape[-1]
    bump = settings.gain * place_patches(sites, size).to(noise.device, noise.dtype)
    disk = site_disk(sites.where.to(noise.device), size, settings.disk_px)
    weight = torch.where(disk, settings.guidance, 0.0).to(noise.dtype)
    due = torch.nonzero(tables.t.cpu() <= round(settings.at * train_timesteps)).flatten()
    bump_at = int(due[0]) if len(due) else len(tables.t)  # the step index, found once: no host sync in the loop
    x = x_f = noise
    for i, step in enumerate(tables.to(noise.device).steps(noise.shape[0])):
        r = 0.0 if residuals is None else residuals[i]
        if i < bump_at:  # still the factual decoding
            x = x_f = ddim_update(x_f, eps_fn(x_f, step.t, c_f), None, step) + r
            continue
        if i == bump_at:
            x = x + step.a_from.sqrt() * bump
        eps_cf, eps_f, eps_ff = eps_fn(torch.cat([x, x, x_f]), torch.cat([step.t] * 3),
                                       torch.cat([c_cf, c_f, c_f])).chunk(3)
        x_f = ddim_update(x_f, eps_ff, None, step) + r
        x = torch.where(disk, ddim_update(x, torch.addcmul(eps_f, weight, eps_cf - eps_f), None, step) + r, x_f)
    return x


@torch.no_grad()
def abduct_sites(pipe, x: Tensor, labels: dict[str, Tensor], node: str, steps: int = 20) -> tuple[Tensor, Tensor]:
    """Site codes of ``node``'s finding in images x (B, C, H, W) that show it: sites (B, 3) where do(node=0) changes
    them most, and that change's patches (B, C, P, P) around them (the removal decoded keeping unchanged pixels, at
    w = ``pipe.transplant.removal_guidance``: pixels away from the change stay the reconstruction's)."""
    ab = pipe.abduct(x, labels, steps)
    cf_z, _ = pipe.intervene(ab, {node: 0.0}, torch.Generator().manual_seed(0))
    removed = pipe.decode(ab.noise, cf_z, ab.s, steps, pipe.transplant.removal_guidance, ab.z, ab.residuals,
                          keep_unchanged=True, depth=ab.depth)
    x = x.to(removed.device)
    where = change_peaks(x, removed)
    return where.cpu(), patches_at(x - removed, where, pipe.transplant.patch_side(x.shape[-1])).cpu()
