"""World: a procedural data generator with a known SCM that renders the *true* counterfactual."""

from __future__ import annotations

import torch
from torch import Tensor

from causaldiff.graph import CausalGraph
from causaldiff.interventions import resolve

Labels = dict[str, Tensor]
Exogenous = dict[str, Tensor]

ASSIGNED = "assigned:"  # exogenous key prefix of a node assigned at random (a randomised trial of the world)


class World:
    """Subclasses set ``name``, ``channels``, ``graph_spec`` and implement ``_exogenous``, ``_labels``, ``_draw``.

    ``_labels(exo, targets)`` evaluates the world's structural equations in topological order, with
    ``targets[node]`` (B,) overriding a node (the ``do``); ``_draw(exo, labels)`` renders floats in [0, 1].
    ``options`` are a world's named variants and their defaults (e.g. the brain's lesion size), set as attributes.
    """

    name: str = ""
    channels: int = 1
    graph_spec: dict = {}
    options: dict[str, float] = {}
    chunk: int = 1024

    def __init__(self, size: int = 32, **options: float):
        if not isinstance(size, int) or size < 8:
            raise ValueError(f"world size must be an integer >= 8 pixels, got {size!r}")
        for key in options:
            if key not in self.options:
                known = ", ".join(self.options) or "none"
                raise ValueError(f"the {self.name} world has no option {key!r} (its options: {known})")
        for key, default in self.options.items():
            setattr(self, key, float(options.get(key, default)))
        self.size = size
        self.graph = CausalGraph.from_dict(self.graph_spec)

    def sample(self, n: int, seed: int = 0, randomise: tuple[str, ...] = ()) -> tuple[Exogenous, Labels]:
        """Draw ``n`` exogenous noise sets and their labels; deterministic given ``seed``.

        ``randomise`` names discrete nodes assigned uniformly at random, independent of their parents (a randomised
        trial: sampling from do(node ~ Uniform)); descendants follow. The assignment is kept in the exogenous noise,
        so counterfactuals of these samples keep it unless they intervene on the node.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        for node in randomise:
            if node not in self.graph.order or not self.graph[node].discrete:
                discrete = [m for m in self.graph.order if self.graph[m].discrete]
                raise ValueError(f"randomise: {node!r} is not a discrete node of {self.name}; choose from {discrete}")
        gen = torch.Generator().manual_seed(seed)
        exo = self._exogenous(n, gen)
        for node in randomise:  # drawn after the world's own noise: samples without randomise are unchanged
            exo[ASSIGNED + node] = torch.randint(self.graph[node].cardinality, (n,), generator=gen).float()
        return exo, self._labels(exo, _assigned(exo))

    def render(self, exogenous: Exogenous, labels: Labels) -> Tensor:
        """uint8 images (N, C, size, size), rendered in chunks to bound memory."""
        n = next(iter(labels.values())).shape[0]
        out = torch.empty(n, self.channels, self.size, self.size, dtype=torch.uint8)
        for a in range(0, n, self.chunk):
            sl = slice(a, a + self.chunk)
            img = self._draw({k: v[sl] for k, v in exogenous.items()}, {k: v[sl] for k, v in labels.items()})
            out[sl] = (img.clamp(0, 1) * 255).round().to(torch.uint8)
        return out

    def counterfactual(self, exogenous: Exogenous, labels: Labels, do) -> tuple[Labels, Tensor]:
        """The true counterfactual: labels and images under ``do`` from the same exogenous noise."""
        targets = {iv.node: iv.values(labels[iv.node].float()) for iv in resolve(do, self.graph)}
        cf_labels = self._labels(exogenous, {**_assigned(exogenous), **targets})
        return cf_labels, self.render(exogenous, cf_labels)

    # ------------------------------------------------------------------ for subclasses
    def _exogenous(self, n: int, gen: torch.Generator) -> Exogenous:
        raise NotImplementedError

    def _labels(self, exo: Exogenous, targets: Labels) -> Labels:
        raise NotImplementedError

    def _draw(self, exo: Exogenous, labels: Labels) -> Tensor:
        raise NotImplementedError

    def pixel_grid(self, lo_x: float, hi_x: float, lo_y: float, hi_y: float) -> tuple[Tensor, Tensor]:
        """Scene coordinates (H, W) of pixel centres; y grows upwards."""
        c = (torch.arange(self.size) + 0.5) / self.size
        xs = lo_x + c * (hi_x - lo_x)
        ys = hi_y - c * (hi_y - lo_y)
        return xs[None, :].expand(self.size, -1), ys[:, None].expand(-1, self.size)


def _assigned(exo: Exogenous) -> Labels:
    """The randomly assigned nodes' values kept in ``exo`` by :meth:`World.sample` (``randomise``)."""
    return {k[len(ASSIGNED):]: v for k, v in exo.items() if k.startswith(ASSIGNED)}


def coverage(sdf: Tensor, pixel: float) -> Tensor:
    """Anti-aliased coverage of a shape from its signed distance (negative inside), in scene units per pixel."""
    return (0.5 - sdf / pixel).clamp(0, 1)


def segment_sdf(px: Tensor, py: Tensor, ax: Tensor, ay: Tensor, bx: Tensor, by: Tensor, half_width: float) -> Tensor:
    """Distance (B, H, W) to a thick segment from (ax, ay) to (bx, by), each (B,)."""
    ax, ay, bx, by = (t[:, None, None] for t in (ax, ay, bx, by))
    dx, dy = bx - ax, by - ay
    h = (((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy).clamp_min(1e-9)).clamp(0, 1)
    return torch.hypot(px - ax - h * dx, py - ay - h * dy) - half_width


def circle_sdf(px: Tensor, py: Tensor, cx: Tensor, cy: Tensor, r) -> Tensor:
    """Distance (B, H, W) to a disc centred at (cx, cy), each (B,), radius ``r`` (float or (B,))."""
    r = r[:, None, None] if isinstance(r, Tensor) else r
    return torch.hypot(px - cx[:, None, None], py - cy[:, None, None]) - r


def paint(canvas: Tensor, alpha: Tensor, colour) -> Tensor:
    """Alpha-composite a flat ``colour`` (C,) with coverage ``alpha`` (B, H, W) over ``canvas`` (B, C, H, W)."""
    col = torch.as_tensor(colour, dtype=canvas.dtype)[None, :, None, None]
    a = alpha[:, None]
    return canvas * (1 - a) + col * a
