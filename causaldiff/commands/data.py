"""``causaldiff data make WORLD``: render a procedural world to PNGs + labels.csv + graph.yaml."""

from __future__ import annotations

import argparse
from pathlib import Path

WORLD_NAMES = ["pendulum", "morpho", "brain", "strokes", "bloom"]  # causaldiff.data.worlds.WORLDS, without torch


def register(sub) -> None:
    data = sub.add_parser("data", help="procedural datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    make = dsub.add_parser("make", help="render a world to PNGs + labels.csv + graph.yaml")
    make.add_argument("world", choices=WORLD_NAMES, help="which procedural world")
    make.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    make.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    make.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    make.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    make.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                      help="a world's variant, e.g. lesion_scale=2 (the brain's lesions twice as wide)")
    make.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from causaldiff.data.make import make_world_folder

    make_world_folder(args.world, args.n, args.size, args.seed, Path(args.out), _options(args.option))
    print(f"wrote {args.n} {args.world} images ({args.size} px) + labels.csv + graph.yaml to {args.out}")


def _options(pairs: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise SystemExit(f"error: --option {pair!r}: expected KEY=NUMBER") from None
        if not eq or not key.strip():
            raise SystemExit(f"error: --option {pair!r}: expected KEY=NUMBER")
    return out
