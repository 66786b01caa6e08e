"""Strokes world: the morpho world's digits with local findings of varied size, after Morpho-MNIST's perturbations
(Castro et al., *Morpho-MNIST*, JMLR 2019): a **swelling** (the stroke thickened around a site) and a **fracture** (a
gap cut across the stroke at a site).

Structural equations (thickness in MNIST pixels, ``u_*`` exogenous; digit, thickness, intensity as in the morpho
world):
  swelling = 1[u_swelling < sigmoid(-1.6 + 1.2 (thickness - 2.5))]   (about 20 %, more likely on thick strokes);
  fracture = 1[u_fracture < sigmoid(-1.6 - 1.2 (thickness - 2.5))]   (about 20 %, more likely on thin strokes).
Each finding's site is an exogenous point of the digit's stroke (a fraction along the glyph's stroke pixels, so it
stays on the stroke when the digit changes) and its size an exogenous factor in [0.5, 2]: a swelling adds up to
1.6 size MNIST pixels of thickness over a Gaussian of 1.5 size pixels; a fracture is a gap 1.2 size pixels wide
across the whole stroke, perpendicular to it.
"""

from __future__ import annotations

from functools import cached_property

import torch

from causaldiff.data.worlds.morpho import FIELD, UNITS, Morpho

GAP_REACH = 4.5  # MNIST pixels: a fracture cuts this far from its site (the thickest stroke is 6 wide)


class Strokes(Morpho):
    name = "strokes"
    graph_spec = {
        **Morpho.graph_spec,
        "swelling": {"kind": "binary", "parents": ["thickness"], "local": True},
        "fracture": {"kind": "binary", "parents": ["thickness"], "local": True},
    }

    @cached_property
    def _stroke_points(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Each glyph's stroke pixels at the font's own width, (10, P, 2) in MNIST units from the field's centre
        (padded by repetition), the stroke's direction there (10, P) in radians (the principal axis of the stroke
        pixels within 2 MNIST pixels), and the counts (10,)."""
        fields, _ = self._fields
        points, angles = [], []
        for d in range(10):
            yx = (fields[d, 0] < 0).nonzero().float()
            p = (yx[:, [1, 0]] + 0.5 - FIELD / 2) * UNITS / FIELD
            near = (torch.cdist(p, p) < 2.0).float()  # (P, P)
            mean = near @ p / near.sum(1, keepdim=True)
            d2 = p[None] - mean[:, None]  # (P, P, 2): offsets from each point's neighbourhood mean
            cov = torch.einsum("ij,ijk,ijl->ikl", near, d2, d2)
            angles.append(0.5 * torch.atan2(2 * cov[:, 0, 1], cov[:, 0, 0] - cov[:, 1, 1]))
            points.append(p)
        counts = torch.tensor([len(p) for p in points])
        index = [torch.arange(int(counts.max())) % len(p) for p in points]
        return (torch.stack([p[i] for p, i in zip(points, index)]),
                torch.stack([a[i] for a, i in zip(angles, index)]), counts)

    def _exogenous(self, n, gen):
        exo = super()._exogenous(n, gen)
        for finding in ("swelling", "fracture"):
            exo[f"u_{finding}"] = torch.rand(n, generator=gen)
            exo[f"{finding}_site"] = torch.rand(n, generator=gen)
            exo[f"{finding}_size"] = 0.5 + 1.5 * torch.rand(n, generator=gen)
        return exo

    def _labels(self, exo, targets):
        labels = super()._labels(exo, targets)
        t = labels["thickness"] - 2.5
        for finding, slope in (("swelling", 1.2), ("fracture", -1.2)):
            drawn = (exo[f"u_{finding}"] < torch.sigmoid(-1.6 + slope * t)).float()
            labels[finding] = targets.get(finding, drawn)
        return labels

    def _glyphs(self, exo, labels) -> torch.Tensor:
        """The digits' signed distance fields (B, 1, FIELD, FIELD) in MNIST units with the findings cut in."""
        digit = labels["digit"].long().clamp(0, 9)
        sd = super()._glyphs(exo, labels)  # indexed: a copy, cut in place below
        points, angles, counts = self._stroke_points
        c = (torch.arange(FIELD) + 0.5 - FIELD / 2) * UNITS / FIELD
        px, py = c[None, None, :], c[None, :, None]
        for finding in ("swelling", "fracture"):
            at = (exo[f"{finding}_site"] * counts[digit]).long().clamp_max(points.shape[1] - 1)
            site = points[digit, at]
            dx, dy = px - site[:, 0, None, None], py - site[:, 1, None, None]
            size, on = exo[f"{finding}_size"][:, None, None], labels[finding][:, None, None]
            if finding == "swelling":  # the stroke's level set offset outwards under a Gaussian bump
                bump = 0.8 * size * torch.exp(-(dx**2 + dy**2) / (2 * (1.5 * size) ** 2))
                sd[:, 0] = sd[:, 0] - on * bump
            else:  # a band across the stroke, 1.2 size wide, as far from the site as the thickest stroke reaches
                a = angles[digit, at][:, None, None]
                across = (dx * torch.cos(a) + dy * torch.sin(a)).abs() < 0.6 * size
                cut = (on > 0) & across & (dx**2 + dy**2 < GAP_REACH**2)
                sd[:, 0] = torch.where(cut, torch.full_like(sd[:, 0], UNITS), sd[:, 0])
        return sd
