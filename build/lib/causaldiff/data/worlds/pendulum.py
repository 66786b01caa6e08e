"""Pendulum world: the CausalVAE scene (Yang et al., CVPR 2021), with its published geometry.

A rod and ball hang from a pivot at (10, 10.5) in a 20 x 22 scene; a light source at angle ``phi`` casts the
pendulum's shadow on the ground line ``y = -0.5``. Shadow end points are the projections of the pivot and of the
ball (rod length 9.5) along the light ray: ``proj(x, y) = x + (base - y) / tan(phi)``; the shadow length is
``max(3, |proj(pivot) - proj(ball)|)`` and its position the midpoint, each plus small exogenous noise.
Angles in degrees, like CausalVAE's ``i * pi / 200`` grid: pendulum in [-36, 39.6], light in [54, 133.2].
"""

from __future__ import annotations

import math

import torch

from causaldiff.data.worlds.base import World, circle_sdf, coverage, paint, segment_sdf

PIVOT = (10.0, 10.5)
SHADOW_NOISE = 0.25  # scene units


def _project(phi, x, y, base):
    return x + (base - y) / torch.tan(phi)


class Pendulum(World):
    name = "pendulum"
    channels = 3
    graph_spec = {
        "pendulum_angle": {"kind": "continuous", "range": [-36.0, 39.6]},
        "light_angle": {"kind": "continuous", "range": [54.0, 133.2]},
        "shadow_length": {"kind": "continuous", "parents": ["pendulum_angle", "light_angle"]},
        "shadow_position": {"kind": "continuous", "parents": ["pendulum_angle", "light_angle"]},
    }

    def _exogenous(self, n, gen):
        return {
            "u_pendulum": torch.rand(n, generator=gen),
            "u_light": torch.rand(n, generator=gen),
            "u_length": torch.randn(n, generator=gen),
            "u_position": torch.randn(n, generator=gen),
        }

    def _labels(self, exo, targets):
        lo, hi = self.graph["pendulum_angle"].range
        pend = targets.get("pendulum_angle", lo + (hi - lo) * exo["u_pendulum"])
        lo, hi = self.graph["light_angle"].range
        light = targets.get("light_angle", lo + (hi - lo) * exo["u_light"])
        theta, phi = pend * math.pi / 180, light * math.pi / 180
        p_pivot = _project(phi, torch.tensor(PIVOT[0]), torch.tensor(PIVOT[1]), -0.5)
        ball_x, ball_y = PIVOT[0] + 9.5 * torch.sin(theta), PIVOT[1] - 9.5 * torch.cos(theta)
        p_ball = _project(phi, ball_x, ball_y, -0.5)
        length = (p_pivot - p_ball).abs().clamp_min(3.0) + SHADOW_NOISE * exo["u_length"]
        position = (p_pivot + p_ball) / 2 + SHADOW_NOISE * exo["u_position"]
        return {
            "pendulum_angle": pend,
            "light_angle": light,
            "shadow_length": targets.get("shadow_length", length),
            "shadow_position": targets.get("shadow_position", position),
        }

    def _draw(self, exo, labels):
        px, py = self.pixel_grid(0.0, 20.0, -1.0, 21.0)
        pix = 21.0 / self.size
        theta = labels["pendulum_angle"] * math.pi / 180
        phi = labels["light_angle"] * math.pi / 180
        b = theta.shape[0]
        canvas = torch.ones(b, 3, self.size, self.size)
        sun_x = _project(phi, torch.tensor(PIVOT[0]), torch.tensor(PIVOT[1]), 20.5)
        canvas = paint(canvas, coverage(circle_sdf(px, py, sun_x, torch.full((b,), 20.5), 3.0), pix), (1.0, 0.65, 0.0))
        mid, half = labels["shadow_position"], labels["shadow_length"].clamp_min(0) / 2
        ground = torch.full((b,), -0.2)
        shadow = segment_sdf(px, py, mid - half, ground, mid + half, ground, 0.6)
        canvas = paint(canvas, coverage(shadow, pix), (0.2, 0.2, 0.2))
        bx, by = PIVOT[0] + 8 * torch.sin(theta), PIVOT[1] - 8 * torch.cos(theta)
        pivot_x, pivot_y = torch.full((b,), PIVOT[0]), torch.full((b,), PIVOT[1])
        canvas = paint(canvas, coverage(segment_sdf(px, py, pivot_x, pivot_y, bx, by, 0.35), pix), (0.0, 0.0, 0.0))
        canvas = paint(canvas, coverage(circle_sdf(px, py, bx, by, 1.5), pix), (0.7, 0.13, 0.13))
        return canvas
