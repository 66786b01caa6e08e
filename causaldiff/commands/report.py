"""``causaldiff report``: the quality report of a trained model (does each intervention show?), as ``fit`` writes it."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub) -> None:
    rep = sub.add_parser("report", help="the quality report of a trained model: does each intervention show?")
    rep.add_argument("--checkpoint", required=True, help="trained checkpoint or a shipped model name")
    rep.add_argument("--predictor", help="anti-causal predictor checkpoint (default: one fitted on the training split "
                     "of the checkpoint's data, kept beside the report and reused)")
    rep.add_argument("--n", type=int, default=64, help="held-out items (default 64)")
    rep.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    rep.add_argument("--choose", action="store_true", help="measure the candidate inference settings on held-out "
                     "items first and write the best into the checkpoint file as its recommendation (as fit does)")
    rep.add_argument("--out", help="folder (default: report/ beside the checkpoint file, or report_<name>/ for a "
                     "shipped model)")
    rep.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from causaldiff.evaluation.quality_report import quality_report, summary

    given = Path(args.checkpoint)
    out = Path(args.out) if args.out else given.parent / "report" if given.is_file() else Path(f"report_{given}")
    report = quality_report(args.checkpoint, out, args.n, args.steps, args.predictor, choose_settings=args.choose)
    print(summary(report) + f"\nwrote {out / 'report.md'} (+ report.json, one grid per node)")
