"""Label alignment: a label prior ``p(z_i | y_i) = N(g_i(y_i), sigma^2 I)`` and read-out heads ``h_i(z_i) -> y_i``.

Labels enter in raw units and are standardised with the train-split statistics saved in the checkpoint.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from causaldiff.graph import CausalGraph


def read_labels(graph: CausalGraph, heads: list[Tensor], loc: Tensor, scale: Tensor) -> dict[str, Tensor]:
    """Per-node head outputs (B, K), in topological order, → labels (B,) in raw units: the argmax class (discrete)
    or the standardised value times ``scale`` plus ``loc`` (continuous)."""
    return {name: h.argmax(-1).float() if graph[name].discrete else h[:, 0] * scale[i] + loc[i]
            for i, (name, h) in enumerate(zip(graph.order, heads))}


class LabelAlignment(nn.Module):
    def __init__(self, graph: CausalGraph, latent_dim: int, label_stats: dict[str, list[float]] | None = None,
                 prior_std: float = 0.5):
        super().__init__()
        self.graph, self.prior_std = graph, prior_std
        stats = label_stats or {}
        self.register_buffer("loc", torch.tensor([stats.get(n, [0.0, 1.0])[0] for n in graph.order]))
        self.register_buffer("scale", torch.tensor([stats.get(n, [0.0, 1.0])[1] for n in graph.order]))
        self.g, self.h = nn.ModuleList(), nn.ModuleList()
        for name in graph.order:
            node = graph[name]
            if node.discrete:
                self.g.append(nn.Embedding(node.cardinality, latent_dim))
            else:
                self.g.append(nn.Sequential(nn.Linear(1, latent_dim), nn.SiLU(), nn.Linear(latent_dim, latent_dim)))
            self.h.append(nn.Linear(latent_dim, node.cardinality))

    def standardise(self, i: int, y: Tensor) -> Tensor:
        return (y.float() - self.loc[i]) / self.scale[i]

    def prior_block(self, i: int, y: Tensor) -> Tensor:
        """``g_i(y)`` (B, d) for raw values y (B,)."""
        if self.graph[self.graph.order[i]].discrete:
            return self.g[i](y.long().clamp(0, self.g[i].num_embeddings - 1))
        return self.g[i](self.standardise(i, y)[:, None])

    def prior_mean(self, labels: dict[str, Tensor]) -> Tensor:
        """(B, n, d) prior means for every node."""
        return torch.stack([self.prior_block(i, labels[n]) for i, n in enumerate(self.graph.order)], dim=1)

    def heads(self, z: Tensor) -> list[Tensor]:
        """Per-node head outputs (B, K_i) from z (B, n, d), topological order: logits, or a standardised value."""
        return [h(z[:, i]) for i, h in enumerate(self.h)]

    def readout(self, z: Tensor) -> dict[str, Tensor]:
        """Predicted labels in raw units from z (B, n, d): values (continuous) or class indices (discrete)."""
        return read_labels(self.graph, self.heads(z), self.loc, self.scale)

    def readout_loss(self, z: Tensor, labels: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        """Masked read-out loss: MSE on standardised values, cross-entropy on classes; mean over observed."""
        total = z.new_zeros(())
        for i, name in enumerate(self.graph.order):
            h, m = self.h[i](z[:, i]), mask[name].float()
            if self.graph[name].discrete:
                per = F.cross_entropy(h, labels[name].long().clamp(0, h.shape[1] - 1), reduction="none")
            else:
                per = (h[:, 0] - self.standardise(i, labels[name])) ** 2
            total = total + (per * m).sum() / m.sum().clamp_min(1)
        return total
