"""Conditional diffusion decoder: a diffusers UNet2DModel conditioned through its time embedding.

``[z, s]`` is projected to the time-embedding width and added to it (``class_embed_type="identity"``), with
scale-shift ResNet conditioning (as in DiffAE, Preechakul et al., 2022). A learned null embedding replaces the
condition with probability ``p_uncond`` during training, so classifier-free guidance can set the strength later.

The sum ``temb + cond`` is all a ResNet block sees of the condition. The sinusoidal time embedding's MLP output has a
norm of ~11 at 32 px; an unnormalised projection starts near 1 and the decoder learns to read x_t instead (measured:
a z swap moved x0 by 0.013 at t = 500). ``normalise=True`` LayerNorms the projection and scales it by ``scale`` so
the condition holds its own against the time embedding (|cond| = scale * sqrt(E), 34 at E = 128).
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from torch import Tensor, nn


def make_unet(image_size: int, channels: int, block_channels: tuple[int, ...] = (32, 64, 64),
              layers_per_block: int = 1, attention_levels: tuple[int, ...] = (), extra_in: int = 0) -> UNet2DModel:
    """A UNet2DModel whose ``class_labels`` input is a (B, 4 * block_channels[0]) embedding; ``extra_in`` input
    channels beyond the image's (e.g. :func:`with_coordinates`)."""
    down = tuple("AttnDownBlock2D" if i in attention_levels else "DownBlock2D" for i in range(len(block_channels)))
    up = tuple("AttnUpBlock2D" if len(block_channels) - 1 - i in attention_levels else "UpBlock2D"
               for i in range(len(block_channels)))
    groups = min(32, block_channels[0])
    if any(c % groups for c in block_channels):
        raise ValueError(f"block_channels {block_channels} must all be divisible by {groups} (GroupNorm groups)")
    return UNet2DModel(
        sample_size=image_size, in_channels=channels + extra_in, out_channels=channels,
        block_out_channels=tuple(block_channels),
        layers_per_block=layers_per_block, down_block_types=down, up_block_types=up, norm_num_groups=groups,
        class_embed_type="identity", resnet_time_scale_shift="scale_shift", add_attention=bool(attention_levels),
    )


def with_coordinates(x: Tensor) -> Tensor:
    """(B, C, H, W) → (B, C + 2, H, W): x and y pixel coordinates in [-1, 1] appended (CoordConv, Liu et al., 2018).

    The condition reaches a ResNet block as a per-channel scale and shift, the same at every pixel; with coordinate
    maps among the features, a code can say *where* (a lesion's site) and the block can draw it there.
    """
    b, _, h, w = x.shape
    ys = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype)
    xs = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype)
    grid = torch.stack(torch.meshgrid(xs, ys, indexing="xy"))  # (2, H, W): x varies along W, y along H
    return torch.cat([x, grid.expand(b, -1, -1, -1)], dim=1)


class ConditionProjection(nn.Module):
    """(B, n*d + s) → (B, E) time-embedding offset, plus the learned null condition (E,).

    With ``normalise``, both the projection and the null condition go through ``scale * LayerNorm`` (no affine), so
    every condition, null included, has the norm ``scale * sqrt(E)``.
    """

    def __init__(self, in_dim: int, embed_dim: int, normalise: bool = True, scale: float = 3.0):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.null = nn.Parameter(0.02 * torch.randn(embed_dim))
        self.norm = nn.LayerNorm(embed_dim, elementwise_affine=False) if normalise else nn.Identity()
        self.scale = scale if normalise else 1.0

    def null_condition(self) -> Tensor:
        """(E,) the learned null condition, on the same scale as a real one."""
        return self.scale * self.norm(self.null)

    def forward(self, zs: Tensor) -> Tensor:
        return self.scale * self.norm(self.proj(zs))
