"""A site bank read off segmentations, against the truth: for each world with local findings, the patch
:func:`~causaldiff.inference.sites.masked_sites` banks from an image and its ``<node>_mask`` (as ``data make`` writes
it) beside the finding's true change (the image minus its twin without the finding), at the same site. No model.

Per world and node (64 images with the finding): the banked change's mass (sum |patch|) over the true change's, the
L1 error of the patch over the true change's mass (0 = the finding exactly), and the HWHM of the banked and the true
patches (the window's half side where the true change has no peak at the banked site: a swelling runs along its
stroke). Row ``grown`` is the bank's (the mask grown by one pixel, then filled); row ``mask`` fills the mask alone.

    python benchmarks/site_bank_truth.py [--n 64] [--out benchmarks/results/lesions/site_bank_truth.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from causaldiff.data.datamodule import FOCUS_LEVELS
from causaldiff.data.worlds import get_world
from causaldiff.inference.sites import change_peaks, finding_hwhm, harmonic_fill, masked_sites, patches_at
from causaldiff.io import atomic_write_text
from causaldiff.pixels import to_unit

WORLDS = ("brain", "strokes")


def compare(world_name: str, node: str, n: int, size: int = 32, seed: int = 1) -> dict:
    """Rows ``grown`` (masked_sites) and ``mask`` for ``n`` images of the world that show ``node``'s finding."""
    world = get_world(world_name, size)
    exo, labels = world.sample(40 * n, seed)
    show = torch.nonzero(labels[node] == 1).flatten()[:n]
    exo, labels = {k: v[show] for k, v in exo.items()}, {k: v[show] for k, v in labels.items()}
    images = world.render(exo, labels)
    _, without = world.counterfactual(exo, labels, f"{node}=0")
    mask = (images.int() - without.int()).abs().amax(1, keepdim=True) > FOCUS_LEVELS  # data make's <node>_mask
    x, true_change = to_unit(images), to_unit(images) - to_unit(without)
    true_mass = true_change.abs().sum((1, 2, 3))
    side = 2 * (size // 4) + 1  # the window fit_site_banks reads in
    rows = {"grown": masked_sites(x, mask.float(), side)}
    alone = harmonic_fill(x, mask)
    where = change_peaks(x, alone)
    rows["mask"] = (where, patches_at(x - alone, where, side))
    out = {}
    for name, (where, patches) in rows.items():
        truth = patches_at(true_change, where, side)
        out[name] = {"mass_over_true": round(float((patches.abs().sum((1, 2, 3)) / true_mass).median()), 3),
                     "error_over_true": round(float(((patches - truth).abs().sum((1, 2, 3)) / true_mass).median()), 3),
                     "hwhm": round(finding_hwhm(patches), 3), "true_hwhm": round(finding_hwhm(truth), 3)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "lesions" / "site_bank_truth.json"))
    args = ap.parse_args()
    result = {"about": "masked_sites' banked patch ('grown': the mask grown by one pixel, filled by Laplace's "
                       "equation) and the mask alone filled ('mask') against the true change (image minus its twin "
                       "without the finding), medians over images",
              "n": args.n, "rows": {}}
    print(f"{'world':8s} {'node':9s} {'fill':6s} {'mass/true':>9s} {'error/true':>10s} {'hwhm':>5s} {'true':>5s}")
    for world_name in WORLDS:
        graph = get_world(world_name, 32).graph
        for node in [k for k in graph.order if graph[k].local]:
            rows = compare(world_name, node, args.n)
            result["rows"][f"{world_name}/{node}"] = rows
            for name, r in rows.items():
                print(f"{world_name:8s} {node:9s} {name:6s} {r['mass_over_true']:9.2f} {r['error_over_true']:10.2f} "
                      f"{r['hwhm']:5.2f} {r['true_hwhm']:5.2f}")
    atomic_write_text(Path(args.out), json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
