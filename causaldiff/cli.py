"""The ``causaldiff`` command: data, fit / validate / test (LightningCLI), and the counterfactual tools."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

LIGHTNING_COMMANDS = ("fit", "validate", "test")


def cmd_data_make(args: argparse.Namespace) -> None:
    from causaldiff.data.folder import write_folder
    from causaldiff.data.worlds import get_world

    out = Path(args.out)
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: {out} exists and is not empty; choose a new --out (nothing was written)")
    world = get_world(args.world, args.size)
    exo, labels = world.sample(args.n, args.seed)
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
    print(f"wrote {args.n} {args.world} images ({args.size} px) + labels.csv + graph.yaml to {out}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="causaldiff",
        description="Diffusion counterfactuals with learned causal mechanisms. "
        "Training commands (fit, validate, test) take LightningCLI options: causaldiff fit --help.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"{name} a model from a YAML config (LightningCLI; see `causaldiff {name} --help`)",
                       add_help=False)

    data = sub.add_parser("data", help="procedural datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    make = dsub.add_parser("make", help="render a world to PNGs + labels.csv + graph.yaml")
    make.add_argument("world", choices=["pendulum", "morpho", "brain"], help="which procedural world")
    make.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    make.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    make.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    make.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    make.set_defaults(func=cmd_data_make)
    return p


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in LIGHTNING_COMMANDS:
        from causaldiff.training.cli import run_lightning_cli

        run_lightning_cli(argv)
        return
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
