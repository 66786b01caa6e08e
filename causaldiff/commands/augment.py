"""``causaldiff augment``: counterfactuals that balance a rare subgroup, or explicit ones; resumable, DDP."""

from __future__ import annotations

import argparse

from causaldiff.commands import common


def register(sub) -> None:
    aug = sub.add_parser("augment", help="write counterfactuals that balance a rare subgroup (resumable, DDP)")
    common.add_inference_args(aug)
    aug.add_argument("--balance", help="binary / categorical node whose rare value to raise, e.g. lesion")
    aug.add_argument("--value", type=float, default=1.0, help="the rare value (default 1)")
    aug.add_argument("--target-fraction", type=float, default=0.5, help="share of the rare value after (default 0.5)")
    aug.add_argument("--do", action="append", help="explicit intervention instead of --balance (repeatable)")
    aug.add_argument("--per-image", type=int, default=1, help="counterfactuals per image with --do (default 1)")
    aug.add_argument("--pairs", action="store_true", help="also write each source's reconstruction (no intervention), "
                     "so generated images sit in every class and a classifier cannot learn the generator as the rare "
                     "class")
    aug.add_argument("--devices", type=int, default=1, help="processes / GPUs (default 1)")
    aug.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (default auto)")
    aug.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
    aug.add_argument("--predictor", help="anti-causal predictor checkpoint: read each counterfactual's intervened "
                     "labels back (read_back_<node> columns, read_back.json) to catch interventions that did not show")
    aug.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from causaldiff.augment import plan_balance, plan_explicit, run_augment, with_reconstructions
    from causaldiff.interventions import resolve

    if bool(args.balance) == bool(args.do):
        raise ValueError("give --balance NODE or --do EXPR (not both)")
    ckpt, opts, pipe = common.load(args)
    inp = common.inputs(args, ckpt, pipe, None)
    if args.balance:
        items = plan_balance(inp.labels, pipe.graph, args.balance, args.value, args.target_fraction, opts.seed)
    else:
        resolve(args.do, pipe.graph)
        items = plan_explicit(len(inp.names), args.do, args.per_image)
    if args.pairs:
        items = with_reconstructions(items)
    plan_args = {"checkpoint": str(args.checkpoint), "input": str(args.input), "balance": args.balance,
                 "value": args.value, "target_fraction": args.target_fraction, "do": args.do,
                 "per_image": args.per_image, "pairs": args.pairs, "config": plan_config(opts)}
    predictor = common.predictor(args.predictor, pipe) if args.predictor else None
    n = run_augment(pipe, inp, args.out, items, plan_args, opts, args.devices, args.strategy, predictor=predictor)
    print(f"{n} counterfactual images and labels.csv in {args.out}")


def plan_config(opts) -> dict:
    """What of the config decides the images (all but the device), as the plan records it."""
    return {k: v for k, v in opts.asdict().items() if k != "device"}
