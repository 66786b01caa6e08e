"""What the peers share: the label code their networks are conditioned on, the Gaussian pixel likelihood whose noise
they abduct, and the three-step counterfactual the Evaluator calls as it calls a causaldiff pipeline.

A peer model has ``abduct(x, labels) -> latents`` (its exogenous latent noise, from the posterior means) and
``decode(latents, labels) -> (loc, log_scale)``, each (B, C, H, W), and ``elbo_terms(x, labels) -> (nll, kl)``,
each (B,) in nats, for training.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from causaldiff.graph import CausalGraph
from causaldiff.scm import AttributeSCM

Labels = dict[str, Tensor]
MIN_LOG_SCALE = -5.0  # pixel std >= e^-5 (0.43 grey levels): the likelihood cannot collapse onto one image


class LabelCode(nn.Module):
    """Labels {node: (B,)} in raw units → (B, D): one-hot classes, continuous values standardised with the training
    split's statistics. Every node conditions the image: x's parents are all of the graph's variables."""

    def __init__(self, graph: CausalGraph, stats: dict[str, list[float]]):
        super().__init__()
        self.graph = graph
        self.register_buffer("loc", torch.tensor([stats[n][0] for n in graph.order]))
        self.register_buffer("scale", torch.tensor([stats[n][1] for n in graph.order]))
        self.dim = sum(graph[n].cardinality if graph[n].discrete else 1 for n in graph.order)

    def forward(self, labels: Labels) -> Tensor:
        parts = []
        for i, name in enumerate(self.graph.order):
            y = labels[name].to(self.loc.device)
            if self.graph[name].discrete:
                parts.append(nn.functional.one_hot(y.long(), self.graph[name].cardinality).float())
            else:
                parts.append(((y.float() - self.loc[i]) / self.scale[i])[:, None])
        return torch.cat(parts, 1)


def gaussian_nll(x: Tensor, loc: Tensor, log_scale: Tensor) -> Tensor:
    """(B,) -log N(x; loc, exp(log_scale)^2) summed over pixels, x in [-1, 1] dequantised by the caller."""
    z = (x - loc) * torch.exp(-log_scale)
    return (0.5 * z ** 2 + log_scale + 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)


def gaussian_kl(mu_q: Tensor, log_q: Tensor, mu_p: Tensor, log_p: Tensor) -> Tensor:
    """(B,) KL(N(mu_q, e^log_q) || N(mu_p, e^log_p)) summed over all but the batch dimension (log_*: log std)."""
    kl = log_p - log_q + (torch.exp(2 * log_q) + (mu_q - mu_p) ** 2) / (2 * torch.exp(2 * log_p)) - 0.5
    return kl.flatten(1).sum(1)


@dataclass
class PeerOutput:
    cf_x: Tensor  # (B, C, H, W) in [-1, 1]
    cf_labels: Labels


class PeerPipeline:
    """A peer as a counterfactual model in Pearl's three steps, called as a :class:`CounterfactualPipeline` is.

    1. Abduction: the latents from the posterior means under the factual labels (``model.abduct``); with
       ``pixel_noise``, also the image's own noise u = (x - loc) / scale under the factual decoding (DeepSCM's flow
       and causal-gen's likelihood are invertible in it: Pawlowski et al. 2020; Ribeiro et al. 2023).
    2. Action: counterfactual labels from the attribute SCM, the one causaldiff fits (descendants follow).
    3. Prediction: decode the abducted latents under the counterfactual labels: loc*, or loc* + scale* u.
    """

    def __init__(self, model: nn.Module, scm: AttributeSCM, pixel_noise: bool):
        self.model, self.scm, self.pixel_noise = model.eval(), scm, pixel_noise

    @torch.no_grad()
    def __call__(self, x: Tensor, labels: Labels, do, steps=None, guidance=None,
                 generator: torch.Generator | None = None) -> PeerOutput:
        cf_labels = self.scm.counterfactual(labels, do, generator)
        latents = self.model.abduct(x, labels)
        cf_loc, cf_log_scale = self.model.decode(latents, cf_labels)
        if not self.pixel_noise:
            return PeerOutput(cf_loc.clamp(-1, 1), cf_labels)
        loc, log_scale = self.model.decode(latents, labels)
        u = (x - loc) * torch.exp(-log_scale)
        return PeerOutput((cf_loc + torch.exp(cf_log_scale) * u).clamp(-1, 1), cf_labels)


def out_head(width: int, channels: int) -> nn.Module:
    """Features (B, width, H, W) → loc and log-scale per pixel (B, 2C, H, W)."""
    return nn.Conv2d(width, 2 * channels, 3, padding=1)


def split_head(out: Tensor) -> tuple[Tensor, Tensor]:
    """(B, 2C, H, W) → loc (tanh, in [-1, 1]) and log-scale (>= MIN_LOG_SCALE), each (B, C, H, W)."""
    loc, log_scale = out.chunk(2, 1)
    return torch.tanh(loc), MIN_LOG_SCALE + nn.functional.softplus(log_scale - MIN_LOG_SCALE)


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv(SiLU(GN(conv(SiLU(GN(x))))))."""

    def __init__(self, width: int):
        super().__init__()
        groups = min(8, width // 4)
        self.body = nn.Sequential(nn.GroupNorm(groups, width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1),
                                  nn.GroupNorm(groups, width), nn.SiLU(), nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: Tensor) -> Tensor:
        return x + self.body(x)
