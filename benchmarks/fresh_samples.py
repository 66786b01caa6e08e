"""Can the decoder draw an image from Gaussian noise? A grid per checkpoint: test images, their reconstructions
(from DDIM-inverted noise), decodes of fresh N(0, I) noise under each image's own latents and under another image's
latents, and that other image. A model that only works from inverted noise draws its counterfactuals on structure
the inversion left in x_T, not from its condition.

Run: ``python benchmarks/fresh_samples.py --checkpoint pendulum32 brain32 [--n 8] [--steps 20]``; writes
benchmarks/results/fresh_samples_<name>.png.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from causaldiff.evaluation.condition_use import pair_permutation
from causaldiff.inference.inputs import checkpoint_inputs
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.viz import grid_image, save_png

RESULTS = Path(__file__).parent / "results"


def fresh_grid(checkpoint: str, n: int, steps: int, seed: int = 0, depth: float = 1.0):
    """Columns x, reconstruction, fresh noise under own z, fresh noise under B's z, B (each (n, C, H, W))."""
    pipe = CounterfactualPipeline.from_checkpoint(checkpoint)
    inp = checkpoint_inputs(checkpoint, n)
    ab = pipe.abduct(inp.x, inp.labels, steps)
    fresh = torch.randn(inp.x.shape, generator=torch.Generator().manual_seed(seed))
    perm = pair_permutation(n, seed)
    def plain(noise, z, depth=None):  # the decoder alone: no residuals, nothing kept from the input
        return pipe.decode(noise, z, ab.s, steps, 1.0, None, keep_unchanged=False, depth=depth)

    cols = [inp.x, plain(ab.noise, ab.z), plain(fresh, ab.z, depth), plain(fresh, ab.z[perm], depth), inp.x[perm]]
    return grid_image(cols, ["x", "recon", "fresh, own z", "fresh, B's z", "B"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", nargs="+", default=["pendulum32", "brain32"])
    ap.add_argument("--name", nargs="*", default=[], help="file names (default: the checkpoint arguments' stems)")
    ap.add_argument("--n", type=int, default=8)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--fresh-depth", type=float, default=1.0,
                    help="decode fresh noise from this fraction of T (1: x_T; below: a diagnostic); adds _depth<d>")
    args = ap.parse_args()
    for i, ckpt in enumerate(args.checkpoint):
        name = args.name[i] if i < len(args.name) else Path(ckpt).stem
        suffix = "" if args.fresh_depth == 1 else f"_depth{args.fresh_depth}"
        path = RESULTS / f"fresh_samples_{name}{suffix}.png"
        save_png(fresh_grid(ckpt, args.n, args.steps, depth=args.fresh_depth), path)
        print(path)


if __name__ == "__main__":
    main()
