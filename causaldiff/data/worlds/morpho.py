"""Morpho world: a Morpho-MNIST analogue without MNIST, with the SCM DeepSCM uses (Pawlowski et al., 2020).

``thickness = 0.5 + Gamma(concentration 10, rate 5)``; ``intensity = 64 + 191 * sigmoid(N(2 (thickness - 2.5), 0.5))``;
``digit`` uniform over 10 classes. Glyphs come from Pillow's bundled scalable font: each digit is rasterised once at
high resolution and turned into a signed distance field; a stroke of width ``thickness`` (in 28-px MNIST units) is
the field's level set offset by ``(thickness - w0) / 2`` where ``w0`` is the font's own stroke width. Position
jitter, rotation and scale are the exogenous style; all images are rendered in one batched ``grid_sample``.
"""

from __future__ import annotations

import math
from functools import cached_property

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage
from torch.nn import functional as F

from causaldiff.data.worlds.base import World

FIELD = 112  # high-resolution canvas (4 x MNIST's 28)
UNITS = 28.0  # the SCM's thickness is in MNIST pixels


class Morpho(World):
    name = "morpho"
    channels = 1
    graph_spec = {
        "digit": {"kind": "categorical", "num_classes": 10},
        "thickness": {"kind": "continuous", "range": [0.5, 6.0]},
        "intensity": {"kind": "continuous", "parents": ["thickness"], "range": [64.0, 255.0]},
    }

    @cached_property
    def _fields(self) -> tuple[torch.Tensor, float]:
        """Signed distance fields (10, 1, FIELD, FIELD) in MNIST units (negative inside) and the font stroke w0."""
        font = ImageFont.load_default(size=int(FIELD * 0.8))
        fields, widths = [], []
        for d in range(10):
            img = Image.new("L", (FIELD, FIELD), 0)
            ImageDraw.Draw(img).text((FIELD / 2, FIELD / 2), str(d), fill=255, font=font, anchor="mm")
            mask = np.asarray(img) > 127
            sd = ndimage.distance_transform_edt(~mask) - ndimage.distance_transform_edt(mask)
            fields.append(torch.from_numpy(sd).float() * UNITS / FIELD)
            widths.append(2 * ndimage.distance_transform_edt(mask).max() * UNITS / FIELD)
        return torch.stack(fields)[:, None], float(np.median(widths))

    def _exogenous(self, n, gen):
        return {
            "u_digit": torch.randint(0, 10, (n,), generator=gen).float(),
            "u_thickness": torch._standard_gamma(torch.full((n,), 10.0), generator=gen) / 5.0,
            "u_intensity": 0.5 * torch.randn(n, generator=gen),
            "dx": 0.08 * torch.randn(n, generator=gen),
            "dy": 0.08 * torch.randn(n, generator=gen),
            "rotation": 12.0 * torch.randn(n, generator=gen),  # degrees
            "scale": 1.0 + 0.08 * torch.randn(n, generator=gen),
        }

    def _labels(self, exo, targets):
        digit = targets.get("digit", exo["u_digit"])
        thickness = targets.get("thickness", 0.5 + exo["u_thickness"])
        intensity = 64 + 191 * torch.sigmoid(2 * (thickness - 2.5) + exo["u_intensity"])
        return {"digit": digit, "thickness": thickness, "intensity": targets.get("intensity", intensity)}

    def _draw(self, exo, labels):
        """Each image's glyph field (:meth:`_glyphs`) sampled through its rotation, scale and shift, then shaded."""
        _, w0 = self._fields
        b = labels["digit"].shape[0]
        rot = exo["rotation"] * math.pi / 180
        cos, sin = torch.cos(rot) / exo["scale"], torch.sin(rot) / exo["scale"]
        theta = torch.stack([torch.stack([cos, -sin, exo["dx"]], 1), torch.stack([sin, cos, exo["dy"]], 1)], 1)
        grid = F.affine_grid(theta, (b, 1, self.size, self.size), align_corners=False)
        sd = F.grid_sample(self._glyphs(exo, labels), grid, padding_mode="border", align_corners=False)
        return self._shade(sd * exo["scale"][:, None, None, None], labels, w0)

    def _glyphs(self, exo, labels) -> torch.Tensor:
        """The digits' signed distance fields (B, 1, FIELD, FIELD) in MNIST units."""
        return self._fields[0][labels["digit"].long().clamp(0, 9)]

    def _shade(self, sd: torch.Tensor, labels, w0: float) -> torch.Tensor:
        """Images (B, 1, H, W) in [0, 1]: a stroke of the label's thickness around the sampled field ``sd``."""
        offset = (labels["thickness"][:, None, None, None] - w0) / 2
        cover = (0.5 + (offset - sd) / (UNITS / self.size)).clamp(0, 1)
        return cover * (labels["intensity"][:, None, None, None] / 255.0)
