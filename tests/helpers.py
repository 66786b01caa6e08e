"""Shared tiny-model builders for tests (CPU, seconds)."""

from __future__ import annotations

import torch

from causaldiff.data.datamodule import CausalDataModule
from causaldiff.models.causal_diffae import CausalDiffAE

TINY = dict(latent_dim=4, style_dim=8, encoder_widths=(8, 16), unet_channels=(8, 16), mechanism_hidden=16,
            num_train_timesteps=100)


def tiny_model(world: str = "pendulum", size: int = 16, n: int = 128, seed: int = 0) -> tuple[CausalDiffAE, dict]:
    """A randomly initialised tiny CausalDiffAE with its SCM fitted, and a batch of its world's data."""
    torch.manual_seed(seed)
    dm = CausalDataModule(world=world, n=n, size=size, batch_size=8, seed=seed)
    model = CausalDiffAE(dm.graph_spec, dm.label_stats, image_size=size, channels=dm.channels, **TINY)
    model.scm.fit(dm.train_labels(), steps=50)
    batch = next(iter(dm.val_dataloader()))
    return model.eval(), batch
