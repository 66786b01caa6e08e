"""Latent SCM: ``z_i = f_i(z_pa(i)) + u_i`` with masked MLP mechanisms, evaluated in topological order.

Abduction ``u_i = z_i - f_i(z_pa(i))`` is exact. The adjacency comes from the graph; roots have ``z_i = u_i``.
Latents are (B, n, d) with blocks in the graph's topological order.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from causaldiff.graph import CausalGraph


class LatentMechanisms(nn.Module):
    def __init__(self, graph: CausalGraph, latent_dim: int = 16, hidden: int = 64):
        super().__init__()
        self.graph, self.latent_dim = graph, latent_dim
        self.parent_index = [[graph.index(p) for p in graph.parents(n)] for n in graph.order]
        self.f = nn.ModuleList()
        for pa in self.parent_index:
            if pa:
                mlp = nn.Sequential(nn.Linear(len(pa) * latent_dim, hidden), nn.SiLU(), nn.Linear(hidden, latent_dim))
                nn.init.zeros_(mlp[-1].weight)  # start as the identity SCM z = u; mechanisms are learned
                nn.init.zeros_(mlp[-1].bias)
                self.f.append(mlp)
            else:
                self.f.append(nn.Identity())

    def mechanism(self, i: int, blocks: Tensor | list[Tensor]) -> Tensor:
        """``f_i(z_pa(i))`` (B, d) from blocks (B, n, d) or a list of (B, d) holding at least 0..i-1; 0 for roots."""
        pa = self.parent_index[i]
        if not pa:
            return torch.zeros_like(blocks[:, i])  # roots (only reached from abduct, with a (B, n, d) tensor)
        if isinstance(blocks, list):
            return self.f[i](torch.cat([blocks[j] for j in pa], dim=1))
        return self.f[i](blocks[:, pa].flatten(1))

    def forward(self, u: Tensor) -> Tensor:
        """u (B, n, d) → z (B, n, d), recursively in topological order."""
        blocks: list[Tensor] = []
        for i in range(u.shape[1]):
            blocks.append(self.mechanism(i, blocks) + u[:, i] if self.parent_index[i] else u[:, i])
        return torch.stack(blocks, dim=1)

    def abduct(self, z: Tensor) -> Tensor:
        """z (B, n, d) → u (B, n, d), exactly: ``u_i = z_i - f_i(z_pa(i))``."""
        return torch.stack([z[:, i] - self.mechanism(i, z) for i in range(z.shape[1])], dim=1)

    def intervene(self, z: Tensor, new_blocks: dict[int, Tensor], propagate: bool = True) -> Tensor:
        """Set blocks ``new_blocks[i]`` (B, d), then recompute descendants with their abducted u.

        Non-descendants of the intervened blocks are returned bit-identical. ``propagate=False`` changes only the
        intervened blocks (the ``no-mechanisms`` ablation).
        """
        u = self.abduct(z)
        out = z.clone()
        changed = set()
        for i in range(z.shape[1]):
            if i in new_blocks:
                out[:, i] = new_blocks[i]
                changed.add(i)
            elif propagate and any(p in changed for p in self.parent_index[i]):
                out[:, i] = self.mechanism(i, out) + u[:, i]
                changed.add(i)
        return out
