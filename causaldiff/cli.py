"""The ``causaldiff`` command: data, fit / validate / test (LightningCLI), and the counterfactual tools."""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

LIGHTNING_COMMANDS = ("fit", "validate", "test", "fit-predictor")


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


def _pipeline(args):
    import torch

    from causaldiff.counterfactual import CounterfactualPipeline

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    return CounterfactualPipeline.from_checkpoint(args.checkpoint, device=device, mode=args.mode)


def _predictor(path, pipe):
    """An anti-causal predictor checkpoint whose graph must be the model's."""
    from causaldiff.evaluation.predictor import AntiCausalPredictor

    predictor = AntiCausalPredictor.from_checkpoint(path)
    if predictor.graph.order != pipe.graph.order:
        raise ValueError(f"predictor graph {predictor.graph.order} does not match the model's {pipe.graph.order}")
    return predictor


def _inputs(args, pipe, n):
    from causaldiff.data.inputs import checkpoint_inputs, folder_inputs

    m = pipe.model
    if args.input:
        return folder_inputs(args.input, m.graph, m.image_size, m.channels, n)
    return checkpoint_inputs(args.checkpoint, n)


def _generator(seed: int):
    import torch

    return torch.Generator().manual_seed(seed)


def cmd_grid(args: argparse.Namespace) -> None:
    import time

    from causaldiff.io import atomic_write_text, csv_text
    from causaldiff.viz import intervention_grid, node_values, save_png, stack_vertical

    pipe = _pipeline(args)
    if not args.all_nodes and not (args.node and args.values):
        raise ValueError("give --node and --values, or --all-nodes")
    nodes = pipe.graph.order if args.all_nodes else [args.node]
    if nodes[0] not in pipe.graph:  # before any work
        raise ValueError(f"unknown node '{nodes[0]}' (nodes: {', '.join(pipe.graph.order)})")
    inp = _inputs(args, pipe, args.n)
    t0 = time.perf_counter()
    blocks, records = [], []
    for node in nodes:
        values = node_values(pipe.model, node) if args.all_nodes else _floats(args.values, "--values")
        img, recs = intervention_grid(pipe, inp.x, inp.labels, node, values, args.steps, args.guidance,
                                      _generator(args.seed))
        blocks.append(img)
        records += [{"node": node, "source": inp.names[r["row"]], **r} for r in recs]
    out = Path(args.out)
    save_png(stack_vertical(blocks), out)
    header = list(records[0])
    atomic_write_text(out.with_suffix(".csv"), csv_text(header, [[r[h] for h in header] for r in records]))
    print(f"wrote {out} ({len(nodes)} block(s), {inp.x.shape[0]} rows) and {out.with_suffix('.csv')} "
          f"in {time.perf_counter() - t0:.1f} s")


def cmd_counterfactual(args: argparse.Namespace) -> None:
    import torch

    from causaldiff.data.folder import write_folder
    from causaldiff.interventions import resolve
    from causaldiff.io import encode_like

    pipe = _pipeline(args)
    do = resolve(args.do, pipe.graph)
    inp = _inputs(args, pipe, None)
    files, names, labels = [], [], {k: [] for k in pipe.graph.order}
    for a in range(0, inp.x.shape[0], args.batch_size):
        sl = slice(a, a + args.batch_size)
        out = pipe(inp.x[sl], {k: v[sl] for k, v in inp.labels.items()}, do, args.steps, args.guidance,
                   _generator(args.seed + a))
        for j, x in enumerate(out.cf_x.cpu().numpy()):  # each image in its source's depth
            i = a + j
            suffix, data = encode_like((x + 1) / 2, inp.sources[i] if inp.sources else {"depth": 8})
            files.append(data)
            names.append(f"cf_{_flat_stem(inp.names[i])}{suffix}")
        for k in labels:
            labels[k].append(out.cf_labels[k].cpu())
    text = ";".join(str(iv) for iv in do)
    extra = {"source_file": inp.names, "intervention": [text] * len(names), "counterfactual": [1] * len(names)}
    write_folder(args.out, files, {k: torch.cat(v) for k, v in labels.items()}, pipe.graph, names, extra)
    print(f"wrote {len(names)} counterfactual images and labels.csv to {args.out}")


def cmd_evaluate(args: argparse.Namespace) -> None:
    import json

    from causaldiff.evaluation.evaluate import Evaluator, eval_data, markdown
    from causaldiff.io import atomic_write_text

    pipe = _pipeline(args)
    predictor = _predictor(args.predictor, pipe)
    report = Evaluator(pipe.model, predictor, eval_data(args.checkpoint, args.n), args.steps, args.cycles,
                       args.seed, args.batch_size, args.variants, capture=args.capture).run()
    out = Path(args.out)
    atomic_write_text(out, json.dumps(report, indent=2))
    table = markdown(report)
    atomic_write_text(out.with_suffix(".md"), table)
    print(table + f"wrote {out} and {out.with_suffix('.md')} in {report['meta']['seconds']} s")


def cmd_augment(args: argparse.Namespace) -> None:
    from causaldiff.augment import plan_balance, plan_explicit, run_augment

    if bool(args.balance) == bool(args.do):
        raise ValueError("give --balance NODE or --do EXPR (not both)")
    pipe = _pipeline(args)
    inp = _inputs(args, pipe, None)
    if args.balance:
        items = plan_balance(inp.labels, pipe.graph, args.balance, args.value, args.target_fraction, args.seed)
    else:
        from causaldiff.interventions import resolve

        resolve(args.do, pipe.graph)
        items = plan_explicit(len(inp.names), args.do, args.per_image)
    plan_args = {"checkpoint": str(args.checkpoint), "input": str(args.input), "balance": args.balance,
                 "value": args.value, "target_fraction": args.target_fraction, "do": args.do,
                 "per_image": args.per_image, "steps": args.steps, "guidance": args.guidance, "seed": args.seed}
    predictor = _predictor(args.predictor, pipe) if args.predictor else None
    n = run_augment(pipe, inp, args.out, items, plan_args, args.steps, args.guidance, args.seed, args.batch_size,
                    args.devices, args.strategy, predictor=predictor)
    print(f"{n} counterfactual images and labels.csv in {args.out}")


def cmd_models(args: argparse.Namespace) -> None:
    from causaldiff.checkpoint import shipped_models

    for name, info in shipped_models().items():
        metrics = ", ".join(f"{k} {v}" for k, v in info.get("metrics", {}).items())
        print(f"{name:<12} {info['path']}\n{'':<12} {info.get('trained', '')}\n{'':<12} {metrics}")


def cmd_demo(args: argparse.Namespace) -> None:
    """World data → model (shipped, or trained with --train) → grid of every node → short evaluation."""
    import json
    import time

    from causaldiff.evaluation.evaluate import Evaluator, eval_data, markdown
    from causaldiff.io import atomic_write_text

    t0, out = time.perf_counter(), Path(args.out)
    data = out / "data"
    if not (data / "labels.csv").is_file():
        cmd_data_make(argparse.Namespace(world="pendulum", n=64, size=32, seed=1, out=str(data)))
    checkpoint = "pendulum32"
    if args.train:
        config = Path(__file__).resolve().parent.parent / "configs" / "pendulum32.yaml"
        if not config.is_file():
            raise FileNotFoundError(f"--train needs the repository's configs/ folder ({config} not found)")
        from causaldiff.training.cli import run_lightning_cli

        root = out / "run"
        run_lightning_cli(["fit", "--config", str(config), f"--trainer.default_root_dir={root}",
                           f"--trainer.logger.init_args.save_dir={root}",
                           f"--trainer.callbacks.0.init_args.dirpath={root / 'checkpoints'}"])
        checkpoint = str(root / "checkpoints" / "last.ckpt")
    grid_args = argparse.Namespace(checkpoint=checkpoint, input=str(data), steps=args.steps, guidance=1.0,
                                   mode="shift", seed=0, device=None, node=None, values=None, all_nodes=True,
                                   n=6, out=str(out / "grid.png"))
    cmd_grid(grid_args)
    pipe = _pipeline(grid_args)
    report = Evaluator(pipe.model, None, eval_data(checkpoint, 32), args.steps, cycles=2,
                       variants=["causaldiff", "no-abduction"]).run()
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", markdown(report))
    print(markdown(report))
    print(f"demo done in {time.perf_counter() - t0:.0f} s:\n  grid   {out / 'grid.png'} (+ grid.csv)\n"
          f"  report {out / 'report.md'} (+ report.json)\n  data   {data}")


def _flat_stem(name: str) -> str:
    """``sub/a.nii.gz`` → ``sub__a``: one flat, collision-free file stem per source path."""
    stem = name[: -len(".nii.gz")] if name.lower().endswith(".nii.gz") else str(Path(name).with_suffix(""))
    return stem.replace("/", "__")


def _floats(text: str, flag: str) -> list[float]:
    try:
        return [float(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ValueError(f"{flag} must be comma-separated numbers, got {text!r}") from None


def _add_inference_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--checkpoint", required=True,
                   help="trained checkpoint (.ckpt, loaded weights_only) or a shipped model name (causaldiff models)")
    p.add_argument("--input", help="folder of images + labels.csv (default: the checkpoint's own test split)")
    p.add_argument("--steps", type=int, default=50, help="DDIM steps for inversion and decoding (default 50)")
    p.add_argument("--guidance", type=float, default=1.0, help="guidance weight w; > 1 strengthens the change")
    p.add_argument("--mode", choices=["shift", "replace"], default="shift",
                   help="shift: move the latent by g(new) - g(old) (keeps the individual); replace: set it to g(new)")
    p.add_argument("--seed", type=int, default=0, help="seed for label-noise abduction (default 0)")
    p.add_argument("--device", help="cpu or cuda (default: cuda when available)")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="causaldiff",
        description="Diffusion counterfactuals with learned causal mechanisms. "
        "Training commands (fit, validate, test) take LightningCLI options: causaldiff fit --help.",
    )
    sub = p.add_subparsers(dest="command", required=True)
    helps = {"fit": "train a CausalDiffAE from a YAML config", "validate": "validate a trained model",
             "test": "test a trained model", "fit-predictor": "train the anti-causal predictor used by evaluate"}
    for name in LIGHTNING_COMMANDS:
        sub.add_parser(name, help=f"{helps[name]} (LightningCLI; see `causaldiff {name} --help`)", add_help=False)

    data = sub.add_parser("data", help="procedural datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)
    make = dsub.add_parser("make", help="render a world to PNGs + labels.csv + graph.yaml")
    make.add_argument("world", choices=["pendulum", "morpho", "brain"], help="which procedural world")
    make.add_argument("--n", type=int, default=1000, help="number of images (default 1000)")
    make.add_argument("--size", type=int, default=32, help="image side in pixels (default 32)")
    make.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    make.add_argument("--out", required=True, help="output folder (must not exist or be empty)")
    make.set_defaults(func=cmd_data_make)

    grid = sub.add_parser("grid", help="render an intervention grid PNG (+ CSV of counterfactual labels)")
    _add_inference_args(grid)
    grid.add_argument("--node", help="node to intervene on")
    grid.add_argument("--values", help="comma-separated values, e.g. 60,90,120")
    grid.add_argument("--all-nodes", action="store_true", help="one block per node over its observed range")
    grid.add_argument("--n", type=int, default=8, help="number of images (rows, default 8)")
    grid.add_argument("--out", required=True, help="output PNG; the CSV is written beside it")
    grid.set_defaults(func=cmd_grid)

    cf = sub.add_parser("counterfactual", help="write counterfactuals of a folder's images under --do")
    _add_inference_args(cf)
    cf.add_argument("--do", action="append", required=True,
                    help="intervention, repeatable: 'node=value', 'node+=delta', 'node-=delta'")
    cf.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    cf.add_argument("--out", required=True, help="output folder (images + labels.csv in the loader's format)")
    cf.set_defaults(func=cmd_counterfactual)

    ev = sub.add_parser("evaluate", help="every counterfactual metric, for causaldiff and the peers' variants")
    _add_inference_args(ev)
    ev.add_argument("--predictor", required=True, help="anti-causal predictor checkpoint (causaldiff fit-predictor)")
    ev.add_argument("--n", type=int, default=512, help="held-out images to evaluate (default 512)")
    ev.add_argument("--cycles", type=int, default=10, help="cycles for composition / reversibility (default 10)")
    ev.add_argument("--variants", nargs="*", help="subset of: causaldiff no-abduction no-mechanisms label-propagation")
    ev.add_argument("--batch-size", type=int, default=256, help="images per pipeline call (default 256)")
    ev.add_argument("--capture", action="store_true", help="CUDA-graph the sampling loops (GPU)")
    ev.add_argument("--out", required=True, help="report JSON; a Markdown table is written beside it")
    ev.set_defaults(func=cmd_evaluate)

    aug = sub.add_parser("augment", help="write counterfactuals that balance a rare subgroup (resumable, DDP)")
    _add_inference_args(aug)
    aug.add_argument("--balance", help="binary / categorical node whose rare value to raise, e.g. lesion")
    aug.add_argument("--value", type=float, default=1.0, help="the rare value (default 1)")
    aug.add_argument("--target-fraction", type=float, default=0.5, help="share of the rare value after (default 0.5)")
    aug.add_argument("--do", action="append", help="explicit intervention instead of --balance (repeatable)")
    aug.add_argument("--per-image", type=int, default=1, help="counterfactuals per image with --do (default 1)")
    aug.add_argument("--batch-size", type=int, default=32, help="images per batch (default 32)")
    aug.add_argument("--devices", type=int, default=1, help="processes / GPUs (default 1)")
    aug.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (default auto)")
    aug.add_argument("--out", required=True, help="output folder (rerun the same command to resume)")
    aug.add_argument("--predictor", help="anti-causal predictor checkpoint: read each counterfactual's intervened "
                     "labels back (read_back_<node> columns, read_back.json) to catch interventions that did not show")
    aug.set_defaults(func=cmd_augment)

    models = sub.add_parser("models", help="list the shipped pretrained checkpoints (use their names as --checkpoint)")
    models.set_defaults(func=cmd_models)

    demo = sub.add_parser("demo", help="one command: data, shipped model, grid of every node, short evaluation")
    demo.add_argument("--out", default="causaldiff-demo", help="output folder (default causaldiff-demo)")
    demo.add_argument("--train", action="store_true", help="train the CPU-sized pendulum model (~30 min) first")
    demo.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    demo.set_defaults(func=cmd_demo)
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
