"""Exogenous codes: what a discrete label switches on but does not say (a lesion's site and size).

A discrete node's latent block is ``z_k = g_k(y_k) + r_k``: the label's prior mean plus a deviation the encoder is
free to fill with the node's unlabelled attributes. The deviation of a lesion-free image says nothing about where a
lesion would be, so ``do(lesion=1)`` cannot abduct it: it is **drawn** from the deviations of the target class seen
in training. The prior is empirical, a bank of the most recent deviations per class (written every training step
from the EMA encoder), because such attributes are not Gaussian: a site on a ring, averaged, is the ring's centre.
A class kept by the intervention keeps its abducted deviation.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from causaldiff.graph import CausalGraph


class ClassBank(nn.Module):
    """The last ``size`` deviations (K, size, d) of each of K classes, written first-in first-out."""

    def __init__(self, num_classes: int, size: int, dim: int):
        super().__init__()
        self.register_buffer("bank", torch.zeros(num_classes, size, dim))
        self.register_buffer("written", torch.zeros(num_classes, dtype=torch.long))

    @torch.no_grad()
    def update(self, r: Tensor, y: Tensor, seen: Tensor) -> None:
        """Write deviations r (B, d) of classes y (B,) where ``seen`` (B,) over each class's oldest entries.

        No host sync (it runs in every training step): each slot takes the row, if any, whose place in its class's
        order of arrival lands on it; of more rows than the bank holds, the last ``size`` are kept.
        """
        size = self.bank.shape[1]
        slots = torch.arange(size, device=r.device)
        for c in range(self.bank.shape[0]):
            sel = seen.bool() & (y.long() == c)
            rank = sel.long().cumsum(0) - 1  # order of arrival within the class
            n = sel.sum()
            keep = sel & (rank >= n - size)
            lands = keep[None, :] & (((self.written[c] + rank) % size)[None, :] == slots[:, None])  # (size, B)
            row = lands.float().argmax(1)
            self.bank[c] = torch.where(lands.any(1)[:, None], r[row].to(self.bank.dtype), self.bank[c])
            self.written[c] += n

    def sample(self, c: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """One stored deviation (B, d) of each class in c (B,), chosen uniformly by ``generator`` (CPU)."""
        held = self.written[c].clamp(max=self.bank.shape[1]).cpu()
        pick = (torch.rand(c.shape, generator=generator) * held).long().to(c.device)
        return self.bank[c, pick]


class ExogenousPrior(nn.Module):
    """Deviation banks of every discrete node of ``graph`` (continuous nodes have none: their deviation is kept).

    Args:
        size: deviations kept per class.
        min_count: deviations a class needs before its bank is used (see :meth:`fitted`).
    """

    def __init__(self, graph: CausalGraph, latent_dim: int, size: int = 256, min_count: int = 8):
        super().__init__()
        self.graph, self.min_count = graph, min_count
        self.banks = nn.ModuleDict({n: ClassBank(graph[n].cardinality, size, latent_dim)
                                    for n in graph.order if graph[n].discrete})

    def has_code(self, node: str) -> bool:
        return node in self.banks

    def update(self, deviations: Tensor, labels: dict[str, Tensor], mask: dict[str, Tensor]) -> None:
        """Deviations (B, n, d), blocks in topological order; only observed labels count."""
        for name, bank in self.banks.items():
            y = torch.nan_to_num(labels[name].float()).long()  # unobserved labels may be NaN; they are not seen
            bank.update(deviations[:, self.graph.index(name)], y, mask[name])

    def fitted(self, node: str, classes: Tensor) -> bool:
        """Whether every class in ``classes`` (B,) has at least ``min_count`` deviations stored."""
        bank = self.banks[node]
        return bool((bank.written[classes.long().to(bank.written.device)] >= self.min_count).all())

    def sample(self, node: str, classes: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """Deviations (B, d) drawn from the banks of ``classes`` (B,); the draw is seeded by ``generator``."""
        bank = self.banks[node]
        return bank.sample(classes.long().clamp(0, bank.bank.shape[0] - 1).to(bank.bank.device), generator)
