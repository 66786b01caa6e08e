"""DeepSCM's image mechanism (Pawlowski, Castro & Glocker, "Deep structural causal models for tractable
counterfactual inference", NeurIPS 2020), written from the paper: a conditional VAE x ~ p(x | z, pa) with
z ~ N(0, I), amortised posterior q(z | x, pa), and a Gaussian pixel likelihood whose noise is abducted."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from causaldiff.graph import CausalGraph
from peers.base import LabelCode, Labels, ResBlock, gaussian_kl, gaussian_nll, out_head, split_head


class ConditionalVAE(nn.Module):
    """Encoder (B, C, H, W) + labels → q(z) (B, latent_dim); decoder z + labels → loc, log-scale (B, C, H, W).

    Three stride-2 stages (H → H/8), one residual block each below full resolution; the labels' code is concatenated
    to the image features (encoder) and to z (decoder), as DeepSCM conditions both on pa."""

    def __init__(self, graph: dict, label_stats: dict, channels: int, size: int = 32, latent_dim: int = 16,
                 widths: tuple[int, ...] = (16, 32, 64), hidden: int = 256):
        super().__init__()
        self.code = LabelCode(CausalGraph.from_dict(graph), label_stats)
        self.latent_dim, self.bottom = latent_dim, (widths[-1], size // 2 ** len(widths), size // 2 ** len(widths))
        down, prev = [], channels
        for w in widths:
            down += [nn.Conv2d(prev, w, 4, stride=2, padding=1), ResBlock(w)]
            prev = w
        self.encoder = nn.Sequential(*down, nn.Flatten())
        flat = widths[-1] * self.bottom[1] * self.bottom[2]
        self.posterior = nn.Sequential(nn.Linear(flat + self.code.dim, hidden), nn.SiLU(),
                                       nn.Linear(hidden, 2 * latent_dim))
        self.project = nn.Sequential(nn.Linear(latent_dim + self.code.dim, hidden), nn.SiLU(), nn.Linear(hidden, flat))
        up, outs = [], [*widths[-2::-1], widths[0]]
        for w_in, w_out in zip(widths[::-1], outs):
            up += [ResBlock(w_in), nn.SiLU(), nn.ConvTranspose2d(w_in, w_out, 4, stride=2, padding=1)]
        self.decoder = nn.Sequential(*up, nn.SiLU(), out_head(widths[0], channels))

    def q(self, x: Tensor, labels: Labels) -> tuple[Tensor, Tensor]:
        """Posterior mean and log-std, each (B, latent_dim)."""
        mu, log_std = self.posterior(torch.cat([self.encoder(x), self.code(labels)], 1)).chunk(2, 1)
        return mu, log_std.clamp(-8, 4)

    def decode(self, z: Tensor, labels: Labels) -> tuple[Tensor, Tensor]:
        h = self.project(torch.cat([z, self.code(labels)], 1)).view(-1, *self.bottom)
        return split_head(self.decoder(h))

    def abduct(self, x: Tensor, labels: Labels) -> Tensor:
        return self.q(x, labels)[0]

    def elbo_terms(self, x: Tensor, labels: Labels) -> tuple[Tensor, Tensor]:
        mu, log_std = self.q(x, labels)
        z = mu + torch.randn_like(mu) * log_std.exp()
        loc, log_scale = self.decode(z, labels)
        zero = torch.zeros_like(mu)
        return gaussian_nll(x, loc, log_scale), gaussian_kl(mu, log_std, zero, zero)
