"""``causaldiff grid``: an intervention grid PNG (rows = images) and a CSV of the counterfactual labels."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from causaldiff.commands import common


def register(sub) -> None:
    grid = sub.add_parser("grid", help="render an intervention grid PNG (+ CSV of counterfactual labels)")
    common.add_inference_args(grid, batch_size=64)
    grid.add_argument("--node", help="node to intervene on")
    grid.add_argument("--values", help="comma-separated values, e.g. 60,90,120")
    grid.add_argument("--all-nodes", action="store_true", help="one block per node over its observed range")
    grid.add_argument("--n", type=int, default=8, help="number of images (rows, default 8)")
    grid.add_argument("--out", required=True, help="output PNG; the CSV is written beside it")
    grid.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from causaldiff.inference.grid import write_grid

    if not args.all_nodes and not (args.node and args.values):
        raise ValueError("give --node and --values, or --all-nodes")
    values = None if args.all_nodes else common.floats(args.values, "--values")
    t0 = time.perf_counter()
    ckpt, opts, pipe = common.load(args)
    nodes = pipe.graph.order if args.all_nodes else [args.node]
    if nodes[0] not in pipe.graph:  # before any work
        raise ValueError(f"unknown node '{nodes[0]}' (nodes: {', '.join(pipe.graph.order)})")
    inp = common.inputs(args, ckpt, pipe, args.n)
    write_grid(pipe, inp, nodes, values, opts, Path(args.out))
    print(f"wrote {args.out} ({len(nodes)} block(s), {inp.x.shape[0]} rows) and {Path(args.out).with_suffix('.csv')} "
          f"in {time.perf_counter() - t0:.1f} s")
