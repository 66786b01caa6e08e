"""Pieces the inference commands share: their flags, the options object built from them, inputs, predictor."""

from __future__ import annotations

import argparse

from causaldiff.inference.pipeline import FINDINGS, GUIDE_AGAINST, INVERSIONS


def add_inference_args(p: argparse.ArgumentParser, batch_size: int = 32) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="trained checkpoint (.ckpt, loaded weights_only) or a shipped model name (causaldiff models)")
    p.add_argument("--input", help="folder of images + labels.csv (default: the checkpoint's own test split)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps for inversion and decoding (default 50)")
    p.add_argument("--guidance", type=float, default=1.0, help="guidance weight w; > 1 strengthens the change")
    p.add_argument("--guide-against", choices=GUIDE_AGAINST,
                   help="what guidance pushes away from: the factual condition (only the intervened change grows; "
                   "default), the same only where the prediction changes most (local), masked (the image changed only "
                   "where its prediction does, the rest as reconstructed, at w = 1 too), or null (the whole condition)")
    p.add_argument("--findings", choices=FINDINGS,
                   help="a node marked local: true (a lesion) that do() switches on: decode it from its latent "
                   "(default), or transplant a site and appearance drawn, seeded by --seed, from those the model's "
                   "removal found in its training images, the rest kept (other images follow --guide-against)")
    p.add_argument("--finding-guidance", type=float, help="a transplant's guidance weight in its disk (default 3)")
    p.add_argument("--exogenous", choices=["sample", "keep"], help="a class do() switches: draw what the label does "
                   "not say from the class's prior, seeded by --seed (default), or keep the abducted deviation")
    p.add_argument("--mode", choices=["shift", "replace"],
                   help="shift (default): move the latent by g(new) - g(old), keeping the individual; replace: g(new)")
    p.add_argument("--propagation", choices=["labels", "mechanisms", "none"],
                   help="how the intervened nodes' descendants follow: to their counterfactual labels from the "
                   "attribute SCM (default; measured best), through the learned latent mechanisms, or not at all")
    p.add_argument("--inversion", choices=INVERSIONS,
                   help="abduction of the decoder's noise: plain DDIM inversion (the default); fixed-point inversion "
                   "(4 network calls a step; reconstructs more closely); or residual (2 calls a step: DDIM with "
                   "per-step residuals, so what the intervention does not change comes back exactly)")
    p.add_argument("--depth", type=float, help="how far the inversion goes, as a fraction of the training timesteps "
                   "(default 1; Diff-SCM's 0.75 leaves out the steps nearest pure noise)")
    p.epilog = ("Switches not given (--guide-against, --exogenous, --mode, --propagation, --inversion, --findings, "
                "--finding-guidance, --depth) take the checkpoint's recommendation where it has one (causaldiff "
                "models lists them), else their default.")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of the random draws: label-noise abduction, exogenous codes (default 0)")
    p.add_argument("--batch-size", type=int, default=batch_size, help=f"images per batch (default {batch_size})")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def options(args: argparse.Namespace):
    """The :class:`InferenceOptions` the flags of :func:`add_inference_args` describe; a switch flag not given
    (None) takes the checkpoint's recommendation, else the default."""
    from causaldiff.inference.batch import InferenceOptions

    return InferenceOptions.for_checkpoint(args.checkpoint, **{f: getattr(args, f) for f in InferenceOptions.fields()})


def inputs(args: argparse.Namespace, pipe, n: int | None):
    """``--input`` folder, or the checkpoint's own test split (the first ``n`` images; all with None)."""
    from causaldiff.inference.inputs import checkpoint_inputs, folder_inputs

    m = pipe.model
    if args.input:
        return folder_inputs(args.input, m.graph, m.image_size, m.channels, n)
    return checkpoint_inputs(args.checkpoint, n)


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
