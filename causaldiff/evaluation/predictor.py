"""Anti-causal predictors (pseudo-oracles): a CNN that predicts every label from an image, trained with Lightning.

Used to measure effectiveness (does cf_x show the counterfactual labels?) and, through its penultimate features,
a Fréchet distance for realism (no downloaded Inception weights).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import Tensor, nn
from torch.nn import functional as F

from causaldiff.checkpoint import load_checkpoint
from causaldiff.graph import CausalGraph
from causaldiff.hparams import kwargs_for
from causaldiff.io import atomic_write_bytes
from causaldiff.models.alignment import read_labels
from causaldiff.models.encoder import _groups


class AntiCausalPredictor(nn.Module):
    """x (B, C, H, W) → {node: (B,) value} (continuous, raw units) or (B, K) logits (discrete)."""

    def __init__(self, graph: dict, label_stats: dict | None = None, channels: int = 3,
                 widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        self.graph = CausalGraph.from_dict(graph)
        stats = label_stats or {}
        self.register_buffer("loc", torch.tensor([stats.get(n, [0.0, 1.0])[0] for n in self.graph.order]))
        self.register_buffer("scale", torch.tensor([stats.get(n, [0.0, 1.0])[1] for n in self.graph.order]))
        layers, c_in = [], channels
        for w in widths:
            layers += [nn.Conv2d(c_in, w, 3, padding=1), nn.GroupNorm(_groups(w), w), nn.SiLU(),
                       nn.Conv2d(w, w, 3, stride=2, padding=1), nn.GroupNorm(_groups(w), w), nn.SiLU()]
            c_in = w
        self.body = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.heads = nn.ModuleList(nn.Linear(c_in, self.graph[n].cardinality) for n in self.graph.order)

    def check_graph(self, graph: CausalGraph) -> None:
        """Refuse a predictor trained on another graph than the model's (its readings would be meaningless)."""
        if self.graph.order != graph.order:
            raise ValueError(f"predictor graph {self.graph.order} does not match the model's {graph.order}")

    def features(self, x: Tensor) -> Tensor:
        """(B, widths[-1]) penultimate features (the space of the Fréchet distance)."""
        return self.body(x)

    def raw(self, x: Tensor) -> list[Tensor]:
        h = self.features(x)
        return [head(h) for head in self.heads]

    @torch.no_grad()
    def predict(self, x: Tensor) -> dict[str, Tensor]:
        """Predicted labels in raw units (continuous) or class indices (discrete), each (B,)."""
        return read_labels(self.graph, self.raw(x), self.loc, self.scale)

    def loss(self, x: Tensor, labels: dict[str, Tensor], mask: dict[str, Tensor],
             raw: list[Tensor] | None = None, class_weights: dict[str, Tensor] | None = None) -> dict[str, Tensor]:
        """Per-node losses (cross-entropy, weighted per class by ``class_weights`` {node: (K,)} where given, or
        squared error of the standardised value) and their sum ``loss``; ``raw``: ``self.raw(x)`` when already
        computed."""
        terms, class_weights = {}, class_weights or {}
        for i, (name, h) in enumerate(zip(self.graph.order, self.raw(x) if raw is None else raw)):
            m = mask[name].float()
            if self.graph[name].discrete:
                per = F.cross_entropy(h, labels[name].long().clamp(0, h.shape[1] - 1), class_weights.get(name),
                                      reduction="none")
            else:
                per = (h[:, 0] - (labels[name].float() - self.loc[i]) / self.scale[i]) ** 2
            terms[name] = (per * m).sum() / m.sum().clamp_min(1)
        terms["loss"] = sum(terms.values())
        return terms

    @torch.no_grad()
    def reading(self, x: Tensor, labels: dict[str, Tensor], batch: int = 256) -> dict[str, float | None]:
        """How well it reads held-out labels (x (N, C, H, W), labels {node: (N,)}, NaN = unknown), per node: balanced
        accuracy (the mean recall of the classes present) for a discrete node, R² for a continuous one; None with
        fewer than two known labels or classes. Read ``batch`` images at a time."""
        device = self.loc.device
        reads = [self.predict(chunk.to(device)) for chunk in x.split(batch)]
        pred = {name: torch.cat([r[name] for r in reads]).cpu() for name in self.graph.order}
        out = {}
        for name in self.graph.order:
            known = labels[name].isfinite()
            y, p = labels[name][known].float(), pred[name][known].float()
            classes = y.unique()
            if known.sum() < 2 or (self.graph[name].discrete and len(classes) < 2):
                out[name] = None
            elif self.graph[name].discrete:
                out[name] = float(torch.stack([(p[y == c] == c).float().mean() for c in classes]).mean())
            else:
                out[name] = float(1 - ((p - y) ** 2).mean() / y.var(unbiased=False).clamp_min(1e-12))
        return out

    @classmethod
    def from_checkpoint(cls, path: str | Path, map_location="cpu") -> AntiCausalPredictor:
        ckpt = load_checkpoint(path, map_location)
        hp = ckpt.get("hyper_parameters", {})
        if "graph" not in hp or "predictor_widths" not in hp:
            raise ValueError(f"{path} is not a predictor checkpoint (use `causaldiff fit-predictor`)")
        model = cls(**kwargs_for(cls, hp), widths=tuple(hp["predictor_widths"]))
        sd = {k[len("predictor."):]: v for k, v in ckpt["state_dict"].items() if k.startswith("predictor.")}
        model.load_state_dict(sd)
        return model.eval()


def export_predictor(src: str | Path, dst: str | Path) -> Path:
    """Write an inference-only predictor checkpoint (weights and hyper-parameters, no optimiser state)."""
    ckpt = load_checkpoint(src)
    out = {"state_dict": {k: v for k, v in ckpt["state_dict"].items() if k.startswith("predictor.")},
           "hyper_parameters": dict(ckpt.get("hyper_parameters", {}))}
    buf = io.BytesIO()
    torch.save(out, buf)
    return atomic_write_bytes(dst, buf.getvalue())


class PredictorModule(pl.LightningModule):
    """Trains an :class:`AntiCausalPredictor` (graph, label_stats and channels are linked from the data)."""

    def __init__(self, graph: dict, label_stats: dict | None = None, channels: int = 3,
                 predictor_widths: tuple[int, ...] = (32, 64, 128), lr: float = 1e-3, weight_decay: float = 1e-4,
                 augment_noise: float = 0.05, twin_weight: float = 1.0):
        super().__init__()
        self.save_hyperparameters()
        self.predictor = AntiCausalPredictor(graph, label_stats, channels, tuple(predictor_widths))
        self.class_weights: dict[str, Tensor] = {}

    def setup(self, stage: str) -> None:
        """Class weights of each discrete node from the training labels, N / (K n_k) ("balanced", as scikit-learn's):
        a class of 5 % weighs as much as the rest together, so that a rare finding is read at all (unweighted, the
        predictor of a folder with 5 % lesions read none)."""
        dm = self.trainer.datamodule if self._trainer is not None else None
        if stage != "fit" or not hasattr(dm, "train_labels"):
            return
        labels, graph = dm.train_labels(), self.predictor.graph
        for name in graph.order:
            if graph[name].discrete:
                y = labels[name][labels[name].isfinite()].long()
                counts = torch.bincount(y.clamp(0, graph[name].cardinality - 1), minlength=graph[name].cardinality)
                self.class_weights[name] = (len(y) / (len(counts) * counts.clamp_min(1).float())).to(self.device)

    def _step(self, batch: dict, stage: str) -> Tensor:
        x = batch["x"]
        if stage == "train" and self.hparams.augment_noise > 0:  # robustness to generator artefacts
            x = x + self.hparams.augment_noise * torch.randn_like(x)
        raw = self.predictor.raw(x)
        terms = self.predictor.loss(x, batch["labels"], batch["mask"], raw, self._weights(x))
        if "twin" in batch:  # data with twins=node: learn the twins too, and keep the other readings still
            terms = self._with_twins(raw, batch, terms, stage)
        self.log_dict({f"{stage}/{k}": v for k, v in terms.items()}, batch_size=x.shape[0], prog_bar=stage == "val")
        return terms["loss"]

    def _with_twins(self, raw: list[Tensor], batch: dict, terms: dict, stage: str) -> dict:
        """Both images' label losses, averaged, plus ``twin_weight`` × the mean squared difference of the raw readings
        of every node the flip leaves alone (counterfactual invariance: Veitch et al., NeurIPS 2021)."""
        twin = batch["twin"]
        x_twin = twin["x"]
        if stage == "train" and self.hparams.augment_noise > 0:
            x_twin = x_twin + self.hparams.augment_noise * torch.randn_like(x_twin)
        raw_twin = self.predictor.raw(x_twin)
        other = self.predictor.loss(x_twin, twin["labels"], batch["mask"], raw_twin, self._weights(x_twin))
        kept = [i for i, n in enumerate(self.predictor.graph.order)
                if torch.equal(twin["labels"][n], batch["labels"][n])]
        invariance = sum(F.mse_loss(raw[i], raw_twin[i]) for i in kept) / max(1, len(kept))
        out = {k: (terms[k] + other[k]) / 2 for k in terms}
        out["invariance"] = invariance
        out["loss"] = out["loss"] + self.hparams.twin_weight * invariance
        return out

    def _weights(self, x: Tensor) -> dict[str, Tensor]:
        return {k: w.to(x.device) for k, w in self.class_weights.items()}

    def training_step(self, batch, batch_idx):
        return self._step(batch, "train")

    def validation_step(self, batch, batch_idx):
        self._step(batch, "val")

    def test_step(self, batch, batch_idx):
        self._step(batch, "test")

    def configure_optimizers(self):
        opt = torch.optim.AdamW(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = max(1, int(self.trainer.estimated_stepping_batches))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": torch.optim.lr_scheduler.CosineAnnealingLR(opt, total),
                                                   "interval": "step"}}
