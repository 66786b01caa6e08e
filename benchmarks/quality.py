"""Counterfactual quality per world: evaluate every variant of one model beside the identity and truth references
on the same items and interventions, and write benchmarks/results/quality.{json,md}.

The models are the shipped checkpoints (``--models``, one per world), or, with ``--train``, trained from the
configs into ``--workdir`` (reused there). Each world's anti-causal predictor is benchmarks/predictors/<world>32.ckpt,
trained (``configs/predictor.yaml``, the world's data with PREDICTOR_DATA's changes) and exported there when missing.
brain32's is ``causaldiff fit-predictor --config configs/brain32.yaml --data.n=40000 --data.randomise=[lesion]
--data.twins=lesion --model.twin_weight=10``.

Shipped models (CPU):                             python benchmarks/quality.py --n 128 --steps 20 --cycles 5
Trained here:                                     python benchmarks/quality.py --train [--max-steps N]
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
from common import add_config_args, config_for, site_banks  # benchmarks/common.py

from causaldiff.checkpoint import load_checkpoint
from causaldiff.data.datamodule import CausalDataModule
from causaldiff.evaluation.evaluate import Evaluator, eval_data
from causaldiff.evaluation.predictor import AntiCausalPredictor, PredictorModule, export_predictor
from causaldiff.evaluation.report import markdown
from causaldiff.io import atomic_write_text
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.training.callbacks import GridCallback
from causaldiff.training.export import export_checkpoint
from causaldiff.training.module import CausalDiffAEModule

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PREDICTORS = ROOT / "benchmarks" / "predictors"
TARGETS = ["effect gain >= 0.8 on every node, mean >= 0.9 (1 = the truth, 0 = doing nothing)",
           "true-CF image L1 <= 0.5 x identity's",
           "composition@1 <= 3, composition@10 <= 10, reversibility@1 <= 5 (L1, 0-255)"]


# A reference predictor must not read a node through its parents, nor let it move the other readings: brain lesions
# are rare (5 %) and follow age, and a predictor trained on the world as observed sees 85 % of true lesions and moves
# its brain-volume reading by 7.5 ml for a true lesion; on 40,000 images with the lesion randomised and each image's
# lesion twin held to the same other readings: 100 % and 0.6 ml (docs/results.md, "Reference predictors").
PREDICTOR_DATA = {"brain": {"n": 40000, "randomise": ["lesion"], "twins": "lesion"}}
PREDICTOR_MODEL = {"brain": {"twin_weight": 10.0}}


def datamodule(cfg: dict, batch_size: int | None, **changes) -> CausalDataModule:
    data = {**cfg["data"], **changes}
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
    """Train the world's anti-causal predictor and export it to benchmarks/predictors/<world>32.ckpt."""
    cfg = yaml.safe_load((ROOT / "configs" / f"{world}32.yaml").read_text())
    pl.seed_everything(0)
    dm = datamodule(cfg, batch_size, **PREDICTOR_DATA.get(world, {}))
    module = PredictorModule(dm.graph_spec, dm.label_stats, dm.channels, **PREDICTOR_MODEL.get(world, {}))
    ckpt = pl.callbacks.ModelCheckpoint(dirpath=work / "predictor", save_last=True, save_top_k=0)
    pl.Trainer(max_epochs=epochs, accelerator="auto", devices=1, logger=False, callbacks=[ckpt],
               enable_progress_bar=False, limit_val_batches=2).fit(module, datamodule=dm)
    return export_predictor(work / "predictor" / "last.ckpt", PREDICTORS / f"{world}32.ckpt")


def run_world(world: str, model_ckpt: str | Path, args) -> dict:
    t0 = time.perf_counter()
    if args.train:
        model_ckpt = Path(args.workdir) / world / "checkpoints" / "last.ckpt"
        if not model_ckpt.is_file():
            model_ckpt = train_model(world, model_ckpt.parent.parent, args.max_steps, args.batch_size)
    pred_ckpt = PREDICTORS / f"{world}32.ckpt"
    if not pred_ckpt.is_file():
        pred_ckpt = train_predictor(world, Path(args.workdir) / world, args.predictor_epochs, args.batch_size)
    train_s = time.perf_counter() - t0
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = CausalDiffAE.from_checkpoint(model_ckpt).to(device)
    predictor = AntiCausalPredictor.from_checkpoint(pred_ckpt)
    opts = config_for(model_ckpt, args, steps=args.steps, batch_size=256)
    report = Evaluator(model, predictor, eval_data(model_ckpt, args.n, args.start), opts, args.cycles, args.variants,
                       capture=device == "cuda", progress=False, site_banks=site_banks(model_ckpt, opts)).run()
    report["meta"].update({"model": str(model_ckpt), "start": args.start, "train_seconds": round(train_s, 1),
                           "device": device, "global_step": load_checkpoint(model_ckpt).get("global_step")})
    if args.export:
        export_checkpoint(model_ckpt, Path(args.export) / f"{world}32.ckpt")
    return report


def merge(parts: dict[str, dict]) -> str:
    lines = ["# Counterfactual quality", "", "Each world's first table is the headline: effect gain per intervened "
             "node, (identity − method) / (identity − truth), where 1 is as good as the true counterfactual, 0 no "
             "better than returning the input, and < 0 worse; and the true-CF image L1 as a multiple of identity's "
             "(< 1 beats doing nothing). The second table holds the raw metrics, with the *identity* (cf_x = x) and "
             "*truth* (rendered true counterfactual) rows read by the same predictor against the same targets (the "
             "attribute SCM's counterfactual labels). Lower is better except DCI. Effectiveness is normalised: "
             "MAE / label std (continuous) or 1 − accuracy (discrete). L1 on the 0–255 scale. The test items are "
             "split evenly across the nodes; each item's value is another item's, for a discrete node one of another "
             "class (every do() switches the class). Each world's header gives the settings it was run with.", ""]
    for world, rep in parts.items():
        m = rep["meta"]
        c = m["config"]
        switches = ", ".join(f"{k} {c[k]}" for k in ("inversion", "keep_unchanged", "depth", "guidance"))
        lines += [f"## {world} (`{m.get('model')}`, trained {m.get('global_step')} steps; n = {m['n']}, "
                  f"steps = {c['steps']}, evaluated on {m.get('device')}; {switches})", "", markdown(rep)]
    lines += ["Targets:", *[f"- {t}" for t in TARGETS]]
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worlds", nargs="*", default=["pendulum", "morpho", "brain"])
    ap.add_argument("--models", nargs="*", help="one checkpoint per world (default: the shipped <world>32)")
    ap.add_argument("--train", action="store_true", help="train each world's model from its config instead")
    ap.add_argument("--variants", nargs="*", help="evaluation variants (default: the Evaluator's)")
    add_config_args(ap)
    ap.add_argument("--max-steps", type=int, help="override the configs' max_steps")
    ap.add_argument("--batch-size", type=int, help="override the configs' batch size")
    ap.add_argument("--predictor-epochs", type=int, default=6)
    ap.add_argument("--n", type=int, default=256)
    ap.add_argument("--start", type=int, default=0,
                    help="first test item (the reports use 0; choose a setting on items they do not use, e.g. 256)")
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--cycles", type=int, default=10)
    ap.add_argument("--workdir", default="runs/quality", help="trained models are reused from here")
    ap.add_argument("--export", help="also write inference checkpoints (EMA weights) to this folder")
    ap.add_argument("--results", default=str(RESULTS))
    ap.add_argument("--part-only", action="store_true", help="write results/quality_<world>.json only")
    ap.add_argument("--merge-only", action="store_true",
                    help="merge existing quality_<world>.json files into quality.json (and remove them)")
    args = ap.parse_args()
    results = Path(args.results)
    models = args.models or [f"{w}32" for w in args.worlds]
    if len(models) != len(args.worlds):
        ap.error("give one --models checkpoint per world")
    if not args.merge_only:
        for world, model in zip(args.worlds, models):
            rep = run_world(world, model, args)
            atomic_write_text(results / f"quality_{world}.json", json.dumps(rep, indent=2))
            print(f"{world}:\n{markdown(rep)}", flush=True)
    if args.part_only:
        return
    merged = results / "quality.json"  # the worlds not rerun stay as they were measured
    parts = json.loads(merged.read_text()) if merged.is_file() else {}
    new = [results / f"quality_{w}.json" for w in args.worlds if (results / f"quality_{w}.json").is_file()]
    parts.update({path.stem.removeprefix("quality_"): json.loads(path.read_text()) for path in new})
    atomic_write_text(merged, json.dumps(parts, indent=2))
    atomic_write_text(results / "quality.md", merge(parts))
    for path in new:  # merged: quality.json holds them now
        path.unlink()
    print(merge(parts))


if __name__ == "__main__":
    main()
