"""``causaldiff models``: the shipped checkpoints, whose names work wherever a checkpoint is asked for."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    models = sub.add_parser("models", help="list the shipped pretrained checkpoints (use their names as --checkpoint)")
    models.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from causaldiff.checkpoint import shipped_models

    for name, info in shipped_models().items():
        metrics = ", ".join(f"{k} {v}" for k, v in info.get("metrics", {}).items())
        print(f"{name:<12} {info['path']}\n{'':<12} {info.get('trained', '')}\n{'':<12} {metrics}")
