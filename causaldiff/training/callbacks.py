"""Training callbacks: a reconstruction + intervention grid PNG every N steps (rank zero, also to wandb), and a
ModelCheckpoint whose last.ckpt holds the final step."""

from __future__ import annotations

from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_only

from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.viz import grid_image, save_png


class ModelCheckpoint(pl.callbacks.ModelCheckpoint):
    """Lightning's, except that ``save_last`` also saves the final step. Lightning 2.6 writes last.ckpt at the end of
    training only if it never wrote it before, so a run that stopped between two ``every_n_train_steps`` saves
    (``max_steps``, ``max_time``) kept an older step as its last: a 750-step run at every 500 kept step 500."""

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_end(trainer, pl_module)
        if self.save_last and trainer.global_step and self._last_global_step_saved != trainer.global_step:
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


def default_interventions(model) -> list[str]:
    """One ``do`` per node: the 90th training percentile (continuous) or class 1 (discrete)."""
    out = []
    for i, name in enumerate(model.graph.order):
        node = model.graph[name]
        value = 1 if node.discrete else model.scm.quantiles[i, int(0.9 * (model.scm.quantiles.shape[1] - 1))].item()
        out.append(f"{name}={value:.4g}")
    return out


class GridCallback(pl.Callback):
    """Every ``every_n_steps``: columns factual, reconstruction and one ``do`` per node, for ``n`` val images."""

    def __init__(self, every_n_steps: int = 500, n: int = 4, steps: int = 20):
        self.every_n_steps, self.n, self.steps = every_n_steps, n, steps

    @rank_zero_only
    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        if self.every_n_steps <= 0 or step % self.every_n_steps != 0 or step == 0:
            return
        dm = trainer.datamodule
        items = [dm.subset("val" if len(dm.splits["val"]) else "train")[i] for i in range(self.n)]
        x = torch.stack([it["x"] for it in items]).to(pl_module.device)
        labels = {k: torch.stack([it["labels"][k] for it in items]) for k in items[0]["labels"]}
        model = pl_module.ema_model
        was_training = model.training
        pipe = CounterfactualPipeline(model)
        dos = [[], *default_interventions(model)]
        outs = pipe.counterfactuals(pipe.abduct(x, labels, self.steps), dos, self.steps)
        model.train(was_training)
        img = grid_image([x, *[o.cf_x for o in outs]], ["factual", "recon", *dos[1:]])
        # not trainer.log_dir: it broadcasts, and this runs on rank zero alone (a DDP deadlock)
        root = getattr(trainer.logger, "log_dir", None) or trainer.default_root_dir
        path = Path(root) / "grids" / f"step_{step:07d}.png"
        save_png(img, path)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image(key="grid", images=[str(path)], step=step)
