"""The simplest way to add a finding to an image: cut a real one out with its mask and paste it elsewhere.

A lesion's mask and its *local background difference* come from a lesion image and the same image without it (the
brain world's twin; in a folder, the ``<node>_mask`` image over the source): the patch is the difference inside the
mask, added to a lesion-free target at a random offset that keeps every mask pixel inside the target's brain, on
tissue like the one it was cut from (mean grey within ``BACKGROUND_LEVELS`` of the donor's, so not on the skull).
"""

from __future__ import annotations

import torch
from torch import Tensor

MASK_LEVELS = 4  # grey levels (of 255) a pixel must change by to be part of the lesion (as the focus mask's)
BRAIN_LEVELS = 10  # a target pixel brighter than this (of 255) is brain, not background
BACKGROUND_LEVELS = 16  # the most the target's mean grey under the patch may differ from the donor's (of 255)
TRIES = 50  # random offsets tried per paste; the closest match inside the brain is taken if none is within the levels


def lesion_patches(with_lesion: Tensor, without: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(difference (N, C, H, W), mask (N, 1, H, W) bool, background (N,): the twin's mean under the mask) of N lesion
    images and their lesion-free twins, in [-1, 1]."""
    diff = with_lesion - without
    mask = diff.abs().amax(1, keepdim=True) * 127.5 > MASK_LEVELS
    background = (without * mask).flatten(1).sum(1) / (mask.flatten(1).sum(1) * without.shape[1]).clamp_min(1)
    return diff * mask, mask, background


def paste(targets: Tensor, diff: Tensor, mask: Tensor, background: Tensor, gen: torch.Generator) -> tuple[Tensor, int]:
    """Targets (N, C, H, W) in [-1, 1], each with a random donor's patch added at a random offset inside its brain;
    returns the images and how many pastes found no offset within ``BACKGROUND_LEVELS`` in ``TRIES`` (they take the
    closest inside the brain, or the donor's own site where none is inside)."""
    n, (h, w) = targets.shape[0], targets.shape[-2:]
    donors = torch.randint(0, diff.shape[0], (n,), generator=gen)
    out, fallbacks = targets.clone(), 0
    for j in range(n):
        d = donors[j]
        ys, xs = torch.nonzero(mask[d, 0], as_tuple=True)
        if len(ys) == 0:
            continue
        brain = (targets[j].amax(0) + 1) * 127.5 > BRAIN_LEVELS
        best, (dy, dx) = float("inf"), (0, 0)  # the donor's own site if no offset lies inside the brain
        for _ in range(TRIES):
            oy = int(torch.randint(-int(ys.min()), h - int(ys.max()), (1,), generator=gen))
            ox = int(torch.randint(-int(xs.min()), w - int(xs.max()), (1,), generator=gen))
            gap = (targets[j][:, ys + oy, xs + ox].mean() - background[d]).abs().item() * 127.5
            if brain[ys + oy, xs + ox].all() and gap < best:
                best, (dy, dx) = gap, (oy, ox)
                if gap < BACKGROUND_LEVELS:
                    break
        fallbacks += best >= BACKGROUND_LEVELS
        out[j, :, ys + dy, xs + dx] += diff[d, :, ys, xs]
    return out.clamp(-1, 1), fallbacks
