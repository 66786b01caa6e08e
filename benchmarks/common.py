"""What the benchmarks share: a checkpoint's config from the generated flags, and its site banks.

A benchmark takes the same counterfactual settings as the CLI (:meth:`CounterfactualConfig.add_arguments`), minus
those it sets itself, and an evaluation variant (:data:`causaldiff.evaluation.variants.VARIANTS`) for ablations.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from causaldiff.checkpoint import load_checkpoint
from causaldiff.inference.config import CounterfactualConfig


def add_config_args(ap: argparse.ArgumentParser) -> None:
    """The recommendable settings as flags (default: the checkpoint's recommendation, else the config's default),
    but ``--steps``: each benchmark sets its own step count."""
    sub = argparse.ArgumentParser(add_help=False)
    CounterfactualConfig.add_arguments(sub)
    for action in sub._actions:
        if action.dest in CounterfactualConfig.recommendable() and action.dest != "steps":
            ap._add_action(action)


def config_for(checkpoint, args: argparse.Namespace, **fixed) -> CounterfactualConfig:
    """The checkpoint's config under the flags of :func:`add_config_args` and the benchmark's ``fixed`` fields."""
    given = {k: getattr(args, k, None) for k in CounterfactualConfig.recommendable() if k not in fixed}
    return CounterfactualConfig.for_checkpoint(checkpoint, **given, **fixed)


def site_banks(checkpoint, config: CounterfactualConfig) -> dict:
    """The checkpoint's site banks; for a training snapshot without them, fitted as export would (its training
    images, under ``config``)."""
    from causaldiff.graph import CausalGraph
    from causaldiff.inference.inputs import training_images
    from causaldiff.inference.pipeline import CounterfactualPipeline
    from causaldiff.inference.sites import fit_site_banks, load_site_banks

    ckpt = load_checkpoint(checkpoint)
    banks = load_site_banks(ckpt)
    graph = CausalGraph.from_dict(ckpt["hyper_parameters"]["graph"])
    if banks or not any(node.local for node in graph.nodes.values()):
        return banks
    return fit_site_banks(CounterfactualPipeline.from_checkpoint(ckpt, config), *training_images(ckpt))


def commit() -> str:
    """The repository's commit the benchmark ran at (``unknown`` outside a git checkout)."""
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                           cwd=Path(__file__).parent)
    return found.stdout.strip() or "unknown"


def rerun_command() -> str:
    """This process's command line with paths relative to the working directory: how to rerun it, not where."""
    cwd = Path.cwd()

    def relative(arg: str) -> str:
        path = Path(arg)
        return path.relative_to(cwd).as_posix() if path.is_absolute() and path.is_relative_to(cwd) else arg

    return "python " + " ".join(relative(a) for a in sys.argv)


def spread_stats(values: list[float]) -> dict:
    """min, median and spread (max - min) of repeated measurements, rounded to 3 decimals."""
    return {"min": round(min(values), 3), "median": round(statistics.median(values), 3),
            "spread": round(max(values) - min(values), 3)}
