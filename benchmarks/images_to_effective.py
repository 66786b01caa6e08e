"""Images to an effective model (issue 14): the mean effect gain (identity = 0, the truth = 1) of each snapshot of a
training run, and the images seen when it first reaches ``--threshold``, bracketed by the snapshots either side.

The run must keep its snapshots; an extra checkpoint callback that keeps every save does it:

    causaldiff fit --config pendulum32 --trainer.default_root_dir=runs/p \\
      '--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint' --trainer.callbacks.every_n_train_steps=250 \\
      --trainer.callbacks.save_top_k=-1 '--trainer.callbacks.filename=snapshot-{step}'
    python benchmarks/images_to_effective.py --run runs/p --out benchmarks/results/images_to_effective/pendulum32.json

Each snapshot is evaluated with its EMA weights on the same first ``--n`` test items and interventions (the
``causaldiff`` variant, one cycle); images seen = global step x the run's batch size.
"""

from __future__ import annotations

import argparse
import json
import re
import time
from pathlib import Path

import torch
from common import add_config_args, commit, config_for, rerun_command, site_banks  # benchmarks/common.py

from causaldiff.checkpoint import load_checkpoint
from causaldiff.evaluation.evaluate import Evaluator, eval_data
from causaldiff.evaluation.predictor import AntiCausalPredictor
from causaldiff.evaluation.report import first_crossing
from causaldiff.io import atomic_write_text
from causaldiff.models.causal_diffae import CausalDiffAE

PREDICTORS = Path(__file__).parent / "predictors"


def snapshots(run: Path) -> list[Path]:
    """The run's ``snapshot-step=N.ckpt`` files, by step."""
    found = sorted(run.glob("checkpoints/snapshot-step=*.ckpt"), key=lambda p: int(re.findall(r"\d+", p.stem)[-1]))
    if not found:
        raise FileNotFoundError(f"{run}/checkpoints holds no snapshot-step=N.ckpt (see this script's docstring)")
    return found


def evaluate(ckpt: Path, predictor: AntiCausalPredictor, args) -> dict:
    """{step, images, effect_gain (per node), effect_gain_mean, true_cf_l1_ratio} of one snapshot."""
    meta = load_checkpoint(ckpt)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    opts = config_for(ckpt, args, steps=args.steps, batch_size=256)
    model = CausalDiffAE.from_checkpoint(ckpt).to(device)
    report = Evaluator(model, predictor, eval_data(ckpt, args.n), opts, cycles=1, variants=["causaldiff"],
                       capture=device == "cuda", progress=False, site_banks=site_banks(ckpt, opts)).run()
    g = report["gains"]["causaldiff"]
    step = meta["global_step"]
    return {"step": step, "images": step * meta["datamodule_hyper_parameters"]["batch_size"],
            "effect_gain": g["effect_gain"], "effect_gain_mean": g["effect_gain_mean"],
            "true_cf_l1_ratio": g["true_cf_l1_ratio"], "seconds": report["meta"]["seconds"]}


def _cell(value: float | None, digits: int = 2) -> str:
    return "—" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    nodes = list(rows[0]["effect_gain"])
    lines = ["| images | step | " + " | ".join(f"gain {n}" for n in nodes) + " | mean | true-CF L1 / identity |",
             "|---|---|" + "---|" * (len(nodes) + 2)]
    lines += [f"| {r['images']:,} | {r['step']} | " + " | ".join(_cell(r["effect_gain"][n]) for n in nodes)
              + f" | {_cell(r['effect_gain_mean'], 3)} | {_cell(r['true_cf_l1_ratio'])} |" for r in rows]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--run", required=True, help="a training run's root (trainer.default_root_dir)")
    ap.add_argument("--predictor", help="default: benchmarks/predictors/<world>32.ckpt")
    ap.add_argument("--threshold", type=float, default=0.7, help="mean effect gain of an effective model")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--steps", type=int, default=20)
    add_config_args(ap)
    ap.add_argument("--out", required=True, help="JSON file to write")
    args = ap.parse_args()
    snaps = snapshots(Path(args.run))
    world = load_checkpoint(snaps[0])["datamodule_hyper_parameters"].get("world")
    predictor = AntiCausalPredictor.from_checkpoint(args.predictor or PREDICTORS / f"{world}32.ckpt")
    t0, rows = time.perf_counter(), []
    for snap in snaps:
        rows.append(evaluate(snap, predictor, args))
        print(f"step {rows[-1]['step']}: mean gain {_cell(rows[-1]['effect_gain_mean'], 3)}", flush=True)
    crossing = first_crossing([(r["images"], r["effect_gain_mean"]) for r in rows], args.threshold)
    result = {"meta": {"command": rerun_command(), "commit": commit(), "world": world, "n": args.n, "steps": args.steps,
                       "threshold": args.threshold, "seconds": round(time.perf_counter() - t0, 1)},
              "snapshots": rows, "crossing": crossing}
    atomic_write_text(Path(args.out), json.dumps(result, indent=2))
    print(table(rows))
    reached, below = crossing["reached"], crossing["last_below"]
    print(f"mean effect gain first >= {args.threshold}: " + (
        f"not reached by {below:,} images" if reached is None else
        f"by {reached:,} images (the first snapshot)" if below is None else
        f"between {below:,} and {reached:,} images"))


if __name__ == "__main__":
    main()
