"""``causaldiff evaluate``: every counterfactual metric for causaldiff's variants beside identity and truth."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from causaldiff.commands import common
from causaldiff.evaluation.variants import DEFAULT_VARIANTS, VARIANTS


def register(sub) -> None:
    ev = sub.add_parser("evaluate", help="every counterfactual metric, for causaldiff and the peers' variants, "
                        "beside the identity (do nothing) and truth references")
    common.add_inference_args(ev, batch_size=256)
    ev.add_argument("--predictor", required=True, help="anti-causal predictor checkpoint (causaldiff fit-predictor)")
    ev.add_argument("--n", type=int, default=512, help="held-out images to evaluate (default 512)")
    ev.add_argument("--cycles", type=int, default=10, help="cycles for composition / reversibility (default 10)")
    ev.add_argument("--variants", nargs="*", choices=list(VARIANTS), metavar="VARIANT",
                    help=f"variants to run, of {' '.join(VARIANTS)} (default: {' '.join(DEFAULT_VARIANTS)})")
    ev.add_argument("--capture", action="store_true", help="CUDA-graph the sampling loops (GPU)")
    ev.add_argument("--out", required=True, help="report JSON; a Markdown table is written beside it")
    ev.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from causaldiff.evaluation.evaluate import Evaluator, eval_data
    from causaldiff.evaluation.report import markdown
    from causaldiff.io import atomic_write_text

    ckpt, opts, pipe = common.load(args)
    predictor = common.predictor(args.predictor, pipe)
    report = Evaluator(pipe.model, predictor, eval_data(ckpt, args.n), opts, args.cycles, args.variants,
                       capture=args.capture, site_banks=pipe.site_banks).run()
    out = Path(args.out)
    atomic_write_text(out, json.dumps(report, indent=2))
    table = markdown(report)
    atomic_write_text(out.with_suffix(".md"), table)
    print(table + f"wrote {out} and {out.with_suffix('.md')} in {report['meta']['seconds']} s")
