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

from causaldiff.diffusion.transplant import take, windows


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


def patches_at(change: Tensor, where: Tensor, side: int) -> Tensor:
    """(B, C, side, side) windows of ``change`` (B, C, H, W) centred on each site of ``where`` (B, 3), zero-padded."""
    return take(change, *windows(where.to(change.device), change.shape[-1], side))


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


@torch.no_grad()
def abduct_sites(pipe, x: Tensor, labels: dict[str, Tensor], node: str, steps: int = 20) -> tuple[Tensor, Tensor]:
    """Site codes of ``node``'s finding in images x (B, C, H, W) that show it: sites (B, 3) where do(node=0) changes
    them most, and that change's patches (B, C, P, P) around them (the removal decoded keeping unchanged pixels, at
    w = ``pipe.transplant.removal_guidance``: pixels away from the change stay the reconstruction's)."""
    ab = pipe.abduct(x, labels, steps)
    cf_z, _ = pipe.intervene(ab, {node: 0.0}, torch.Generator().manual_seed(0))
    removed = pipe.decode(ab.noise, cf_z, ab.s, steps, pipe.transplant.removal_guidance, ab.z, ab.trace,
                          keep_unchanged=True, depth=ab.depth)
    x = x.to(removed.device)
    where = change_peaks(x, removed)
    return where.cpu(), patches_at(x - removed, where, pipe.transplant.patch_side(x.shape[-1])).cpu()
