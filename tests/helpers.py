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


def brain_with_banks():
    """A tiny brain model whose lesion=1 bank holds deviations near 5, and lesion-free / lesion images."""
    model, _ = tiny_model("brain", n=256)
    d = model.latent_dim
    torch.manual_seed(0)
    ones = {n: torch.ones(20) for n in model.graph.order}
    model.exogenous.update(5.0 + 0.1 * torch.randn(20, len(model.graph), d), ones, ones)
    model.exogenous.banks["lesion"].written[0] = 20  # class 0 too, so do(lesion=0) draws (zeros)
    from causaldiff.data.worlds import get_world
    from causaldiff.pixels import to_unit

    world = get_world("brain", 16)
    exo, labels = world.sample(400, seed=3)
    x = to_unit(world.render(exo, labels))
    neg, pos = (torch.nonzero(labels["lesion"] == c).flatten()[:3] for c in (0, 1))
    take = lambda idx: (x[idx], {k: v[idx] for k, v in labels.items()})  # noqa: E731
    return model, take(neg), take(pos)
