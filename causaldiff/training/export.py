"""Export a training checkpoint for inference: EMA weights and configs only, loadable with ``weights_only=True``."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from causaldiff.checkpoint import check_recommendable, load_checkpoint, model_state
from causaldiff.hparams import kwargs_for
from causaldiff.io import atomic_write_bytes
from causaldiff.models.causal_diffae import CausalDiffAE


def export_checkpoint(src: str | Path, dst: str | Path, inference: dict | None = None) -> Path:
    """Write an inference-only checkpoint: EMA weights, model config and data config (weights_only-loadable).

    ``inference``: the pipeline switches this model is recommended with (measured, e.g. brain32's
    ``{"inversion": "residual", "findings": "transplant", "guide_against": "masked", "depth": 0.75}``); every inference
    command and ``CounterfactualPipeline.from_checkpoint`` use them unless told otherwise.
    """
    inference = check_recommendable(inference or {})
    ckpt = load_checkpoint(src)
    hp = ckpt.get("hyper_parameters", {})
    out = {"state_dict": model_state(ckpt, src, ema=True), "hyper_parameters": kwargs_for(CausalDiffAE, hp),
           "datamodule_hyper_parameters": {k: v for k, v in ckpt.get("datamodule_hyper_parameters", {}).items()
                                           if not k.startswith("_")},
           "global_step": ckpt.get("global_step"), **({"inference": inference} if inference else {})}
    buf = io.BytesIO()
    torch.save(out, buf)
    return atomic_write_bytes(dst, buf.getvalue())
