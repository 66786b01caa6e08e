"""``causaldiff demo``: world data → model (shipped, or trained with --train) → grid of every node → evaluation."""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

DEMO_STEPS = 750  # 24,000 images: pendulum32 from scratch reads a mean effect gain of 0.7 after 16 k-24 k images
#                   (docs/results.md, "Images to an effective model")


def register(sub) -> None:
    demo = sub.add_parser("demo", help="one command: data, shipped model, grid of every node, short evaluation")
    demo.add_argument("--out", default="causaldiff-demo", help="output folder (default causaldiff-demo)")
    demo.add_argument("--train", action="store_true", help="train a pendulum model from scratch first, to where its "
                      f"interventions show ({DEMO_STEPS} steps; 4 min on 2 CPU cores with bf16 units, report included)")
    demo.add_argument("--max-steps", type=int, help=f"with --train: train this many steps instead of {DEMO_STEPS}")
    demo.add_argument("--report-n", type=int, default=64,
                      help="with --train: held-out items of the trained model's quality report (0: none)")
    demo.add_argument("--steps", type=int, default=20, help="DDIM steps (default 20)")
    demo.set_defaults(run=run)


def run(args: argparse.Namespace) -> None:
    from causaldiff.checkpoint import load_checkpoint
    from causaldiff.data.make import make_world_folder
    from causaldiff.evaluation.evaluate import Evaluator, eval_data
    from causaldiff.evaluation.report import markdown
    from causaldiff.inference.config import CounterfactualConfig
    from causaldiff.inference.grid import write_grid
    from causaldiff.inference.inputs import folder_inputs
    from causaldiff.inference.pipeline import CounterfactualPipeline
    from causaldiff.io import atomic_write_text

    t0, out = time.perf_counter(), Path(args.out)
    data = out / "data"
    if not (data / "labels.csv").is_file():
        make_world_folder("pendulum", 64, 32, 1, data)
    checkpoint = train(out / "run", args.max_steps or DEMO_STEPS, args.report_n) if args.train else "pendulum32"
    ckpt = load_checkpoint(checkpoint)
    opts = CounterfactualConfig.for_checkpoint(ckpt, steps=args.steps)
    pipe = CounterfactualPipeline.from_checkpoint(ckpt, opts)
    m = pipe.model
    write_grid(pipe, folder_inputs(data, m.graph, m.image_size, m.channels, 6), m.graph.order, None, opts,
               out / "grid.png")
    report = Evaluator(m, None, eval_data(ckpt, 32), opts, cycles=2, variants=["causaldiff", "no-abduction"],
                       progress=False).run()
    atomic_write_text(out / "report.json", json.dumps(report, indent=2))
    atomic_write_text(out / "report.md", markdown(report))
    print(markdown(report))
    print(f"demo done in {time.perf_counter() - t0:.0f} s:\n  grid   {out / 'grid.png'} (+ grid.csv)\n"
          f"  report {out / 'report.md'} (+ report.json)\n  data   {data}")


def train(root: Path, steps: int, report_n: int) -> str:
    """Train the shipped pendulum32 config for ``steps`` steps, its learning rate annealed over them (a resumable run
    under ``root``), ending with its quality report (``report_n`` items); returns its last checkpoint."""
    from causaldiff.precision import native_bf16
    from causaldiff.training.cli import packaged_config, run_lightning_cli

    images, rate = steps * 32, 220 if native_bf16() else 158  # a running fit's images/s (benchmarks/fit_speed.py)
    print(f"training pendulum32 for {steps} steps ({images:,} images): about {images / rate / 60:.0f} min at the "
          f"{rate} images/s measured on 2 AVX-512 CPU cores ({'bf16' if rate == 220 else 'float32'}), then about "
          "2 min of quality report", flush=True)
    run_lightning_cli(["fit", "--config", str(packaged_config("pendulum32")), f"--trainer.default_root_dir={root}",
                       f"--trainer.max_steps={steps}", "--trainer.max_time=null", f"--report.n={report_n}",
                       "--report.choose=false"])  # the defaults: the demo's time is the training and one report
    return str(root / "checkpoints" / "last.ckpt")
