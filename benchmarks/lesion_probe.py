"""What does the brain model's latent know about a lesion it sees? Linear probes (fit on half of 600 lesion images,
R² on the other half) from the lesion block's deviation ``z_lesion - g(1)``, from the style code s and from all of z,
to the world's exogenous lesion site: its distance from the brain's centre and the cosine of its angle. A deviation
that predicts neither cannot make a drawn lesion's site vary (the exogenous bank samples deviations).

The **ceiling** column is what the encoder's architecture can carry: a fresh ``CausalEncoder`` body (global average
pooling included) trained with the site as its target on other lesion images (``--ceiling-steps``), scored on the
same held-out half. A ceiling near 1 beside a probe near 0 says the training signal, not the architecture, leaves
the site out of the latent.

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
from causaldiff.models.encoder import CausalEncoder
from causaldiff.pixels import to_unit


def probe_r2(features: torch.Tensor, target: torch.Tensor) -> float:
    """R² on the second half of a least-squares fit (with intercept) on the first half."""
    x = torch.cat([features, torch.ones(len(features), 1)], 1).double()
    y, n = target.double(), len(target) // 2
    beta = torch.linalg.lstsq(x[:n], y[:n, None]).solution
    pred = (x[n:] @ beta)[:, 0]
    return (1 - ((pred - y[n:]) ** 2).mean() / y[n:].var()).item()


SITE = ("lesion site: distance from centre", "lesion site: cos angle")


def lesion_images(world, n: int, seed: int) -> tuple[torch.Tensor, dict, torch.Tensor]:
    """Up to n lesion images (n, C, H, W) in [-1, 1], their labels and their site (n, 2), in SITE's order."""
    exo, labels = world.sample(n * 25, seed=seed)  # about 4.4 % of the world's images hold a lesion
    pos = torch.nonzero(labels["lesion"] == 1).flatten()[:n]
    exo, labels = {k: v[pos] for k, v in exo.items()}, {k: v[pos] for k, v in labels.items()}
    site = torch.stack([exo["lesion_r"], torch.cos(exo["lesion_a"])], 1)
    return to_unit(world.render(exo, labels)), labels, site


def ceiling_r2(world, x_test: torch.Tensor, y_test: torch.Tensor, steps: int) -> list[float]:
    """Held-out R² per target of the encoder architecture trained (supervised) to regress the site."""
    torch.manual_seed(0)
    x, _, y = lesion_images(world, 2000, seed=3)
    mean, std = y.mean(0), y.std(0)
    encoder = CausalEncoder(x.shape[1], 1)
    net = torch.nn.Sequential(encoder.body, torch.nn.Linear(encoder.head.in_features, 2))
    opt = torch.optim.AdamW(net.parameters(), 1e-3)
    for _ in range(steps):
        i = torch.randint(0, len(x), (64,))
        loss = (net(x[i]) - (y[i] - mean) / std).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        pred = net(x_test) * std + mean
    return (1 - (pred - y_test).pow(2).mean(0) / y_test.var(0)).tolist()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default="brain32")
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--ceiling-steps", type=int, default=1500, help="0 skips the supervised ceiling")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lesion_probe.json"))
    args = ap.parse_args()
    model = CausalDiffAE.from_checkpoint(args.checkpoint)
    world = get_world("brain", model.image_size)
    x, labels, site = lesion_images(world, args.n, seed=11)
    with torch.no_grad():
        mu_u, _, s, _ = model.encode(x)
        z = model.mechanisms(mu_u)
        deviation = model.deviations(z, labels)[:, model.graph.index("lesion")]
    feats = {"lesion deviation": deviation, "style s": s, "all of z": z.flatten(1)}
    rows = {t: {f: round(probe_r2(v, site[:, i]), 3) for f, v in feats.items()} for i, t in enumerate(SITE)}
    if args.ceiling_steps:
        half = len(x) // 2
        for r, c in zip(rows.values(), ceiling_r2(world, x[half:], site[half:], args.ceiling_steps)):
            r["ceiling: encoder trained on the site"] = round(c, 3)
    cols = list(rows[SITE[0]])
    lines = ["| R² on the held-out half | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    lines += [f"| {t} | " + " | ".join(f"{r[c]:.3f}" for c in cols) + " |" for t, r in rows.items()]
    print("\n".join(lines))
    atomic_write_text(args.out, json.dumps({"checkpoint": args.checkpoint, "n": len(x), "r2": rows}, indent=2))


if __name__ == "__main__":
    main()
