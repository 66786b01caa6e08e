"""LightningModule for CausalDiffAE: loss, AdamW with warm-up + cosine, EMA of weights, logging — nothing else."""

from __future__ import annotations

import copy

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info

from causaldiff.checkpoint import load_checkpoint, model_state
from causaldiff.data.focus import AUTO
from causaldiff.graph import CausalGraph
from causaldiff.hparams import kwargs_for
from causaldiff.models.causal_diffae import CausalDiffAE, with_exogenous
from causaldiff.models.sizing import auto_widths
from causaldiff.training.consistency import consistency_loss
from causaldiff.training.losses import diffae_loss
from causaldiff.training.stages import Stage, lr_at, parse_stages, stage_at


class CausalDiffAEModule(pl.LightningModule):
    """Trains a :class:`CausalDiffAE`. The model's arguments come first (linked from the data: graph, label_stats,
    image_size, channels); then optimisation and loss weights.

    ``beta_cf > 0`` adds the counterfactual-consistency objective (:mod:`.consistency`) on the first ``cf_fraction``
    of each batch, its weight ramped linearly from 0 at ``cf_start_steps`` to ``beta_cf`` at twice that (the reader,
    the EMA encoder, must first read the labels). Its gradient is 400-800x the diffusion loss's at equal weight
    (x̂0 divides eps by sqrt(a_t), ~0.01-0.08 at the noisy steps it is read at: measured on pendulum32 v2), so
    useful weights are ~1e-3.

    ``stages`` (a list of ``{steps, prediction, focus_weight, lr, warmup_steps}``, see :mod:`.stages`) trains the run
    as consecutive stages, each with its own settings and learning-rate cycle; ``trainer.max_steps`` must be their
    total. A checkpoint holds the prediction target of the stage it was saved in, and a resumed run continues the
    stage its step falls in.

    ``widths="auto"`` takes ``encoder_widths``, ``unet_channels`` and ``attention_levels`` from the image size
    (:func:`~causaldiff.models.sizing.auto_widths`) instead of the given ones, and says which.

    ``init_from`` (a checkpoint path or shipped model name) starts training from that model's weights (EMA when it
    has them) instead of from scratch: fine-tuning. The architecture and graph must match; label statistics and the
    attribute SCM still come from this run's data. A resumed run (``ckpt_path``) restores its own weights over them.
    A model without ``coordinates`` may start one with them: the coordinate maps' input weights start at zero, so
    training starts from that model's function. An eps-prediction model may start a v-prediction run (or back): the
    UNet's output is then read as the new target and training re-learns it. At the nearly clean steps v ≈ eps
    (v = sqrt(a_t) eps - sqrt(1 - a_t) x0), so what the model drew there is kept at the start; the noisy steps,
    where an eps model's x̂0 is worst, are the ones re-learned.
    """

    def __init__(self, graph: dict, label_stats: dict | None = None, image_size: int = 32, channels: int = 3,
                 latent_dim: int = 16, style_dim: int = 32, encoder_widths: tuple[int, ...] = (32, 64, 128),
                 unet_channels: tuple[int, ...] = (32, 64, 64), layers_per_block: int = 1,
                 attention_levels: tuple[int, ...] = (), mechanism_hidden: int = 64, prior_std: float = 0.5,
                 num_train_timesteps: int = 1000, beta_schedule: str = "linear", condition_norm: bool = True,
                 prediction: str = "eps", coordinates: bool = False, lr: float = 2e-4, weight_decay: float = 0.0,
                 warmup_steps: int = 100, ema_decay: float = 0.999,
                 beta_z: float = 1.0, beta_u: float = 0.01, beta_s: float = 0.01, beta_read: float = 1.0,
                 kl_warmup_steps: int = 500, p_uncond: float = 0.1, p2_gamma: float = 0.0, p2_k: float = 1.0,
                 snr_gamma: float = 0.0, focus_weight: float = 0.0, beta_cf: float = 0.0, cf_start_steps: int = 1000,
                 cf_fraction: float = 0.5, latent_noise: float = 0.0, channels_last: bool = False,
                 init_from: str | None = None, stages: list[dict] | None = None, widths: str | None = None):
        super().__init__()
        self.save_hyperparameters()
        if widths is not None:
            self._auto_widths(widths)
        self.stages: list[Stage] = parse_stages(stages or [], {k: self.hparams[k] for k in
                                                               ("prediction", "focus_weight", "lr", "warmup_steps")})
        if self.stages:
            self.hparams.prediction = self.stages[0].prediction
            self.hparams.focus_weight = self.stages[0].focus_weight
        self.model = CausalDiffAE(**kwargs_for(CausalDiffAE, self.hparams))
        self.ema_model = copy.deepcopy(self.model).requires_grad_(False)
        if widths is not None:
            h = self.hparams
            rank_zero_info(f"widths: auto for {h.image_size} px images: encoder {h.encoder_widths}, UNet "
                           f"{h.unet_channels}, attention at UNet levels {h.attention_levels or 'none'} "
                           f"({sum(p.numel() for p in self.model.parameters()) / 1e6:.2f} M parameters)")

    def _auto_widths(self, widths: str) -> None:
        """Replace the hparams' widths by :func:`auto_widths` of the image size."""
        if widths != "auto":
            raise ValueError(f"widths must be auto or left out (then encoder_widths, unet_channels, attention_levels "
                             f"are the given ones), got {widths!r}")
        self.hparams.update(auto_widths(self.hparams.image_size))

    def setup(self, stage: str) -> None:
        dm = self.trainer.datamodule if self._trainer is not None else None
        focus = self.hparams.focus_weight or any(s.focus_weight for s in self.stages)
        if stage == "fit" and focus and getattr(dm, "focus", None) is None:
            raise ValueError("focus_weight needs focus masks in the data: set --data.focus=<a binary node> or auto")
        if stage == "fit" and focus and getattr(dm, "focus", None) == AUTO:
            nodes = dm.dataset.focus_nodes
            rank_zero_info(f"focus: the pixels of {', '.join(nodes)} weigh more in the loss" if nodes else
                           "focus: no local node's pixels are marked (a folder's <node>_mask column): none weigh more")
        if stage == "fit" and self.hparams.init_from:
            self._load_initial_weights(self.hparams.init_from)
        if stage == "fit" and not bool(self.model.scm.fitted):
            if dm is None or not hasattr(dm, "train_labels"):
                raise ValueError("fit needs a CausalDataModule (its train labels fit the attribute SCM)")
            self.model.scm.fit(dm.train_labels())
            self.ema_model.scm.load_state_dict(self.model.scm.state_dict())
        if self.hparams.channels_last:
            self.to(memory_format=torch.channels_last)

    def _load_initial_weights(self, name_or_path: str) -> None:
        """Copy network weights from a checkpoint into model and EMA; keep this data's label stats and SCM."""
        ckpt = load_checkpoint(name_or_path)
        own = ("alignment.loc", "alignment.scale")
        state = {k: v for k, v in model_state(ckpt, name_or_path).items()
                 if not k.startswith("scm.") and k not in own}
        hp = ckpt.get("hyper_parameters", {})
        theirs = (_structure(CausalGraph.from_dict(hp["graph"])) if "graph" in hp else None, hp.get("image_size"),
                  hp.get("channels"), hp.get("condition_norm", False))
        mine = (_structure(self.model.graph), self.hparams.image_size, self.hparams.channels,
                self.hparams.condition_norm)
        if theirs != mine:
            raise ValueError(f"init_from {name_or_path}: its (graph, image_size, channels, condition_norm) "
                             f"{theirs} do not match this run's {mine}")
        key, own_in = "unet.conv_in.weight", self.model.unet.conv_in.weight
        if self.model.coordinates and state[key].shape[1] < own_in.shape[1]:
            pad = own_in.shape[1] - state[key].shape[1]
            state[key] = torch.cat([state[key], state[key].new_zeros(state[key].shape[0], pad, *own_in.shape[2:])], 1)
        for model in (self.model, self.ema_model):
            try:
                missing, unexpected = model.load_state_dict(state, strict=False)
            except RuntimeError as e:  # a size mismatch
                raise ValueError(f"init_from {name_or_path}: architecture differs: {e}") from None
            wrong = [k for k in missing if not k.startswith(("scm.", "exogenous.")) and k not in own] + list(unexpected)
            if wrong:
                raise ValueError(f"init_from {name_or_path}: architecture differs (mismatched keys {wrong[:5]})")

    def _batch(self, batch: dict) -> dict:
        if self.hparams.channels_last:
            batch = {**batch, "x": batch["x"].contiguous(memory_format=torch.channels_last)}
        return batch

    def _loss(self, model, batch: dict) -> dict:
        h = self.hparams
        kl_weight = min(1.0, (self.global_step + 1) / max(1, h.kl_warmup_steps))
        return diffae_loss(model, self._batch(batch), kl_weight, h.beta_z, h.beta_u, h.beta_s, h.beta_read,
                           h.p_uncond, h.p2_gamma, h.p2_k, h.latent_noise, h.snr_gamma,
                           h.focus_weight)

    def _enter_stage(self, step: int) -> None:
        """Train step ``step`` under its stage's prediction target and focus weight (saved with the hyperparameters,
        so that a checkpoint says what its weights predict)."""
        stage = stage_at(self.stages, step)
        if stage.prediction != self.hparams.prediction:
            self.model.prediction = self.ema_model.prediction = stage.prediction
            self.print(f"step {step}: stage {self.stages.index(stage) + 1} of {len(self.stages)}, "
                       f"prediction={stage.prediction}")
        self.hparams.prediction, self.hparams.focus_weight = stage.prediction, stage.focus_weight

    def on_train_batch_start(self, batch: dict, batch_idx: int) -> None:
        if self.stages:
            self._enter_stage(self.global_step)

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        terms = self._loss(self.model, batch)
        weight = self._cf_weight(self.global_step)
        if weight > 0:
            terms["cf"] = self._consistency(self._batch(batch))
            terms["loss"] = terms["loss"] + weight * terms["cf"]
            terms["cf"] = terms["cf"].detach()
        self.log_dict({f"train/{k}": v for k, v in terms.items()}, prog_bar=False, batch_size=batch["x"].shape[0])
        self.log("loss", terms["loss"], prog_bar=True, logger=False, batch_size=batch["x"].shape[0])
        return terms["loss"]

    def _cf_weight(self, step: int) -> float:
        start = max(1, self.hparams.cf_start_steps)
        return self.hparams.beta_cf * min(1.0, max(0.0, (step - start) / start))

    def _consistency(self, batch: dict) -> torch.Tensor:
        """The consistency objective on the first ``cf_fraction`` of the batch, read by the EMA model."""
        b = max(1, int(batch["x"].shape[0] * self.hparams.cf_fraction))
        x = batch["x"][:b]
        mu_u, _, mu_s, _ = self.model.encode(x)
        return consistency_loss(self.model, self.ema_model, x, self.model.mechanisms(mu_u), mu_s,
                                {k: v[:b] for k, v in batch["labels"].items()},
                                {k: v[:b] for k, v in batch["mask"].items()})

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        terms = self._loss(self.ema_model, batch)
        self.log_dict({f"val/{k}": v for k, v in terms.items()}, batch_size=batch["x"].shape[0], sync_dist=True)

    def test_step(self, batch: dict, batch_idx: int) -> None:
        terms = self._loss(self.ema_model, batch)
        self.log_dict({f"test/{k}": v for k, v in terms.items()}, batch_size=batch["x"].shape[0], sync_dist=True)

    @torch.no_grad()
    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        """EMA update ``ema = decay * ema + (1 - decay) * weights`` with decay warmed up (1 + n) / (10 + n)."""
        decay = min(self.hparams.ema_decay, (1 + self.global_step) / (10 + self.global_step))
        ema_p = list(self.ema_model.parameters())
        torch._foreach_lerp_(ema_p, list(self.model.parameters()), 1 - decay)
        self._update_exogenous(self._batch(batch))

    @torch.no_grad()
    def _update_exogenous(self, batch: dict) -> None:
        """Write the EMA encoder's deviations of this batch into the exogenous banks (of both models), the prior a
        class switch draws from (see :mod:`causaldiff.models.exogenous`)."""
        ema = self.ema_model
        if not ema.exogenous.banks:
            return
        mu_u = ema.encode(batch["x"])[0]
        ema.exogenous.update(ema.deviations(ema.mechanisms(mu_u), batch["labels"]), batch["labels"], batch["mask"])
        self.model.exogenous.load_state_dict(ema.exogenous.state_dict())

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        """Resume runs begun before exogenous banks existed (theirs start empty); refuse to resume a run under another
        prediction target (its weights would be read as the other one). A staged run's checkpoint holds the target
        of the stage its last step trained in."""
        theirs = checkpoint.get("hyper_parameters", {}).get("prediction", "eps")
        step = int(checkpoint.get("global_step", 0))
        mine = stage_at(self.stages, max(0, step - 1)).prediction if self.stages else self.hparams.prediction
        if theirs != mine:
            raise ValueError(f"this run was trained with prediction={theirs} at step {step}, where this config says "
                             f"{mine}; resume it under the config it was started with (--model.prediction={theirs} "
                             "or its stages), or start a new run")
        if self.stages:
            self._enter_stage(step)
        state = checkpoint["state_dict"]
        for prefix, model in (("model.", self.model), ("ema_model.", self.ema_model)):
            part = {k: v for k, v in state.items() if k.startswith(prefix)}
            for k in part:
                del state[k]
            state.update(with_exogenous(model, part, prefix))

    def configure_optimizers(self):
        params = [p for p in self.model.parameters() if p.requires_grad]
        # the fused kernel: one pass over the parameters (a pendulum32 step 1.06x faster on 2 CPU cores)
        opt = torch.optim.AdamW(params, lr=self.hparams.lr, weight_decay=self.hparams.weight_decay, fused=True)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        stages = self.stages
        if stages and stages[-1].start + stages[-1].steps != total:
            raise ValueError(f"the stages add up to {stages[-1].start + stages[-1].steps} steps but the run has "
                             f"{total}: set --trainer.max_steps to their total")
        h = self.hparams
        stages = stages or [Stage(0, total, h.prediction, h.focus_weight, h.lr, h.warmup_steps)]
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: lr_at(stages, step) / h.lr if h.lr else 0.0)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}


def _structure(graph: CausalGraph) -> dict:
    """The graph's nodes, kinds and parents without the inference-only ``local`` flag (weights do not depend on it)."""
    return {n: {k: v for k, v in d.items() if k != "local"} for n, d in graph.to_dict().items()}
