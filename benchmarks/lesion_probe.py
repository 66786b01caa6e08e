"""What does the brain model's latent know about a lesion it sees? Linear probes (fit on half of 600 lesion images,
R² on the other half) from the lesion block's deviation ``z_lesion - g(1)``, from the style code s and from all of z,
to the world's exogenous lesion radius and site (cosine of its angle). A deviation that predicts neither cannot make
a drawn lesion's size or site vary (the exogenous bank samples deviations).

Run: ``python benchmarks/lesion_probe.py [--checkpoint brain32]``; prints a table and writes
benchmarks/results/lesion_probe.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from causaldiff.data.worlds import get_world
from causaldiff.io import atomic_write_text
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.pixels import to_unit


def probe_r2(features: torch.Tensor, target: torch.Tensor) -> float:
    """R² on the second half of a least-squares fit (with intercept) on the first half."""
    x = torch.cat([features, torch.ones(len(features), 1)], 1).double()
    y, n = target.double(), len(target) // 2
    beta = torch.linalg.lstsq(x[:n], y[:n, None]).solution
    pred = (x[n:] @ beta)[:, 0]
    return (1 - ((pred - y[n:]) ** 2).mean() / y[n:].var()).item()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default="brain32")
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lesion_probe.json"))
    args = ap.parse_args()
    model = CausalDiffAE.from_checkpoint(args.checkpoint)
    world = get_world("brain", model.image_size)
    exo, labels = world.sample(args.n * 12, seed=11)
    pos = torch.nonzero(labels["lesion"] == 1).flatten()[:args.n]
    exo, labels = {k: v[pos] for k, v in exo.items()}, {k: v[pos] for k, v in labels.items()}
    with torch.no_grad():
        mu_u, _, s, _ = model.encode(to_unit(world.render(exo, labels)))
        z = model.mechanisms(mu_u)
        deviation = model.deviations(z, labels)[:, model.graph.index("lesion")]
    targets = {"lesion radius": exo["lesion_r"], "lesion site (cos angle)": torch.cos(exo["lesion_a"])}
    feats = {"lesion deviation": deviation, "style s": s, "all of z": z.flatten(1)}
    rows = {t: {f: round(probe_r2(v, y), 3) for f, v in feats.items()} for t, y in targets.items()}
    lines = ["| R² of a linear probe | " + " | ".join(feats) + " |", "|---" * (len(feats) + 1) + "|"]
    lines += [f"| {t} | " + " | ".join(f"{r[f]:.3f}" for f in feats) + " |" for t, r in rows.items()]
    print("\n".join(lines))
    atomic_write_text(args.out, json.dumps({"checkpoint": args.checkpoint, "n": len(pos), "r2": rows}, indent=2))


if __name__ == "__main__":
    main()
