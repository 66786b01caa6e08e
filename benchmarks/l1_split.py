"""Where a model's true-CF L1 lies: inside the true change (pixels where the world's counterfactual differs from the
input by more than 2.55 grey levels, 0.02 in [-1, 1]) or on pixels the truth leaves as they are. Same items and
interventions as ``causaldiff evaluate``; every number beside identity's (cf_x = x).

    python benchmarks/l1_split.py --checkpoint brain32 [--no-keep-unchanged] --n 128 --steps 50 --out OUT.json

Writes the JSON and prints a table (grey levels, 0-255).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from common import add_config_args, commit, config_for, rerun_command, site_banks  # benchmarks/common.py
from torch.nn import functional as F

from causaldiff.evaluation.evaluate import Evaluator, eval_data
from causaldiff.evaluation.metrics import l1_255
from causaldiff.inference.batch import counterfactuals
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.io import atomic_write_text

RESULTS = Path(__file__).parent / "results"


def split(cf: torch.Tensor, x: torch.Tensor, truth: torch.Tensor) -> dict:
    """Mean |.| (0-255) of cf - truth inside the true change M, on M's one-pixel rim and outside both; identity's."""
    inside = ((truth - x).abs() > 0.02).float()
    near = (F.max_pool2d(inside, 3, 1, 1) > 0).float()
    region = lambda a, m: l1_255(a * m, truth * m)  # noqa: E731 (mean over the whole image, zero outside m)
    return {"cf": l1_255(cf, truth), "identity": l1_255(x, truth), "cf_inside": region(cf, inside),
            "cf_rim": region(cf, near - inside), "cf_outside": region(cf, 1 - near),
            "identity_inside": region(x, inside), "share_inside": inside.mean().item()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--checkpoint", default="brain32")
    add_config_args(ap)
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--out", required=True, help="JSON file to write")
    args = ap.parse_args()
    opts = config_for(args.checkpoint, args, steps=args.steps, batch_size=64)
    pipe, data = CounterfactualPipeline.from_checkpoint(args.checkpoint, opts), eval_data(args.checkpoint, args.n)
    pipe.site_banks = site_banks(args.checkpoint, opts)
    ev = Evaluator(pipe.model, None, data, opts, cycles=1, variants=["causaldiff"], progress=False)
    rows = {}
    for j, (node, idx, vals) in enumerate(ev.groups):
        labels = {k: v[idx] for k, v in data.labels.items()}
        cf, _ = counterfactuals(pipe, data.x[idx], labels, {node: vals}, opts, ("effect", j))
        rows[node] = split(cf, data.x[idx], ev.truths[j][1])
    print("| node | L1 / identity | cf inside / identity inside | cf rim | cf outside | share inside |")
    print("|---|---|---|---|---|---|")
    for node, r in rows.items():
        print(f"| {node} | {r['cf']:.2f} / {r['identity']:.2f} | {r['cf_inside']:.2f} / {r['identity_inside']:.2f} | "
              f"{r['cf_rim']:.2f} | {r['cf_outside']:.2f} | {r['share_inside']:.3f} |")
    ratio = sum(r["cf"] for r in rows.values()) / sum(r["identity"] for r in rows.values())
    print(f"overall L1 / identity (groups weighted equally): {ratio:.3f}")
    atomic_write_text(Path(args.out), json.dumps({"meta": {"command": rerun_command(), "commit": commit(),
                                                           "config": opts.asdict()}, "nodes": rows, "ratio": ratio},
                                                 indent=1))


if __name__ == "__main__":
    main()
