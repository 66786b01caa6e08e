"""Is a reference predictor fit to measure a switched node's counterfactuals? For a binary node of a world (brain:
the lesion), every test image is rendered twice from the same exogenous noise, with the node off and on (the world's
true counterfactual pair). Reported per predictor: sensitivity and specificity on the pair, and for every other node
the mean |reading − label| with the node off and on and the mean |shift| of the reading between the two. A fit
predictor reads the node in both states and keeps its other readings still: a shift is the predictor's own bias,
and it would be charged to any counterfactual generator measured with it.

Run: ``python benchmarks/predictor_check.py --predictors OLD.ckpt NEW.ckpt [--names old new] [--world brain --node
lesion]``; prints a table and writes benchmarks/results/predictor_check.json.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from causaldiff.data.worlds import get_world
from causaldiff.evaluation.predictor import AntiCausalPredictor
from causaldiff.io import atomic_write_text
from causaldiff.pixels import to_unit


def check(predictor: AntiCausalPredictor, world, node: str, n: int, seed: int) -> dict:
    """Sensitivity / specificity on true pairs and each other node's reading error (off, on) and |shift|."""
    exo, labels = world.sample(n, seed)
    (off, x_off), (on, x_on) = (world.counterfactual(exo, labels, f"{node}={v}") for v in (0, 1))
    with torch.no_grad():
        r_off, r_on = predictor.predict(to_unit(x_off)), predictor.predict(to_unit(x_on))
    out = {"sensitivity": round(r_on[node].float().mean().item(), 4),
           "specificity": round(1 - r_off[node].float().mean().item(), 4), "others": {}}
    for k in predictor.graph.order:
        if k != node:
            out["others"][k] = {"error_off": round((r_off[k].float() - off[k]).abs().mean().item(), 4),
                                "error_on": round((r_on[k].float() - on[k]).abs().mean().item(), 4),
                                "shift": round((r_on[k].float() - r_off[k].float()).abs().mean().item(), 4)}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--predictors", nargs="+", required=True)
    ap.add_argument("--names", nargs="*", help="a row name per predictor (default: its path)")
    ap.add_argument("--world", default="brain")
    ap.add_argument("--node", default="lesion")
    ap.add_argument("--size", type=int, default=32, help="image side the predictors read")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--seed", type=int, default=777)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "predictor_check.json"))
    args = ap.parse_args()
    world = get_world(args.world, args.size)
    if args.names and len(args.names) != len(args.predictors):
        raise SystemExit(f"error: {len(args.names)} --names for {len(args.predictors)} --predictors")
    rows = {name: check(AntiCausalPredictor.from_checkpoint(p), world, args.node, args.n, args.seed)
            for name, p in zip(args.names or args.predictors, args.predictors)}
    atomic_write_text(args.out, json.dumps({"meta": vars(args), "rows": rows}, indent=2))
    others = next(iter(rows.values()))["others"]
    print(f"| predictor | sensitivity | specificity | {' | '.join(f'{k}: error off / on, shift' for k in others)} |")
    print("|---|---|---|" + "---|" * len(others))
    for p, r in rows.items():
        cells = [f"{v['error_off']:.3g} / {v['error_on']:.3g}, {v['shift']:.3g}" for v in r["others"].values()]
        print(f"| {p} | {r['sensitivity']:.3f} | {r['specificity']:.3f} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
