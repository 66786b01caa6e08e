"""Conditional diffusion decoder: a diffusers UNet2DModel conditioned through its time embedding.

``[z, s]`` is projected to the time-embedding width and added to it (``class_embed_type="identity"``), with
scale-shift ResNet conditioning (as in DiffAE, Preechakul et al., 2022). A learned null embedding replaces the
condition with probability ``p_uncond`` during training, so classifier-free guidance can set the strength later.
"""

from __future__ import annotations

import torch
from diffusers import UNet2DModel
from torch import Tensor, nn


def make_unet(image_size: int, channels: int, block_channels: tuple[int, ...] = (32, 64, 64),
              layers_per_block: int = 1, attention_levels: tuple[int, ...] = ()) -> UNet2DModel:
    """A UNet2DModel whose ``class_labels`` input is a (B, 4 * block_channels[0]) embedding."""
    down = tuple("AttnDownBlock2D" if i in attention_levels else "DownBlock2D" for i in range(len(block_channels)))
    up = tuple("AttnUpBlock2D" if len(block_channels) - 1 - i in attention_levels else "UpBlock2D"
               for i in range(len(block_channels)))
    groups = min(32, block_channels[0])
    if any(c % groups for c in block_channels):
        raise ValueError(f"block_channels {block_channels} must all be divisible by {groups} (GroupNorm groups)")
    return UNet2DModel(
        sample_size=image_size, in_channels=channels, out_channels=channels, block_out_channels=tuple(block_channels),
        layers_per_block=layers_per_block, down_block_types=down, up_block_types=up, norm_num_groups=groups,
        class_embed_type="identity", resnet_time_scale_shift="scale_shift", add_attention=bool(attention_levels),
    )


class ConditionProjection(nn.Module):
    """(B, n*d + s) → (B, E) time-embedding offset, plus the learned null condition (E,)."""

    def __init__(self, in_dim: int, embed_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.Linear(in_dim, embed_dim), nn.SiLU(), nn.Linear(embed_dim, embed_dim))
        self.null = nn.Parameter(0.02 * torch.randn(embed_dim))

    def forward(self, zs: Tensor) -> Tensor:
        return self.proj(zs)
