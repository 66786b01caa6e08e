"""Counterfactual quality per world and variant: train (or reuse) each world's model and predictor, evaluate all
variants on the same model, data and interventions, and write benchmarks/results/quality.{json,md}.

CPU (the configs as they are, ~30 min a world):   python benchmarks/quality.py
GPU (shorter, larger batches):                    python benchmarks/quality.py --batch-size 128 --max-steps 2000
One world per process (then merge):               python benchmarks/quality.py --worlds brain --part-only
                                                  python benchmarks/quality.py --merge-only
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
import yaml

from causaldiff.checkpoint import export_checkpoint
from causaldiff.data.datamodule import CausalDataModule
from causaldiff.evaluation.evaluate import Evaluator, eval_data, markdown
from causaldiff.evaluation.predictor import AntiCausalPredictor, PredictorModule
from causaldiff.io import atomic_write_text
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.training.callbacks import GridCallback
from causaldiff.training.module import CausalDiffAEModule

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "benchmarks" / "results"
TARGETS = ["true-CF image L1 of causaldiff < 0.5 x no-abduction's on morpho and brain, <= on pendulum",
           "effect_descendants of causaldiff < no-mechanisms' on every world",
           "composition@10 < 5 (L1, 0-255) on pendulum"]


def datamodule(cfg: dict, batch_size: int | None) -> CausalDataModule:
    data = dict(cfg["data"])
    if batch_size:
        data["batch_size"] = batch_size
    return CausalDataModule(**data)


def train_model(world: str, work: Path, max_steps: int | None, batch_size: int | None) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / f"{world}32.yaml").read_text())
    pl.seed_everything(0)
    dm = datamodule(cfg, batch_size)
    module = CausalDiffAEModule(dm.graph_spec, dm.label_stats, dm.size, dm.channels, **cfg["model"])
    steps = max_steps or cfg["trainer"]["max_steps"]
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=work / "checkpoints", save_last=True, save_top_k=0)
    trainer = pl.Trainer(max_steps=steps, accelerator="auto", devices=1, logger=pl.loggers.CSVLogger(work),
                         callbacks=[ckpt, GridCallback(every_n_steps=steps, n=6, steps=20)], limit_val_batches=2,
                         enable_progress_bar=False, log_every_n_steps=50)
    trainer.fit(module, datamodule=dm)
    return work / "checkpoints" / "last.ckpt"


def train_predictor(world: str, work: Path, epochs: int, batch_size: int | None) -> Path:
    cfg = yaml.safe_load((ROOT / "configs" / f"{world}32.yaml").read_text())
    pl.seed_everything(0)
    dm = datamodule(cfg, batch_size)
    module = PredictorModule(dm.graph_spec, dm.label_stats, dm.channels)
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=work / "predictor", save_last=True, save_top_k=0)
    pl.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False, callbacks=[ckpt],
               enable_progress_bar=False, limit_val_batches=2).fit(module, datamodule=dm)
    return work / "predictor" / "last.ckpt"


def run_world(world: str, args) -> dict:
    work = Path(args.workdir) / world
    t0 = time.perf_counter()
    model_ckpt = work / "checkpoints" / "last.ckpt"
    if not model_ckpt.is_file():
        model_ckpt = train_model(world, work, args.max_steps, args.batch_size)
    pred_ckpt = work / "predictor" / "last.ckpt"
    if not pred_ckpt.is_file():
        pred_ckpt = train_predictor(world, work, args.predictor_epochs, args.batch_size)
    train_s = time.perf_counter() - t0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = CausalDiffAE.from_checkpoint(model_ckpt).to(device)
    predictor = AntiCausalPredictor.from_checkpoint(pred_ckpt)
    report = Evaluator(model, predictor, eval_data(model_ckpt, args.n), args.steps, args.cycles, seed=0,
                       capture=device == "cuda", progress=False).run()
    report["meta"].update({"train_seconds": round(train_s, 1), "device": device,
                           "global_step": torch.load(model_ckpt, weights_only=True).get("global_step")})
    if args.export:
        export_checkpoint(model_ckpt, Path(args.export) / f"{world}32.ckpt")
    return report


def merge(parts: dict[str, dict]) -> str:
    lines = ["# Counterfactual quality", "", "Lower is better except DCI. Effectiveness is normalised: MAE / label std"
             " (continuous) or 1 - accuracy (discrete). L1 on the 0-255 scale.", ""]
    for world, rep in parts.items():
        m = rep["meta"]
        lines += [f"## {world} (n = {m['n']}, steps = {m['steps']}, trained {m.get('global_step')} steps on "
                  f"{m.get('device')})", "", markdown(rep)]
    lines += ["Targets:", *[f"- {t}" for t in TARGETS]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worlds", nargs="*", default=["pendulum", "morpho", "brain"])
    ap.add_argument("--max-steps", type=int, help="override the configs' max_steps")
    ap.add_argument("--batch-size", type=int, help="override the configs' batch size")
    ap.add_argument("--predictor-epochs", type=int, default=6)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--workdir", default="runs/quality", help="trained models are reused from here")
    ap.add_argument("--export", help="also write inference checkpoints (EMA weights) to this folder")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--part-only", action="store_true", help="write results/quality_<world>.json only")
    ap.add_argument("--merge-only", action="store_true", help="merge existing quality_<world>.json files")
    args = ap.parse_args()
    results = Path(args.results)
    if not args.merge_only:
        for world in args.worlds:
            rep = run_world(world, args)
            atomic_write_text(results / f"quality_{world}.json", json.dumps(rep, indent=2))
            print(f"{world}:\n{markdown(rep)}", flush=True)
    if args.part_only:
        return
    parts = {w: json.loads((results / f"quality_{w}.json").read_text()) for w in args.worlds
             if (results / f"quality_{w}.json").is_file()}
    atomic_write_text(results / "quality.json", json.dumps(parts, indent=2))
    atomic_write_text(results / "quality.md", merge(parts))
    print(merge(parts))


if __name__ == "__main__":
    main()
