"""Pieces the inference commands share: their flags (from :class:`CounterfactualConfig`), the checkpoint read once
into a config and a pipeline, inputs, predictor."""

from __future__ import annotations

import argparse

from causaldiff.inference.config import CounterfactualConfig


def add_inference_args(p: argparse.ArgumentParser, batch_size: int = 32) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="trained checkpoint (.ckpt, loaded weights_only) or a shipped model name (causaldiff models)")
    p.add_argument("--input", help="folder of images + labels.csv (default: the checkpoint's own test split)")
    CounterfactualConfig.add_arguments(p, batch_size)


def load(args: argparse.Namespace):
    """(checkpoint dict, config, pipeline) for the flags of :func:`add_inference_args`: the checkpoint is read once;
    a setting not given takes its recommendation, else the default."""
    from causaldiff.checkpoint import load_checkpoint, recommended_settings
    from causaldiff.inference.pipeline import CounterfactualPipeline

    ckpt = load_checkpoint(args.checkpoint)
    config = CounterfactualConfig.from_args(args, recommended_settings(ckpt))
    return ckpt, config, CounterfactualPipeline.from_checkpoint(ckpt, config)


def inputs(args: argparse.Namespace, ckpt: dict, pipe, n: int | None):
    """``--input`` folder, or the checkpoint's own test split (the first ``n`` images; all with None)."""
    from causaldiff.inference.inputs import checkpoint_inputs, folder_inputs

    m = pipe.model
    if args.input:
        return folder_inputs(args.input, m.graph, m.image_size, m.channels, n)
    return checkpoint_inputs(ckpt, n)


def predictor(path: str, pipe):
    """An anti-causal predictor checkpoint whose graph must be the model's."""
    from causaldiff.evaluation.predictor import AntiCausalPredictor

    found = AntiCausalPredictor.from_checkpoint(path)
    found.check_graph(pipe.graph)
    return found


def floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None
