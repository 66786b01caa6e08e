"""``causaldiff data make WORLD``: render a procedural world to PNGs + labels.csv + graph.yaml."""

from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path


def register(sub) -> None:
    data = sub.add_parser("data", help="procedural datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    make = dsub.add_parser("make", help="render a world to PNGs + labels.csv + graph.yaml")
    make.add_argument("world", choices=["pendulum", "morpho", "brain"], help="which procedural world")
    make.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    make.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    make.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    make.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    make.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    make_world_folder(args.world, args.n, args.size, args.seed, Path(args.out))
    print(f"wrote {args.n} {args.world} images ({args.size} px) + labels.csv + graph.yaml to {args.out}")


def make_world_folder(world_name: str, n: int, size: int, seed: int, out: Path) -> None:
    """Render ``n`` images of a world into a new folder, atomically (a temp folder renamed into place)."""
    from causaldiff.data.folder import write_folder
    from causaldiff.data.worlds import get_world

    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: {out} exists and is not empty; choose a new --out (nothing was written)")
    world = get_world(world_name, size)
    exo, labels = world.sample(n, seed)
    images = world.render(exo, labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        write_folder(tmp, images, labels, world.graph)
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
