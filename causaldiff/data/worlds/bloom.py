"""Bloom world: a potted hydrangea whose flower colour follows the soil's acidity, a world where a node is a colour.

Structural equations (``u_*`` exogenous; hue in degrees, heights and radii in scene units of a 20 x 20 scene):
  soil_ph = 4.5 + 4 u_ph;   water = u_water   (both roots, uniform);
  hue = 230 + 25 (soil_ph - 4.5) + 8 u_hue   (blue on acid soil, pink on alkaline, as hydrangeas are);
  height = 5 + 5 water - 0.6 (soil_ph - 6.5) + 0.4 u_height   (the stem's top above the pot);
  bloom_size = 2 + 1.5 water + 0.2 u_size   (the flower head's radius).
Rendered in RGB: a beige wall, a terracotta pot, a green stem and a round flower head of the node's hue (HSV
saturation 0.65, value 0.9) with darker florets; exogenous pot position and floret pattern.
"""

from __future__ import annotations

import torch
from torch.nn import functional as F

from causaldiff.data.worlds.base import World, circle_sdf, coverage, paint, segment_sdf

GROUND = 4.0  # the pot's rim, scene units above the bottom


def hsv_to_rgb(hue: torch.Tensor, s: float, v: float) -> torch.Tensor:
    """RGB (B, 3) in [0, 1] of hues (B,) in degrees at saturation ``s`` and value ``v``."""
    k = (torch.tensor([5.0, 3.0, 1.0]) + hue[:, None] / 60) % 6
    return v - v * s * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


class Bloom(World):
    name = "bloom"
    channels = 3
    graph_spec = {
        "soil_ph": {"kind": "continuous", "range": [4.5, 8.5], "shown": False},  # not drawn: shown by hue, height
        "water": {"kind": "continuous", "range": [0.0, 1.0], "shown": False},  # shown by height and bloom_size
        "hue": {"kind": "continuous", "parents": ["soil_ph"]},
        "height": {"kind": "continuous", "parents": ["water", "soil_ph"]},
        "bloom_size": {"kind": "continuous", "parents": ["water"]},
    }

    def _exogenous(self, n, gen):
        return {
            "u_ph": torch.rand(n, generator=gen),
            "u_water": torch.rand(n, generator=gen),
            "u_hue": torch.randn(n, generator=gen),
            "u_height": torch.randn(n, generator=gen),
            "u_size": torch.randn(n, generator=gen),
            "pot_x": 10 + 1.5 * torch.randn(n, generator=gen),
            "florets": torch.rand(n, 1, 5, 5, generator=gen),
        }

    def _labels(self, exo, targets):
        ph = targets.get("soil_ph", 4.5 + 4 * exo["u_ph"])
        water = targets.get("water", exo["u_water"])
        hue = targets.get("hue", 230 + 25 * (ph - 4.5) + 8 * exo["u_hue"])
        height = targets.get("height", 5 + 5 * water - 0.6 * (ph - 6.5) + 0.4 * exo["u_height"])
        size = targets.get("bloom_size", 2 + 1.5 * water + 0.2 * exo["u_size"])
        return {"soil_ph": ph, "water": water, "hue": hue, "height": height, "bloom_size": size}

    def _draw(self, exo, labels):
        px, py = self.pixel_grid(0.0, 20.0, 0.0, 20.0)
        pix = 20.0 / self.size
        b, x = labels["hue"].shape[0], exo["pot_x"]
        canvas = torch.ones(b, 3, self.size, self.size) * torch.tensor([0.93, 0.89, 0.8])[None, :, None, None]
        top = GROUND + labels["height"].clamp(1, 14)
        stem = segment_sdf(px, py, x, torch.full((b,), GROUND), x, top, 0.35)
        canvas = paint(canvas, coverage(stem, pix), (0.2, 0.5, 0.15))
        pot = torch.maximum((px - x[:, None, None]).abs() - 2.2 + 0.3 * (GROUND - py), py - GROUND)
        canvas = paint(canvas, coverage(pot, pix), (0.75, 0.38, 0.22))
        radius = labels["bloom_size"].clamp(0.5, 5)
        head = coverage(circle_sdf(px, py, x, top, radius), pix)
        colour = hsv_to_rgb(labels["hue"], 0.65, 0.9)[:, :, None, None]
        florets = F.interpolate(exo["florets"], size=(self.size, self.size), mode="nearest")
        shade = 1 - 0.25 * (florets > 0.6).float()  # darker florets, a pattern fixed by the exogenous noise
        a = head[:, None]
        return canvas * (1 - a) + colour * shade * a

