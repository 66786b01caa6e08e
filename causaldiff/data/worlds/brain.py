"""Brain world: a 2-D axial brain-MRI phantom with the UK Biobank graph used by DeepSCM / causal-gen.

Structural equations (volumes in ml, age in years; ``u_*`` exogenous):
  sex ~ Bernoulli(0.5); age = 45 + 35 u_age;
  brain_volume = 1200 + 90 sex - 3.5 (age - 62) + 45 u_brain;
  ventricle_volume = exp(log 22 + 0.035 (age - 62) - 0.0015 (brain_volume - 1200) + 0.25 u_vent);
  lesion = 1[u_lesion < sigmoid(-3.2 + 0.06 (age - 62))]   (about 5 %, more likely with age).
Rendered as a T1-like slice: skull ring, brain tissue ellipse (area proportional to brain volume), two dark lateral
ventricles (area proportional to ventricle volume), a bright lesion blob; exogenous head shape, rotation, tissue
texture and lesion site. Option ``lesion_scale`` scales the lesion's radius.
"""

from __future__ import annotations

import math

import torch
from torch.nn import functional as F

from causaldiff.data.worlds.base import World, coverage


class Brain(World):
    name = "brain"
    channels = 1
    graph_spec = {
        "sex": {"kind": "binary", "shown": False},  # not drawn: shown by the volumes
        "age": {"kind": "continuous", "range": [45.0, 80.0], "shown": False},
        "brain_volume": {"kind": "continuous", "parents": ["sex", "age"]},
        "ventricle_volume": {"kind": "continuous", "parents": ["age", "brain_volume"]},
        "lesion": {"kind": "binary", "parents": ["age"], "local": True},  # a blob at an exogenous site
    }
    options = {"lesion_scale": 1.0}  # the lesion's radius as a multiple of the default (sigma 0.06, ~1 px at 32 px)

    def _exogenous(self, n, gen):
        return {
            "u_sex": torch.rand(n, generator=gen),
            "u_age": torch.rand(n, generator=gen),
            "u_brain": torch.randn(n, generator=gen),
            "u_vent": torch.randn(n, generator=gen),
            "u_lesion": torch.rand(n, generator=gen),
            "aspect": 1.0 + 0.06 * torch.randn(n, generator=gen),
            "rotation": 8.0 * torch.randn(n, generator=gen),  # degrees
            "texture": torch.randn(n, 1, 6, 6, generator=gen),
            "lesion_r": 0.35 + 0.4 * torch.rand(n, generator=gen),  # fraction of the brain radius
            "lesion_a": 2 * math.pi * torch.rand(n, generator=gen),
        }

    def _labels(self, exo, targets):
        sex = targets.get("sex", (exo["u_sex"] < 0.5).float())
        age = targets.get("age", 45 + 35 * exo["u_age"])
        brain = targets.get("brain_volume", 1200 + 90 * sex - 3.5 * (age - 62) + 45 * exo["u_brain"])
        log_vent = math.log(22) + 0.035 * (age - 62) - 0.0015 * (brain - 1200) + 0.25 * exo["u_vent"]
        vent = targets.get("ventricle_volume", log_vent.exp())
        lesion = targets.get("lesion", (exo["u_lesion"] < torch.sigmoid(-3.2 + 0.06 * (age - 62))).float())
        return {"sex": sex, "age": age, "brain_volume": brain, "ventricle_volume": vent, "lesion": lesion}

    def _draw(self, exo, labels):
        px, py = self.pixel_grid(-1.0, 1.0, -1.0, 1.0)
        pix = 2.0 / self.size
        rot = (exo["rotation"] * math.pi / 180)[:, None, None]
        x = torch.cos(rot) * px + torch.sin(rot) * py
        y = -torch.sin(rot) * px + torch.cos(rot) * py
        asp = exo["aspect"][:, None, None]
        head = _ellipse_sdf(x, y, 0.72 * asp, 0.9 / asp)
        r_brain = (0.62 * (labels["brain_volume"] / 1200).clamp_min(0.05).sqrt())[:, None, None]
        brain = _ellipse_sdf(x, y, r_brain * 0.85 * asp, r_brain / asp)
        r_vent = (0.26 * (labels["ventricle_volume"] / 22).clamp_min(0.01).sqrt())[:, None, None]
        vents = torch.minimum(
            _ellipse_sdf(x - 0.45 * r_vent, y - 0.1, 0.35 * r_vent, r_vent),
            _ellipse_sdf(x + 0.45 * r_vent, y - 0.1, 0.35 * r_vent, r_vent),
        )
        texture = F.interpolate(exo["texture"], size=(self.size, self.size), mode="bicubic", align_corners=False)[:, 0]
        img = 0.85 * coverage(head, pix) * (1 - coverage(head + 0.07, pix))  # skull ring
        tissue = coverage(brain, pix)
        img = img + tissue * (0.55 + 0.06 * texture)
        img = img - tissue * coverage(vents, pix) * (0.45 + 0.03 * texture)
        lx = (exo["lesion_r"] * torch.cos(exo["lesion_a"]))[:, None, None] * r_brain * 0.85
        ly = (exo["lesion_r"] * torch.sin(exo["lesion_a"]))[:, None, None] * r_brain
        blob = torch.exp(-((x - lx) ** 2 + (y - ly) ** 2) / (2 * (0.06 * self.lesion_scale) ** 2))
        img = img + labels["lesion"][:, None, None] * 0.4 * blob * tissue
        return img[:, None]


def _ellipse_sdf(x, y, a, b):
    """Approximate signed distance to an axis-aligned ellipse with semi-axes a, b (exact on circles)."""
    k = torch.hypot(x / a, y / b)
    return (k - 1) * torch.minimum(torch.as_tensor(a), torch.as_tensor(b))
