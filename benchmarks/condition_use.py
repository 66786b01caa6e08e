"""Does the decoder obey its condition? Swap test, x0 sensitivity and collapse check for each checkpoint
(definitions in ``causaldiff/evaluation/condition_use.py``), on the first ``--n`` test images of its own world.

Run: ``python benchmarks/condition_use.py --checkpoint pendulum32 morpho32 brain32 --predictor
benchmarks/predictors/pendulum32.ckpt benchmarks/predictors/morpho32.ckpt benchmarks/predictors/brain32.ckpt``
(one predictor per checkpoint, same order); writes benchmarks/results/condition_use.{json,md}.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from causaldiff.evaluation.condition_use import SWAPS, condition_use
from causaldiff.evaluation.evaluate import eval_data
from causaldiff.evaluation.predictor import AntiCausalPredictor
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.io import atomic_write_text

RESULTS = Path(__file__).parent / "results"


def markdown(rows: dict[str, dict], meta: dict) -> str:
    lines = ["# Condition use", "",
             f"n = {meta['n']} test images, pairs (A, B = A[perm]), {meta['steps']} DDIM steps. Swap test: median "
             "fraction of the A→B label gap the predictor's reading moves (0 ignored, 1 followed; discrete: the "
             "share read as B's class of the pairs whose unswapped decode reads as A's). The reference row reads "
             "the images a perfect z swap gives (truth: A's exogenous noise, every node set to B's value; B: the "
             "image B) from the image A: no decoder is asked to beat it. x0: mean "
             "|x0(cond_A) − x0(cond_B)| from the same x_t, beside the x0 error "
             "mean |x0(cond_A) − x_A|, in [-1, 1] units.", ""]
    for name, r in rows.items():
        nodes = list(r["collapse"]["z_gap"])
        lines += [f"## {name}", ""]
        if "swap" in r:
            lines += ["| noise | swap | " + " | ".join(nodes) + " |", "|---|---|" + "---|" * len(nodes)]
            for kind, swaps in r["swap"].items():
                lines += [f"| {kind} | {w} | " + " | ".join(f"{swaps[w][n]:.2f}" for n in nodes) + " |"
                          for w in SWAPS]
            ref = r["swap_reference"]
            lines += [f"| reference ({ref['images']}) | z | " + " | ".join(f"{ref['z'][n]:.2f}" for n in nodes) + " |",
                      ""]
        ts = list(r["x0"])
        lines += ["| t | " + " | ".join(str(t) for t in ts) + " |", "|---|" + "---|" * len(ts),
                  "| x0 swap | " + " | ".join(f"{r['x0'][t]['swap']:.3f}" for t in ts) + " |",
                  "| x0 error | " + " | ".join(f"{r['x0'][t]['error']:.3f}" for t in ts) + " |", ""]
        c = r["collapse"]
        lines += [f"Collapse: |s_A − s_B| {c['s_gap']:.3f}; |z_A − z_B| per block "
                  + ", ".join(f"{n} {v:.3f}" for n, v in c["z_gap"].items())
                  + f"; |cond| {c['cond_norm']:.2f}, |null| {c['null_norm']:.2f} against |time embedding| "
                  f"{c['temb_norm']:.2f}.", ""]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", nargs="+", default=["pendulum32", "morpho32", "brain32"])
    ap.add_argument("--predictor", nargs="*", default=[], help="one anti-causal predictor per checkpoint")
    ap.add_argument("--name", nargs="*", default=[], help="row names (default: the checkpoint arguments)")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--fresh-depth", type=float, default=1.0,
                    help="decode fresh noise from this fraction of T (1: x_T; below: a diagnostic)")
    ap.add_argument("--out", default=str(RESULTS / "condition_use.json"))
    args = ap.parse_args()
    if args.predictor and len(args.predictor) != len(args.checkpoint):
        ap.error("give one --predictor per --checkpoint (or none)")
    rows = {}
    for i, ckpt in enumerate(args.checkpoint):
        pipe = CounterfactualPipeline.from_checkpoint(ckpt)
        predictor = AntiCausalPredictor.from_checkpoint(args.predictor[i]) if args.predictor else None
        data = eval_data(ckpt, args.n)
        name = args.name[i] if i < len(args.name) else ckpt
        rows[name] = condition_use(pipe, predictor, data.x, data.labels, args.steps, fresh_depth=args.fresh_depth,
                                   world=data.world, exogenous=data.exogenous)
    meta = {"n": args.n, "steps": args.steps, "fresh_depth": args.fresh_depth}
    table = markdown(rows, meta)
    print(table)
    out = Path(args.out)
    atomic_write_text(out, json.dumps({"meta": meta, "rows": rows}, indent=2))
    atomic_write_text(out.with_suffix(".md"), table)


if __name__ == "__main__":
    main()
