"""A small hierarchical VAE in the manner of causal-gen (Ribeiro, Xia, Monteiro, Pawlowski & Glocker, "High fidelity
image counterfactuals with probabilistic causal models", ICML 2023), itself built on VDVAE (Child, ICLR 2021),
written from the papers: a top-down stack of latents z_1..z_L at rising resolution, prior p(z_i | z_<i, pa) and
posterior q(z_i | z_<i, x, pa) sharing the top-down path, the labels' code added at every layer. Counterfactuals
abduct each latent's exogenous noise u_i = (z_i - mu_p,i) / sigma_p,i under the factual prior and decode
z*_i = mu*_p,i + sigma*_p,i u_i down the counterfactual path (the paper's abduction through the prior)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from causaldiff.graph import CausalGraph
from peers.base import LabelCode, Labels, ResBlock, gaussian_kl, gaussian_nll, out_head, split_head

# (resolution, latent channels) per stochastic layer, top (coarsest) first
LAYERS = ((4, 8), (4, 8), (8, 8), (8, 8), (16, 4))
WIDTHS = {4: 64, 8: 32, 16: 32, 32: 16}  # no residual block at 32 px: the CPU's time goes there


class TopDownLayer(nn.Module):
    """One stochastic layer: prior and posterior of z_i from the top-down state h (and the encoder's features)."""

    def __init__(self, width: int, z_channels: int, code_dim: int):
        super().__init__()
        self.code = nn.Linear(code_dim, width)
        mid = width // 2  # bottlenecked as VDVAE's blocks are
        self.prior = nn.Sequential(nn.SiLU(), nn.Conv2d(width, mid, 1), nn.SiLU(),
                                   nn.Conv2d(mid, 2 * z_channels, 3, padding=1))
        self.posterior = nn.Sequential(nn.SiLU(), nn.Conv2d(2 * width, mid, 1), nn.SiLU(),
                                       nn.Conv2d(mid, 2 * z_channels, 3, padding=1))
        self.z_in = nn.Conv2d(z_channels, width, 1)
        self.block = ResBlock(width)

    def conditioned(self, h: Tensor, code: Tensor) -> Tensor:
        return h + self.code(code)[:, :, None, None]

    def p(self, hc: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = self.prior(hc).chunk(2, 1)
        return mu, log_std.clamp(-8, 4)

    def q(self, hc: Tensor, feat: Tensor) -> tuple[Tensor, Tensor]:
        mu, log_std = self.posterior(torch.cat([hc, feat], 1)).chunk(2, 1)
        return mu, log_std.clamp(-8, 4)

    def step(self, h: Tensor, z: Tensor) -> Tensor:
        return self.block(h + self.z_in(z))


class HierarchicalVAE(nn.Module):
    """Images (B, C, 32, 32) + labels; latents at 4, 8 and 16 px (:data:`LAYERS`); loc, log-scale (B, C, 32, 32)."""

    def __init__(self, graph: dict, label_stats: dict, channels: int, size: int = 32):
        super().__init__()
        if size != 32:
            raise ValueError(f"the peers' hierarchical VAE is laid out for 32 px images, got {size}")
        self.code = LabelCode(CausalGraph.from_dict(graph), label_stats)
        self.stem = nn.Conv2d(channels, WIDTHS[32], 3, padding=1)
        self.down = nn.ModuleDict({str(r): nn.Sequential(nn.Conv2d(WIDTHS[2 * r], WIDTHS[r], 4, stride=2, padding=1),
                                                         ResBlock(WIDTHS[r])) for r in (16, 8, 4)})
        self.top = nn.Parameter(torch.zeros(1, WIDTHS[4], 4, 4))
        self.layers = nn.ModuleList(TopDownLayer(WIDTHS[r], c, self.code.dim) for r, c in LAYERS)
        self.up = nn.ModuleDict({str(r): nn.Conv2d(WIDTHS[r // 2], WIDTHS[r], 1) for r in (8, 16, 32)})
        self.out_code = nn.Linear(self.code.dim, WIDTHS[32])
        self.head = nn.Sequential(nn.SiLU(), nn.Conv2d(WIDTHS[32], WIDTHS[32], 3, padding=1), nn.SiLU(),
                                  out_head(WIDTHS[32], channels))

    def features(self, x: Tensor) -> dict[int, Tensor]:
        """The bottom-up features at each latent resolution {r: (B, WIDTHS[r], r, r)}."""
        h, feats = self.stem(x), {}
        for r in (16, 8, 4):
            h = self.down[str(r)](h)
            feats[r] = h
        return feats

    def _upsample(self, h: Tensor, r: int) -> Tensor:
        while h.shape[-1] < r:
            res = 2 * h.shape[-1]
            h = self.up[str(res)](nn.functional.interpolate(h, scale_factor=2, mode="nearest"))
        return h

    def top_down(self, labels: Labels, pick) -> tuple[Tensor, Tensor]:
        """Run the top-down path; ``pick(i, layer, hc) -> z_i`` chooses each latent. Returns loc, log-scale."""
        code = self.code(labels)
        h = self.top.expand(code.shape[0], -1, -1, -1)
        for i, ((r, _), layer) in enumerate(zip(LAYERS, self.layers)):
            h = self._upsample(h, r)
            h = layer.step(h, pick(i, layer, layer.conditioned(h, code)))
        h = self._upsample(h, 32) + self.out_code(code)[:, :, None, None]
        return split_head(self.head(h))

    def elbo_terms(self, x: Tensor, labels: Labels) -> tuple[Tensor, Tensor]:
        feats, kls = self.features(x), []

        def posterior_sample(i, layer, hc):
            (mu_q, log_q), (mu_p, log_p) = layer.q(hc, feats[LAYERS[i][0]]), layer.p(hc)
            kls.append(gaussian_kl(mu_q, log_q, mu_p, log_p))
            return mu_q + torch.randn_like(mu_q) * log_q.exp()

        loc, log_scale = self.top_down(labels, posterior_sample)
        return gaussian_nll(x, loc, log_scale), torch.stack(kls).sum(0)

    def abduct(self, x: Tensor, labels: Labels) -> list[Tensor]:
        """Each layer's exogenous noise u_i (B, c_i, r_i, r_i): the posterior mean standardised by the prior."""
        feats, us = self.features(x), []

        def posterior_mean(i, layer, hc):
            (mu_q, _), (mu_p, log_p) = layer.q(hc, feats[LAYERS[i][0]]), layer.p(hc)
            us.append((mu_q - mu_p) * torch.exp(-log_p))
            return mu_q

        self.top_down(labels, posterior_mean)
        return us

    def decode(self, us: list[Tensor], labels: Labels) -> tuple[Tensor, Tensor]:
        def from_noise(i, layer, hc):
            mu_p, log_p = layer.p(hc)
            return mu_p + log_p.exp() * us[i]

        return self.top_down(labels, from_noise)
