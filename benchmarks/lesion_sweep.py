"""Lesions by guidance weight: drawn, removed, and what else moves. Brain world test images, 50 DDIM steps.

For n lesion-free images, do(lesion=1) under each transplant guidance weight w; for n lesion images, do(lesion=0) at the
configuration's guidance (what a user gets; default 1). Read by the anti-causal predictor: the share read as lesion
(``drawn``) / lesion-free (``removed``); how far the other nodes' readings move from the reconstruction's
(``other_change``) beside the reconstruction's own error (``recon_error``, the noise floor) and beside the true
counterfactuals' (row ``truth``: the predictor's other readings move for a lesion alone; row ``removal``: the same for
do(lesion=0), beside the truth's ``removal_other_change``); the mean distance in pixels
between the brightest change of two seeds (``seed_site_px``: do seeds give other sites?); where the brightest change
lies, as a fraction of the brain's radius (``site_radius``, and ``central_share`` below 0.45: the world draws sites
uniformly in 0.35-0.75, so a quarter of real lesions are central, over the ventricles); the L1 to the reconstruction
(0-255).

Run: ``python benchmarks/lesion_sweep.py --checkpoint brain32 --weights 3 --out benchmarks/results/lesions/x.json`` (the
checkpoint's recommended settings; the counterfactual flags change them). ``--option lesion_scale=2`` draws the test
images from the brain world with lesions twice as wide (give a model and ``--predictor`` trained on it). A switched-on
lesion is transplanted from the checkpoint's site bank, each weight then the transplant's
(``TransplantSettings.guidance``); ``--variant decoded-findings`` decodes it from the latent instead, at guidance w;
``--site-gain``, ``--site-disk`` (in the finding's HWHMs) and ``--site-at`` override the transplant's gain, disk and
timestep (see causaldiff.inference.sites).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import torch
from common import add_config_args, commit, config_for, rerun_command, site_banks  # benchmarks/common.py

from causaldiff.data.worlds import get_world
from causaldiff.evaluation.predictor import AntiCausalPredictor
from causaldiff.evaluation.variants import VARIANTS
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.io import atomic_write_text
from causaldiff.pixels import to_unit

OTHERS = ("age", "brain_volume", "ventricle_volume")


def site_radius(site, brain_volume, size=32):
    """(B,) distance of pixel sites (B, 2) from the image centre over the brain's radius (the world's r_brain)."""
    r_brain = 0.62 * (brain_volume / 1200).clamp_min(0.05).sqrt() * size / 2
    return (site + 0.5 - size / 2).norm(dim=1) / r_brain


def sites(radius) -> dict:
    """Mean site radius and the share of central sites (below 0.45 of the brain's radius) of radii (B,)."""
    central = (radius < 0.45).float().mean().item()
    return {"site_radius": round(radius.mean().item(), 3), "central_share": round(central, 3)}


@torch.no_grad()
def truth_row(world, predictor, exo, labels, n) -> dict:
    """The true do(lesion=1) counterfactuals of the first n lesion-free images, measured as the sweep's rows are:
    ``other_change`` against the sources is how far the predictor's other readings move for a lesion alone."""
    neg = torch.nonzero(labels["lesion"] == 0).flatten()[:n]
    exo_n, lab_n = {k: v[neg] for k, v in exo.items()}, {k: v[neg] for k, v in labels.items()}
    src = to_unit(world.render(exo_n, lab_n))
    cf = to_unit(world.render(exo_n, {**lab_n, "lesion": torch.ones(len(neg))}))
    read, read_src = predictor.predict(cf), predictor.predict(src)
    radius = site_radius(brightest(cf, src), lab_n["brain_volume"])
    pos = torch.nonzero(labels["lesion"] == 1).flatten()[:n]
    exo_p, lab_p = {k: v[pos] for k, v in exo.items()}, {k: v[pos] for k, v in labels.items()}
    removed = predictor.predict(to_unit(world.render(exo_p, {**lab_p, "lesion": torch.zeros(len(pos))})))
    read_pos = predictor.predict(to_unit(world.render(exo_p, lab_p)))
    return {"drawn": round((read["lesion"] == 1).float().mean().item(), 4),
            "removed": round((removed["lesion"] == 0).float().mean().item(), 4),
            "other_change": {k: round((read[k] - read_src[k]).abs().mean().item(), 3) for k in OTHERS},
            "removal_other_change": {k: round((removed[k] - read_pos[k]).abs().mean().item(), 3) for k in OTHERS},
            **sites(radius), "l1_cf_vs_recon": round(((cf - src).abs() * 127.5).mean().item(), 2)}


def brightest(cf, ref):
    """(B, 2) row and column of the largest brightening of cf over ref."""
    i = (cf - ref)[:, 0].flatten(1).argmax(1)
    return torch.stack([i // cf.shape[-1], i % cf.shape[-1]], 1).float()


@torch.no_grad()
def sweep(pipe, predictor, x, labels, n, weights, guidance, steps) -> dict:
    pos = torch.nonzero(labels["lesion"] == 1).flatten()[:n]
    neg = torch.nonzero(labels["lesion"] == 0).flatten()[:n]
    a = pipe.abduct(x[neg], {k: v[neg] for k, v in labels.items()}, steps)
    b = pipe.abduct(x[pos], {k: v[pos] for k, v in labels.items()}, steps)
    rec = pipe.predict(a.noise, a.z, a.s, steps, z=a.z, trace=a.trace)
    read_rec = predictor.predict(rec)
    is_lesion = lambda img: (predictor.predict(img)["lesion"] == 1).float().mean().item()  # noqa: E731
    removed = pipe.counterfactuals(b, ["lesion=0"], steps, guidance, torch.Generator().manual_seed(0))[0].cf_x
    read_rec_b, read_removed = predictor.predict(pipe.predict(b.noise, b.z, b.s, steps, z=b.z, trace=b.trace)), \
        predictor.predict(removed)
    out = {"removal": {
        "removed": round((read_removed["lesion"] == 0).float().mean().item(), 4),
        "other_change": {k: round((read_removed[k] - read_rec_b[k]).abs().mean().item(), 3) for k in OTHERS},
        "recon_error": {k: round((read_rec_b[k] - labels[k][pos]).abs().mean().item(), 3) for k in OTHERS}}}
    for w in weights:
        pipe.transplant = dataclasses.replace(pipe.transplant, guidance=w)  # unused when findings are decoded
        cfs = [pipe.counterfactuals(a, ["lesion=1"], steps, w, torch.Generator().manual_seed(s))[0].cf_x
               for s in (0, 1)]
        read = predictor.predict(cfs[0])
        site = brightest(cfs[0], rec)
        radius = site_radius(site, labels["brain_volume"][neg])
        out[f"w={w:g}"] = {
            "drawn": round(is_lesion(cfs[0]), 4), "removed": round(1 - is_lesion(removed), 4),
            "other_change": {k: round((read[k] - read_rec[k]).abs().mean().item(), 3) for k in OTHERS},
            "recon_error": {k: round((read_rec[k] - labels[k][neg]).abs().mean().item(), 3) for k in OTHERS},
            "seed_site_px": round((site - brightest(cfs[1], rec)).norm(dim=1).mean().item(), 2),
            **sites(radius), "l1_cf_vs_recon": round(((cfs[0] - rec).abs() * 127.5).mean().item(), 2)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", default="brain32")
    ap.add_argument("--predictor", default=str(Path(__file__).parent / "predictors" / "brain32.ckpt"))
    add_config_args(ap)
    ap.add_argument("--variant", default="causaldiff", choices=list(VARIANTS), help="an evaluation variant")
    ap.add_argument("--site-gain", type=float, help="the transplanted patch over the banked one")
    ap.add_argument("--site-disk", type=float, help="guidance disk radius (in the finding's HWHMs)")
    ap.add_argument("--option", action="append", default=[], metavar="KEY=NUMBER",
                    help="a brain world variant, e.g. lesion_scale=2")
    ap.add_argument("--site-at", type=float, help="the transplant's timestep, a fraction of the training timesteps")
    ap.add_argument("--weights", nargs="*", type=float, default=[1.0, 2.0, 3.0, 4.0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps (50: the default of every command)")
    ap.add_argument("--out", required=True, help="JSON file to write")
    args = ap.parse_args()
    options = {k: float(v) for k, v in (pair.split("=", 1) for pair in args.option)}
    world = get_world("brain", 32, **options)
    exo, labels = world.sample(4000, 777)
    x = to_unit(world.render(exo, labels))
    predictor = AntiCausalPredictor.from_checkpoint(args.predictor)
    res = {"truth": truth_row(world, predictor, exo, labels, args.n)}
    print(f"truth: {res['truth']}", flush=True)
    config = config_for(args.checkpoint, args, steps=args.steps)
    pipe = CounterfactualPipeline.from_checkpoint(args.checkpoint, config, **VARIANTS[args.variant])
    pipe.site_banks = site_banks(args.checkpoint, config)
    changes = {k: v for k, v in (("gain", args.site_gain), ("disk", args.site_disk), ("at", args.site_at))
               if v is not None}
    pipe.transplant = dataclasses.replace(pipe.transplant, **changes)
    for key, row in sweep(pipe, predictor, x, labels, args.n, args.weights, config.guidance, args.steps).items():
        res[key] = row
        print(f"{key}: {row}", flush=True)
    atomic_write_text(Path(args.out), json.dumps({
        "command": rerun_command(), "commit": commit(), "checkpoint": args.checkpoint, "n": args.n,
        "steps": args.steps, "world": options,
        "finding_hwhm": {k: round(b.hwhm, 3) for k, b in pipe.site_banks.items()},
        "config": config.asdict(), "variant": args.variant, "transplant": dataclasses.asdict(pipe.transplant),
        "rows": res}, indent=1))


if __name__ == "__main__":
    main()
