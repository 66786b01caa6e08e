"""Exogenous codes: what a discrete label switches on but does not say (a lesion's site and size).

A discrete node's latent block is ``z_k = g_k(y_k) + r_k``: the label's prior mean plus a residual the encoder is
free to fill with the node's unlabelled attributes. The residual of a lesion-free image says nothing about where a
lesion would be, so ``do(lesion=1)`` cannot abduct it: it is **drawn** from the residuals of the target class,
``r ~ N(mean_c, cov_c)``, fitted on the training images (running moments, updated every training step from the EMA
encoder). A class kept by the intervention keeps its abducted residual.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from causaldiff.graph import CausalGraph


class ClassMoments(nn.Module):
    """Exponentially decayed moments of one node's residuals per class: count (K,), sum (K, d), outer sum (K, d, d)."""

    def __init__(self, num_classes: int, dim: int):
        super().__init__()
        self.register_buffer("count", torch.zeros(num_classes))
        self.register_buffer("total", torch.zeros(num_classes, dim))
        self.register_buffer("outer", torch.zeros(num_classes, dim, dim))

    @torch.no_grad()
    def update(self, r: Tensor, y: Tensor, decay: float) -> None:
        """Fold residuals r (B, d) of classes y (B,) in: ``m <- decay * m + sum over the batch``."""
        onehot = nn.functional.one_hot(y.long().clamp(0, self.count.shape[0] - 1), self.count.shape[0]).to(r.dtype)
        self.count.mul_(decay).add_(onehot.sum(0))
        self.total.mul_(decay).add_(onehot.T @ r)
        self.outer.mul_(decay).add_(torch.einsum("bk,bi,bj->kij", onehot, r, r))

    def gaussian(self, c: Tensor) -> tuple[Tensor, Tensor]:
        """Mean (B, d) and Cholesky factor (B, d, d) of the residuals of classes c (B,)."""
        n = self.count[c].clamp_min(1e-6)[:, None]
        mean = self.total[c] / n
        cov = self.outer[c] / n[..., None] - mean[:, :, None] * mean[:, None, :]
        eye = torch.eye(mean.shape[1], device=mean.device)
        return mean, torch.linalg.cholesky(cov + 1e-5 * eye)  # jitter: a class seen once has a zero covariance


class ExogenousPrior(nn.Module):
    """Residual priors of every discrete node of ``graph`` (continuous nodes have none: their residual is kept).

    Args:
        min_count: decayed number of residuals a class needs before its prior is used (see :meth:`fitted`).
    """

    def __init__(self, graph: CausalGraph, latent_dim: int, min_count: float = 8.0):
        super().__init__()
        self.graph, self.min_count = graph, min_count
        self.moments = nn.ModuleDict({n: ClassMoments(graph[n].cardinality, latent_dim)
                                      for n in graph.order if graph[n].discrete})

    def has_code(self, node: str) -> bool:
        return node in self.moments

    def update(self, residuals: Tensor, labels: dict[str, Tensor], mask: dict[str, Tensor], decay: float) -> None:
        """Residuals (B, n, d), blocks in topological order; only observed labels count."""
        for name, moments in self.moments.items():
            seen = mask[name].bool()
            moments.update(residuals[seen, self.graph.index(name)], labels[name][seen], decay)

    def fitted(self, node: str, classes: Tensor) -> bool:
        """Whether every class in ``classes`` (B,) has seen at least ``min_count`` residuals."""
        m = self.moments[node]
        return bool((m.count[classes.long().to(m.count.device)] >= self.min_count).all())

    def sample(self, node: str, classes: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Residuals (B, d) drawn from the priors of ``classes`` (B,); the draw is seeded by ``generator`` (CPU)."""
        m = self.moments[node]
        mean, chol = m.gaussian(classes.long().to(m.count.device))
        eps = torch.randn(mean.shape, generator=generator).to(mean.device)
        return mean + (chol @ eps[..., None])[..., 0]
