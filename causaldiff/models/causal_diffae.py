"""CausalDiffAE: causal encoder + latent mechanisms + label alignment + conditional UNet decoder + attribute SCM.

After Komanduri et al., "Causal Diffusion Autoencoders" (ECAI 2024), with the graph from config, recursive
mechanisms, and the label-level SCM used to report counterfactual labels.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor, nn

from causaldiff.checkpoint import as_checkpoint, model_state
from causaldiff.diffusion.schedule import alphas_cumprod, scheduler_config
from causaldiff.graph import CausalGraph
from causaldiff.hparams import kwargs_for
from causaldiff.models.alignment import LabelAlignment
from causaldiff.models.decoder import ConditionProjection, make_unet, with_coordinates
from causaldiff.models.encoder import CausalEncoder
from causaldiff.models.exogenous import ExogenousPrior
from causaldiff.models.mechanisms import LatentMechanisms
from causaldiff.scm import AttributeSCM


class CausalDiffAE(nn.Module):
    """The whole model. Constructor arguments are the config schema (``model:`` in a fit config) and are saved in
    checkpoints.

    Args:
        graph: the causal graph, ``{node: {kind, parents, num_classes}}`` (see :class:`CausalGraph`); linked from
            the data in a fit config.
        label_stats: ``{node: [mean, std]}`` of the train labels, raw units; standardises continuous labels (linked).
        image_size: image side in pixels (linked from ``data.size``).
        channels: image channels, 1 or 3 (linked from the data).
        latent_dim: width d of each node's latent block z_i; z is (B, n_nodes, d).
        style_dim: width of the style code s: what the labels do not explain.
        encoder_widths: output channels of the encoder's strided conv stages (each halves the resolution).
        unet_channels: output channels of the UNet's resolution levels; all divisible by min(32, first).
        layers_per_block: ResNet blocks per UNet level.
        attention_levels: indices of the UNet levels with self-attention (none by default).
        mechanism_hidden: hidden width of each latent mechanism MLP f_i.
        prior_std: std of the label prior p(z_i | y_i) = N(g_i(y_i), prior_std^2 I), in latent units.
        num_train_timesteps: diffusion timesteps T of the training schedule.
        beta_schedule: diffusers beta schedule name (``linear``, ``scaled_linear``, ``squaredcos_cap_v2``).
        condition_norm: LayerNorm the condition and scale it by 3 so it holds its own against the time embedding
            (see :class:`ConditionProjection`); False is the stock projection of older checkpoints.
        prediction: what the UNet outputs: ``eps`` (the noise) or ``v`` (``sqrt(a_t) eps - sqrt(1 - a_t) x0``,
            Salimans & Ho 2022), which near t = T is -x0 itself, so the noisy steps that decide layout are learned
            as images rather than as a residual of x_t. :meth:`eps` converts, so samplers always see eps.
        coordinates: append pixel-coordinate maps to the UNet's input (:func:`with_coordinates`), so a code can
            place what it carries (a lesion's site); False in checkpoints written before the option.
    """

    def __init__(self, graph: dict, label_stats: dict | None = None, image_size: int = 32, channels: int = 3,
                 latent_dim: int = 16, style_dim: int = 32, encoder_widths: tuple[int, ...] = (32, 64, 128),
                 unet_channels: tuple[int, ...] = (32, 64, 64), layers_per_block: int = 1,
                 attention_levels: tuple[int, ...] = (), mechanism_hidden: int = 64, prior_std: float = 0.5,
                 num_train_timesteps: int = 1000, beta_schedule: str = "linear", condition_norm: bool = True,
                 prediction: str = "eps", coordinates: bool = False):
        super().__init__()
        if prediction not in ("eps", "v"):
            raise ValueError(f"prediction must be 'eps' or 'v', got {prediction!r}")
        self.config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        self.graph = CausalGraph.from_dict(graph)
        n = len(self.graph)
        self.image_size, self.channels, self.latent_dim, self.style_dim = image_size, channels, latent_dim, style_dim
        self.prediction, self.coordinates = prediction, coordinates
        self.encoder = CausalEncoder(channels, n, latent_dim, style_dim, tuple(encoder_widths))
        self.mechanisms = LatentMechanisms(self.graph, latent_dim, mechanism_hidden)
        self.alignment = LabelAlignment(self.graph, latent_dim, label_stats, prior_std)
        self.exogenous = ExogenousPrior(self.graph, latent_dim)
        self.unet = make_unet(image_size, channels, tuple(unet_channels), layers_per_block, tuple(attention_levels),
                              2 if coordinates else 0)
        self.condition_proj = ConditionProjection(n * latent_dim + style_dim, 4 * unet_channels[0], condition_norm)
        self.scm = AttributeSCM(self.graph)
        self.scheduler_config = scheduler_config(num_train_timesteps, beta_schedule)
        self.register_buffer("alphas_cumprod", alphas_cumprod(self.scheduler_config), persistent=False)
        shown = [float(self.graph[name].shown) for name in self.graph.order]
        self.register_buffer("shown", torch.tensor(shown)[:, None], persistent=False)

    # ------------------------------------------------------------------ pieces
    def encode(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """x (B, C, H, W) → posterior (mu_u, logvar_u) (B, n, d) and (mu_s, logvar_s) (B, style_dim)."""
        self.check_images(x)
        return self.encoder(x)

    def deviations(self, z: Tensor, labels: dict[str, Tensor]) -> Tensor:
        """(B, n, d): each block's deviation from its label's prior mean, ``z_i - g_i(y_i)`` (see :mod:`.exogenous`)."""
        return z - self.alignment.prior_mean(labels)

    def condition(self, z: Tensor, s: Tensor) -> Tensor:
        """(B, n, d), (B, style) → (B, E) decoder condition. A node the image does not show (``shown: false``) enters
        as zeros: x's parents in the SCM are the shown nodes, so a child's block alone says what the child looks like
        (read from an ancestor's block too, do(child) with the ancestor held shows only in part)."""
        return self.condition_proj(torch.cat([(z * self.shown).flatten(1), s], dim=1))

    def null_condition(self, batch: int) -> Tensor:
        return self.condition_proj.null_condition().expand(batch, -1)

    def eps(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """Predicted noise (B, C, H, W) for x_t at timesteps t (B,) under condition (B, E)."""
        out = self.unet(with_coordinates(x_t) if self.coordinates else x_t, t, class_labels=cond).sample
        if self.prediction == "eps":
            return out
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1).to(out.dtype)
        return a.sqrt() * out + (1 - a).sqrt() * x_t  # eps from v: x_t = sqrt(a) x0 + sqrt(1 - a) eps

    def x0(self, x_t: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """x̂0 (B, C, H, W) predicted from x_t at timesteps t (B,) under cond (B, E):
        ``(x_t - sqrt(1 - a_t) eps) / sqrt(a_t)`` (DDIM eq. 9)."""
        a = self.alphas_cumprod[t].view(-1, 1, 1, 1)
        return (x_t - (1 - a).sqrt() * self.eps(x_t, t, cond).float()) / a.sqrt()

    def check_images(self, x: Tensor) -> None:
        expect = (self.channels, self.image_size, self.image_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != expect:
            raise ValueError(f"images must have shape (B, {', '.join(map(str, expect))}); got {tuple(x.shape)}")

    # ------------------------------------------------------------------ checkpoints
    @classmethod
    def from_checkpoint(cls, path: str | Path | dict, map_location: str | torch.device = "cpu",
                        ema: bool = True) -> CausalDiffAE:
        """Load a training checkpoint (EMA weights by default) or an exported one (a path, shipped name or the
        loaded dict); never runs pickled code."""
        ckpt = as_checkpoint(path, map_location)
        path = "checkpoint" if isinstance(path, dict) else path
        config = kwargs_for(cls, ckpt.get("hyper_parameters", {}))
        if "graph" not in config:
            raise ValueError(f"{path}: checkpoint has no model config (hyper_parameters.graph missing)")
        config.setdefault("condition_norm", False)  # checkpoints written before the option have the stock projection
        model = cls(**config)
        model.load_state_dict(with_exogenous(model, model_state(ckpt, path, ema)), strict=True)
        return model.eval()


def with_exogenous(model: nn.Module, state: dict, prefix: str = "") -> dict:
    """``state`` with empty exogenous banks where it has none, or holds another layout (checkpoints written before
    them): such a model keeps every abducted deviation, as it always did."""
    own = {k: v for k, v in model.state_dict().items() if k.startswith("exogenous.")}
    kept = {k: v for k, v in state.items() if not k.startswith(prefix + "exogenous.") or k[len(prefix):] in own}
    return {**{prefix + k: torch.zeros_like(v) for k, v in own.items()}, **kept}
