"""Export a training checkpoint for inference: EMA weights, configs, recommended settings and site banks, loadable
with ``weights_only=True``."""

from __future__ import annotations

import io
from pathlib import Path

import torch

from causaldiff.checkpoint import load_checkpoint, model_state, recommended_settings
from causaldiff.hparams import kwargs_for
from causaldiff.inference.config import CounterfactualConfig, check_recommendation
from causaldiff.io import atomic_write_bytes
from causaldiff.models.causal_diffae import CausalDiffAE


def export_checkpoint(src: str | Path, dst: str | Path, inference: dict | None = None,
                      site_images: tuple | None = None) -> Path:
    """Write an inference-only checkpoint: EMA weights, model config and data config (weights_only-loadable).

    ``inference``: the :class:`CounterfactualConfig` fields this model is recommended with (measured, e.g. brain32's
    ``{"inversion": "residual", "keep_unchanged": True, "depth": 0.75}``; default: the ones ``src`` holds, which the
    fit's quality report chose); every inference command and ``CounterfactualPipeline.from_checkpoint`` use them
    unless told otherwise.
    ``site_images``: images (N, C, H, W), labels and optionally masks (as :func:`training_images` returns them) to fit
    the site banks of the graph's local nodes from (:func:`~causaldiff.inference.sites.fit_site_banks`), under
    those settings (default: the checkpoint's own first training images when the graph has a local node).
    """
    from causaldiff.inference.inputs import training_images
    from causaldiff.inference.pipeline import CounterfactualPipeline
    from causaldiff.inference.sites import fit_site_banks

    ckpt = load_checkpoint(src)
    inference = check_recommendation(recommended_settings(ckpt) if inference is None else inference)
    hp = ckpt.get("hyper_parameters", {})
    out = {"state_dict": model_state(ckpt, src, ema=True), "hyper_parameters": kwargs_for(CausalDiffAE, hp),
           "datamodule_hyper_parameters": {k: v for k, v in ckpt.get("datamodule_hyper_parameters", {}).items()
                                           if not k.startswith("_")},
           "global_step": ckpt.get("global_step"), **({"inference": inference} if inference else {})}
    # float32: a checkpoint's banks do not depend on the machine that exported it
    config = CounterfactualConfig.resolved(inference, device="cpu", precision="float32")
    pipe = CounterfactualPipeline.from_checkpoint(out, config)
    if any(node.local for node in pipe.graph.nodes.values()):
        banks = fit_site_banks(pipe, *(site_images or training_images(out)))
        out["site_banks"] = {node: bank.state() for node, bank in banks.items()}
    buf = io.BytesIO()
    torch.save(out, buf)
    return atomic_write_bytes(dst, buf.getvalue())
