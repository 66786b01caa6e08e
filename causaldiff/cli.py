"""The ``causaldiff`` command: parses the subcommand's name and hands the rest to it.

Training subcommands (``TRAINING``) go to LightningCLI, which parses their options itself; every other subcommand is
a module of :mod:`causaldiff.commands` with ``register(subparsers)`` and ``run(args)``. Bad input of either kind
ends in one line, ``error: ...``, and exit status 1.
"""

from __future__ import annotations

import argparse
import sys

from causaldiff.commands import augment, counterfactual, data, demo, evaluate, grid, models, report

TRAINING = {"fit": "train a CausalDiffAE from a YAML config", "validate": "validate a trained model",
            "test": "test a trained model",
            "fit-predictor": "train the anti-causal predictor used by evaluate (data section of a fit config)"}
COMMANDS = (data, grid, counterfactual, evaluate, augment, report, models, demo)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="causaldiff",
        description="Diffusion counterfactuals with learned causal mechanisms. "
        "Training commands (fit, validate, test, fit-predictor) take LightningCLI options: causaldiff fit --help.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    for name, text in TRAINING.items():
        sub.add_parser(name, help=f"{text} (LightningCLI; see `causaldiff {name} --help`)", add_help=False)
    for command in COMMANDS:
        command.register(sub)
    return p


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args, rest = parser.parse_known_args(list(sys.argv[1:] if argv is None else argv))
    try:
        if args.command in TRAINING:
            from causaldiff.training.cli import run_lightning_cli

            run_lightning_cli([args.command, *rest])
        elif rest:
            parser.error(f"unrecognized arguments: {' '.join(rest)}")
        else:
            args.run(args)
    except (ValueError, FileNotFoundError) as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    main()
