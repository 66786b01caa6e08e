"""Causal encoder: x → Gaussian posterior over exogenous latents u (n_nodes × d) and a style code s."""

from __future__ import annotations

from torch import Tensor, nn


def _groups(ch: int) -> int:
    return next(g for g in (32, 16, 8, 4, 2, 1) if ch % g == 0)


class CausalEncoder(nn.Module):
    """Strided conv stack with GroupNorm + SiLU, global pooling, and linear heads for (mu, logvar) of u and s."""

    def __init__(self, channels: int, n_nodes: int, latent_dim: int = 16, style_dim: int = 32,
                 widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        self.n_nodes, self.latent_dim, self.style_dim = n_nodes, latent_dim, style_dim
        layers, c_in = [nn.Conv2d(channels, widths[0], 3, padding=1)], widths[0]
        for w in widths:
            layers += [nn.GroupNorm(_groups(c_in), c_in), nn.SiLU(), nn.Conv2d(c_in, w, 4, stride=2, padding=1)]
            c_in = w
        layers += [nn.GroupNorm(_groups(c_in), c_in), nn.SiLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(c_in, 2 * (n_nodes * latent_dim + style_dim))

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x (B, C, H, W) → mu_u, logvar_u (B, n, d), mu_s, logvar_s (B, style_dim)."""
        h = self.head(self.body(x))
        nu = self.n_nodes * self.latent_dim
        mu_u, lv_u, mu_s, lv_s = h.split([nu, nu, self.style_dim, self.style_dim], dim=1)
        shape = (-1, self.n_nodes, self.latent_dim)
        return mu_u.reshape(shape), lv_u.clamp(-12, 6).reshape(shape), mu_s, lv_s.clamp(-12, 6)
