"""``causaldiff models``: the shipped checkpoints, whose names work wherever a checkpoint is asked for."""

from __future__ import annotations

import argparse


def register(sub) -> None:
    models = sub.add_parser("models", help="list the shipped pretrained checkpoints (use their names as --checkpoint)")
    models.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from causaldiff.checkpoint import recommended_settings, shipped_models

    for name, info in shipped_models().items():
        metrics = ", ".join(f"{k} {v}" for k, v in info.get("metrics", {}).items())
        flags = " ".join(flag(k, v) for k, v in recommended_settings(info["path"]).items())
        print(f"{name:<12} {info['path']}\n{'':<12} {info.get('trained', '')}\n{'':<12} {metrics}"
              + (f"\n{'':<12} recommends (used unless given): {flags}" if flags else ""))


def flag(name: str, value) -> str:
    """The command-line form of one setting: ``--keep-unchanged``, ``--depth 0.75``."""
    option = "--" + name.replace("_", "-")
    if isinstance(value, bool):
        return option if value else f"--no-{option[2:]}"
    return f"{option} {value}"
