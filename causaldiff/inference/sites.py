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
- **decoded** by :func:`~causaldiff.diffusion.transplant.transplant_loop`: added late at the drawn site, guided
  inside a disk around it, the rest of the image the factual decoding exactly (with residual abduction: the source
  itself). A late transplant keeps the real finding's size and contrast; a nudge the decoder has to grow draws
  blobs of every size, and a classifier trained on them finds fewer real lesions (docs/results.md, "Decisions").
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn import functional as F

from causaldiff.diffusion.schedule import add_noise
from causaldiff.diffusion.transplant import site_disk, take, windows


@dataclass
class Sites:
    """Site codes for a batch: ``where`` (B, 3) rows of (row, col) as fractions of the image side and the finding's
    signed height (NaN rows: nothing drawn), ``patches`` (B, C, P, P) its appearance (the change its removal makes),
    ``hwhm`` (B,) its size in px (:func:`finding_hwhm`)."""

    where: Tensor
    patches: Tensor
    hwhm: Tensor

    @property
    def drawn(self) -> Tensor:
        """(B,) bool: the images that get a finding."""
        return self.where[:, 0].isfinite()

    @staticmethod
    def cat(parts: list[Sites]) -> Sites:
        return Sites(*(torch.cat([getattr(p, f) for p in parts]) for f in ("where", "patches", "hwhm")))


def change_peaks(x: Tensor, removed: Tensor, sign: float | None = None, shape: Tensor | None = None) -> Tensor:
    """(B, 3) sites where the smoothed channel-mean x − removed is largest in size (``sign`` given: largest in that
    direction): (row, col) as fractions of the image side (pixel centres) and the smoothed change's signed height
    there (> 0: brighter). Smoothed by a 3×3 mean, or by ``shape`` (P, P; P odd), a finding's mean banked change: the
    matched filter, which picks a known profile out of pixel noise best (North, 1943)."""
    change = (x - removed).mean(1, keepdim=True)
    if shape is None:
        change = F.avg_pool2d(change, 3, 1, 1, count_include_pad=False)
    else:
        pad = (shape.shape[-1] // 2,) * 4  # replicated: a change that reaches the border is not cut into a peak
        change = F.conv2d(F.pad(change, pad, mode="replicate"), (shape / shape.abs().sum()).to(change)[None, None])
    change, size = change.flatten(1), x.shape[-1]
    i = (change.abs() if sign is None else sign * change).argmax(1)
    rows, cols = (i // size).float(), (i % size).float()
    return torch.stack([(rows + 0.5) / size, (cols + 0.5) / size, change.gather(1, i[:, None])[:, 0]], 1)


def patches_at(change: Tensor, where: Tensor, side: int) -> Tensor:
    """(B, C, side, side) windows of ``change`` (B, C, H, W) centred on each site of ``where`` (B, 3), zero-padded."""
    return take(change, *windows(where.to(change.device), change.shape[-1], side))


def resized(patches: Tensor, side: int) -> Tensor:
    """(B, C, side, side): odd-sided ``patches`` (B, C, P, P) cropped or zero-padded about their centre."""
    pad = (side - patches.shape[-1]) // 2
    return F.pad(patches, (pad,) * 4)  # a negative pad crops


def finding_hwhm(patches: Tensor) -> float:
    """A finding's size: the half width at half maximum, in px, of the mean |change| of its patches (M, C, P, P)
    about their centre, above the level of the window's outermost ring. The profile is the mean over rings of pixels
    at the same rounded distance, each placed at its pixels' mean distance and interpolated linearly between rings
    (a unit-σ Gaussian reads 1.18, its true HWHM √(2 ln 2))."""
    a = patches.abs().float().mean((0, 1))
    c = a.shape[-1] // 2
    if c < 1:
        raise ValueError(f"a finding's size needs patches of side >= 3, got {a.shape[-1]}")
    offsets = torch.arange(a.shape[-1], dtype=torch.float32) - c
    r = (offsets[:, None] ** 2 + offsets[None, :] ** 2).sqrt()
    rings = [r.round() == k for k in range(c + 1)]
    profile = torch.stack([a[ring].mean() for ring in rings])
    radius = torch.stack([r[ring].mean() for ring in rings])
    half = (profile[0] + profile[-1]) / 2
    below = torch.nonzero(profile[1:] <= half).flatten()
    if profile[0] <= profile[-1] or not len(below):
        return float(c)  # no peak above the edge: as wide as the window
    k = int(below[0]) + 1
    share = (profile[k - 1] - half) / (profile[k - 1] - profile[k])
    return float(radius[k - 1] + share * (radius[k] - radius[k - 1]))


class SiteBank:
    """The empirical prior of a node's site codes: sites (M, 3) (see :func:`change_peaks`), their appearance
    patches (M, C, P, P) (see :func:`patches_at`) and the finding's size ``hwhm`` in px (default: measured from the
    patches, :func:`finding_hwhm`)."""

    def __init__(self, sites: Tensor, patches: Tensor, hwhm: float | None = None):
        if sites.ndim != 2 or sites.shape[1] != 3 or sites.shape[0] == 0:
            raise ValueError(f"a site bank needs (M >= 1, 3) sites, got {tuple(sites.shape)}")
        if patches.ndim != 4 or patches.shape[0] != sites.shape[0] or patches.shape[-1] != patches.shape[-2]:
            raise ValueError(f"a site bank needs (M, C, P, P) patches for its {sites.shape[0]} sites, "
                             f"got {tuple(patches.shape)}")
        self.sites, self.patches = sites.float().cpu(), patches.float().cpu()
        self.hwhm = finding_hwhm(self.patches) if hwhm is None else float(hwhm)

    def sample(self, n: int, generator: torch.Generator | None = None, side: int | None = None) -> Sites:
        """n site codes drawn uniformly from the bank, seeded by ``generator`` (CPU), with patches of ``side``
        (default: the bank's)."""
        i = torch.randint(self.sites.shape[0], (n,), generator=generator)
        patches = self.patches[i] if side is None else resized(self.patches[i], side)
        return Sites(self.sites[i], patches, torch.full((n,), self.hwhm))

    def state(self) -> dict[str, Tensor]:
        """Plain tensors for a checkpoint (``torch.load(weights_only=True)`` reads them)."""
        return {"sites": self.sites, "patches": self.patches, "hwhm": torch.tensor(self.hwhm)}


def load_site_banks(ckpt: dict) -> dict[str, SiteBank]:
    """{node: SiteBank} a checkpoint stores (``site_banks``, written by ``export_checkpoint``; a bank stored without
    its size is measured); {} when none."""
    return {node: SiteBank(b["sites"], b["patches"], None if b.get("hwhm") is None else float(b["hwhm"]))
            for node, b in (ckpt.get("site_banks") or {}).items()}


def removal_disks(pipe, ab, cf_z: Tensor, cf_labels: list[dict[str, Tensor]], steps: int,
                  generator: torch.Generator | None = None) -> tuple[Tensor, Tensor] | None:
    """(disks (B*K, 1, H, W) bool, start (B*K, C, H, W)): for each image of an abduction ``ab`` (``steps`` DDIM steps)
    whose local node (with a site bank) K interventions (their latents ``cf_z`` (B*K, n, d) and ``cf_labels``) switch
    off, a disk of ``pipe.transplant.disk`` × the bank's HWHM around the finding's site, and the noise its decoding
    starts from; None when there is none, or no trace.

    An exact abduction's residuals carry what the latents do not, and the latents do not hold a finding's site
    (docs/DESIGN.md, "Site codes"): decoded with them, brain32's lesions came back (docs/results.md, "Lesions"). The
    site is where the image most exceeds its removal decoded without them (the finding's block alone switched off),
    in the finding's direction (the sign of its bank's heights), filtered by the bank's mean patch less its mean
    (:func:`change_peaks`): a matched filter that passes no slowly varying reconstruction error. Within 2 px of the
    true lesion in 100 / 100 / 81 % of brain-world images for brain32 and its fine-tunes on lesions half and twice as
    wide, and 72 % for a model whose lesion block does not remove the lesion under the residuals (the removal decoded
    keeping unchanged pixels, used before: 97 / 88 / 73 / 3 %; docs/results.md, "Lesions"). The disk is then
    decoded afresh (:func:`~causaldiff.diffusion.masked.masked_loop`'s ``redraw``), from a fresh sample of
    q(x_t | removal) (``generator``'s noise) rather than the inverted noise, which carries the finding as the residuals
    do: removed 100 / 100 / 86 / 72 % against 95 / 100 / 73 / 3 % from the inverted noise on the four models above.
    One decoding per switched-off row.
    """
    if ab.trace is None:
        return None
    b, size = ab.z.shape[0], pipe.model.image_size
    offs = {node: torch.cat([(ab.labels[node].cpu() == 1) & (c[node].cpu() == 0) for c in cf_labels])
            for node in pipe.site_banks if pipe.graph[node].local}
    offs = {node: rows.nonzero().flatten() for node, rows in offs.items() if bool(rows.any())}
    if not offs:
        return None
    disks = torch.zeros(len(cf_labels) * b, 1, size, size, dtype=torch.bool, device=pipe.device)
    start = torch.zeros(len(cf_labels) * b, *ab.noise.shape[1:], device=pipe.device)
    a = pipe._schedule("sample", steps, ab.depth).a_from[0].to(pipe.device)  # the noise level decoding starts at
    for node, rows in offs.items():
        bank, rows, k = pipe.site_banks[node], rows.to(pipe.device), pipe.graph.index(node)
        i = rows % b
        alone = ab.z[i].clone()
        alone[:, k] = cf_z[rows, k]
        removed = pipe.decode(ab.noise[i], alone, ab.s[i], steps, 1.0, ab.z[i], keep_unchanged=False,
                              depth=ab.depth)
        shape = bank.patches.mean((0, 1)).to(removed)
        where = change_peaks(ab.trace.path[-1][i], removed, float(bank.sites[:, 2].median().sign()),
                             shape - shape.mean())
        disks[rows] |= site_disk(where, size, pipe.transplant.disk * bank.hwhm)
        start[rows] = add_noise(removed, torch.randn(removed.shape, generator=generator).to(removed), a)
    return disks, start


def fit_site_banks(pipe, x: Tensor, labels: dict[str, Tensor], masks: dict[str, Tensor] | None = None,
                   steps: int = 50, n: int = 64) -> dict[str, SiteBank]:
    """{node: SiteBank} for each local node of ``pipe``'s graph, from up to ``n`` images of x (N, C, H, W) whose label
    shows the finding (1): read off the finding's segmentation where ``masks`` (node: (N, 1, H, W), all zero where an
    image has none) holds one (:func:`masked_sites`), else abducted with the model's removal (:func:`abduct_sites`).
    Sites whose peak has the other sign than most (where the removal missed the finding and moved the rest) are
    dropped. The change is taken in windows half the image wide, the finding's size measured in them
    (:func:`finding_hwhm`), and the banked windows cut to the side that size asks for
    (:meth:`~causaldiff.diffusion.transplant.TransplantSettings.patch_side`)."""
    banks, side = {}, 2 * (x.shape[-1] // 4) + 1
    for node in [k for k in pipe.graph.order if pipe.graph[k].local]:
        show = torch.as_tensor(labels[node]) == 1
        mask = (masks or {}).get(node)
        segmented = show if mask is None else show & mask.flatten(1).any(1)
        if mask is not None and bool(segmented.any()):
            show = torch.nonzero(segmented).flatten()[:n]
            where, patches = masked_sites(x[show], mask[show], side)
        else:
            show = torch.nonzero(show).flatten()[:n]
            if len(show) == 0:
                raise ValueError(f"no image with {node} = 1 to abduct {node}'s sites from")
            where, patches = abduct_sites(pipe, x[show], {k: torch.as_tensor(v)[show] for k, v in labels.items()},
                                          node, steps, side=side)
        kept = where[:, 2].sign() == where[:, 2].median().sign()
        hwhm = finding_hwhm(patches[kept])
        banks[node] = SiteBank(where[kept], resized(patches[kept], pipe.transplant.patch_side(hwhm)), hwhm)
    return banks


@torch.no_grad()
def abduct_sites(pipe, x: Tensor, labels: dict[str, Tensor], node: str, steps: int = 20,
                 side: int = 7) -> tuple[Tensor, Tensor]:
    """Site codes of ``node``'s finding in images x (B, C, H, W) that show it: sites (B, 3) where do(node=0) changes
    them most, and that change's patches (B, C, side, side) around them (the removal decoded keeping unchanged
    pixels, at w = ``pipe.transplant.removal_guidance``: pixels away from the change stay the reconstruction's)."""
    ab = pipe.abduct(x, labels, steps)
    cf_z, _ = pipe.intervene(ab, {node: 0.0}, torch.Generator().manual_seed(0))
    removed = pipe.decode(ab.noise, cf_z, ab.s, steps, pipe.transplant.removal_guidance, ab.z, ab.trace,
                          keep_unchanged=True, depth=ab.depth)
    x = x.to(removed.device)
    where = change_peaks(x, removed)
    return where.cpu(), patches_at(x - removed, where, side).cpu()


def masked_sites(x: Tensor, masks: Tensor, side: int) -> tuple[Tensor, Tensor]:
    """Site codes of a finding segmented by ``masks`` (B, 1, H, W) in images x (B, C, H, W), without the model:
    sites (B, 3) and patches (B, C, side, side) of x minus its background, the masked pixels (grown by one, so that
    a tight mask's faint rim is not taken for background) filled from their surroundings by Laplace's equation."""
    fill = F.max_pool2d(masks.float(), 3, 1, 1).bool()
    background = harmonic_fill(x, fill)
    where = change_peaks(x, background)
    return where, patches_at(x - background, where, side)


def harmonic_fill(x: Tensor, hole: Tensor) -> Tensor:
    """x (B, C, H, W) with the pixels of ``hole`` (B, 1, H, W) bool replaced by the harmonic function that meets the
    pixels around them (Jacobi iterations of the 4-neighbour mean, from the mean of the image's known pixels); what
    an inpainting of smooth tissue gives, and all the mask's change is the finding's."""
    known = (~hole).float()
    mean = (x * known).sum((2, 3), keepdim=True) / known.sum((2, 3), keepdim=True).clamp_min(1)
    y = torch.where(hole, mean, x)
    kernel = torch.tensor([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]], dtype=x.dtype, device=x.device)
    kernel = kernel.expand(x.shape[1], 1, 3, 3)
    for _ in range(4 * x.shape[-1]):  # the error decays as (1 - c / r^2) per step for a hole r px across
        y = torch.where(hole, F.conv2d(F.pad(y, (1,) * 4, mode="replicate"), kernel, groups=x.shape[1]), x)
    return y

