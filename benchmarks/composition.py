"""Composition by inversion (plain DDIM, fixed-point, residual): L1 (0-255) between x and 1 / 10 successive null
interventions, each re-abducted, on a shipped or trained checkpoint's held-out images.

Run: ``python benchmarks/composition.py [--checkpoint pendulum32] [--n 32] [--steps 20] [--inversions ddim residual]``;
writes benchmarks/results/composition_<checkpoint name>.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from causaldiff.evaluation.evaluate import eval_data
from causaldiff.evaluation.metrics import l1_255
from causaldiff.inference.pipeline import INVERSIONS, CounterfactualPipeline
from causaldiff.io import atomic_write_text
from causaldiff.models.causal_diffae import CausalDiffAE


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default="pendulum32")
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--inversions", nargs="*", default=list(INVERSIONS), choices=INVERSIONS)
    ap.add_argument("--out", help="default: benchmarks/results/composition_<checkpoint name>.json")
    args = ap.parse_args()
    out = args.out or Path(__file__).parent / "results" / f"composition_{Path(args.checkpoint).stem}.json"
    model, data = CausalDiffAE.from_checkpoint(args.checkpoint), eval_data(args.checkpoint, args.n)
    rows = []
    for inversion in args.inversions:
        pipe, x, t0 = CounterfactualPipeline(model, inversion=inversion), data.x, time.perf_counter()
        row = {"inversion": inversion}
        for c in range(1, args.cycles + 1):
            x = pipe(x, data.labels, [], steps=args.steps).cf_x
            if c in (1, args.cycles):
                row[f"composition@{c}"] = round(l1_255(data.x, x), 3)
        row["seconds"] = round(time.perf_counter() - t0, 1)
        rows.append(row)
        print(row, flush=True)
    meta = {"checkpoint": args.checkpoint, "n": args.n, "steps": args.steps, "target": "composition@10 <= 10"}
    atomic_write_text(out, json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
