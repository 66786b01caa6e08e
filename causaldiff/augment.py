"""Counterfactual data augmentation: plan counterfactuals that balance a rare subgroup, then write them with
Lightning ``trainer.predict`` and a ``BasePredictionWriter`` (resumable, atomic, DDP-splittable).

Layout of ``--out``: ``manifest.json`` (the plan), ``items/<id>.<png|npy>`` + ``items/<id>.json`` per finished item,
and ``labels.csv`` (written last, merged from the item files) in the folder format the loader reads. Each image is
written in its source's depth: 8- or 16-bit PNG, or float32 .npy in the source's intensity range (arrays, NIfTI, DICOM).
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import BasePredictionWriter
from torch.utils.data import Dataset

from causaldiff.data.folder import FolderDataset
from causaldiff.graph import CausalGraph
from causaldiff.inference.batch import counterfactuals
from causaldiff.inference.config import CounterfactualConfig, first_difference
from causaldiff.inference.inputs import Inputs
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.interventions import resolve
from causaldiff.io import atomic_write_bytes, atomic_write_text, csv_text, encode_like, format_value


def plan_balance(labels: dict[str, torch.Tensor], graph: CausalGraph, node: str, value: float,
                 target_fraction: float, seed: int = 0) -> list[dict]:
    """Items ``{source index, intervention}`` raising the share of ``node == value`` to ``target_fraction``.

    Adding M counterfactuals with the value to N items of which r have it: (r + M) / (N + M) = f, so
    M = ceil((f N - r) / (1 - f)). Sources are the other subgroups' items, used round-robin in a seeded order.
    """
    if node not in graph:
        raise ValueError(f"unknown node '{node}' (nodes: {', '.join(graph.order)})")
    if not graph[node].discrete:
        raise ValueError(f"--balance needs a binary or categorical node; '{node}' is continuous")
    if not 0 < target_fraction < 1:
        raise ValueError(f"target fraction must be in (0, 1), got {target_fraction}")
    resolve(f"{node}={value:g}", graph)  # value valid for the node
    y = labels[node]
    n, r = y.shape[0], int((y == value).sum())
    m = max(0, math.ceil((target_fraction * n - r) / (1 - target_fraction)))
    sources = torch.nonzero(y.isfinite() & (y != value)).flatten()
    if m and not len(sources):
        raise ValueError(f"no source images with {node} != {value:g} to intervene on")
    order = sources[torch.randperm(len(sources), generator=torch.Generator().manual_seed(seed))].tolist()
    return [{"source": order[i % len(order)], "do": f"{node}={value:g}"} for i in range(m)]


def with_reconstructions(items: list[dict]) -> list[dict]:
    """``items`` plus one reconstruction (``do`` empty: the source decoded with no intervention) per distinct source.

    Paired with the counterfactuals, the generated images sit in every class, so a classifier cannot learn the
    generator's traces as the rare class (measured on the brain world: sensitivity 0.74 with counterfactuals alone,
    0.80 with their reconstructions; benchmarks/results/augment.md). The rare share becomes (r + M) / (N + 2M).
    """
    return items + [{"source": s, "do": ""} for s in dict.fromkeys(it["source"] for it in items)]


def plan_explicit(n: int, do: list[str], per_image: int) -> list[dict]:
    """``per_image`` items per source image for the explicit interventions (joined into one ``do``)."""
    return [{"source": i, "do": ";".join(do)} for i in range(n) for _ in range(per_image)]


class PlanDataset(Dataset):
    """The plan's unfinished items: ``{"id", "x", "labels", "do", "source"}`` (source: the input's depth)."""

    def __init__(self, items: list[dict], inputs: Inputs):
        self.items, self.inputs = items, inputs

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        item = self.items[i]
        s = item["source"]
        depth = self.inputs.sources[s] if self.inputs.sources else {"depth": 8}
        return {"id": item["id"], "x": self.inputs.x[s], "do": item["do"], "source": depth,
                "labels": {k: v[s] for k, v in self.inputs.labels.items()}}


def collate(batch: list[dict]) -> dict:
    return {"id": [b["id"] for b in batch], "x": torch.stack([b["x"] for b in batch]),
            "do": [b["do"] for b in batch], "source": [b["source"] for b in batch],
            "labels": {k: torch.stack([b["labels"][k] for b in batch]) for k in batch[0]["labels"]}}


class AugmentModule(pl.LightningModule):
    """Runs the counterfactual pipeline in ``predict_step`` (items of a batch grouped by intervention)."""

    def __init__(self, pipeline: CounterfactualPipeline, opts: CounterfactualConfig):
        super().__init__()
        self.pipeline, self.model, self.opts = pipeline, pipeline.model, opts

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        out_x, out_labels = [None] * len(batch["id"]), [None] * len(batch["id"])
        for do in dict.fromkeys(batch["do"]):
            idx = [i for i, d in enumerate(batch["do"]) if d == do]
            cf_x, cf_labels = counterfactuals(self.pipeline, batch["x"][idx],
                                              {k: v[idx] for k, v in batch["labels"].items()},
                                              do.split(";") if do else [],
                                              self.opts, ("augment", batch["id"][idx[0]]))
            for j, i in enumerate(idx):
                out_x[i] = (cf_x[j].numpy() + 1) / 2  # (C, H, W) in [0, 1]
                out_labels[i] = {k: float(v[j]) for k, v in cf_labels.items()}
        return {"id": batch["id"], "x": out_x, "labels": out_labels, "do": batch["do"], "source": batch["source"]}


class ItemWriter(BasePredictionWriter):
    """Writes each finished item's image, then its record (file, labels, do), atomically: a record implies its
    image."""

    def __init__(self, out: Path):
        super().__init__(write_interval="batch")
        self.items = out / "items"

    def write_on_batch_end(self, trainer, pl_module, prediction, batch_indices, batch, batch_idx, dataloader_idx):
        for i, item_id in enumerate(prediction["id"]):
            suffix, data = encode_like(prediction["x"][i], prediction["source"][i])
            atomic_write_bytes(self.items / f"{item_id}{suffix}", data)
            record = {"file": f"items/{item_id}{suffix}", "labels": prediction["labels"][i], "do": prediction["do"][i]}
            atomic_write_text(self.items / f"{item_id}.json", json.dumps(record))


def load_or_write_plan(out: Path, plan: dict) -> dict:
    """The manifest: written on the first run; a rerun must ask for the same plan (then it resumes), else a
    ValueError names the first setting that differs."""
    path = out / "manifest.json"
    if path.is_file():
        old = json.loads(path.read_text())
        if (key := first_difference(_flat(old), _flat(plan))) is None and old["items"] != plan["items"]:
            raise ValueError(f"{out} holds a plan for other items (the input's images or labels changed); "
                             "choose another --out")
        if key is not None:
            raise ValueError(f"{out} holds a plan made with {key} = {_flat(old).get(key, old.get(key))!r}, this run "
                             f"asks for {_flat(plan).get(key, plan.get(key))!r}; rerun with the same settings to "
                             "resume, or choose another --out")
        return old
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps(plan, indent=1))
    return plan


def _flat(plan: dict) -> dict:
    """A plan's settings without its items, config fields named as their flags (``--guidance``)."""
    return {**{k: v for k, v in plan.items() if k not in ("items", "config")},
            **{f"--{k.replace('_', '-')}": v for k, v in plan.get("config", {}).items()}}


def merge_labels(out: Path, plan: dict, graph: CausalGraph, names: list[str]) -> int:
    """Write ``labels.csv`` from the item records (only when every planned item is done); returns the count."""
    rows = []
    for item in plan["items"]:
        rec_path = out / "items" / f"{item['id']}.json"
        rec = json.loads(rec_path.read_text()) if rec_path.is_file() else None
        if rec is None or not (out / rec["file"]).is_file():
            raise RuntimeError(f"item {item['id']} is missing; rerun the same command to finish")
        rows.append([rec["file"], *(format_value(rec["labels"][k]) for k in graph.order),
                     names[item["source"]], rec["do"], 1])
    atomic_write_text(out / "graph.yaml", graph.to_yaml())
    atomic_write_text(out / "labels.csv", csv_text(["file", *graph.order, "source_file", "intervention",
                                                    "counterfactual"], rows))
    return len(rows)


def read_back(out: Path, predictor, graph: CausalGraph, size: int, channels: int, batch: int = 256) -> dict:
    """Check a finished augmentation with an anti-causal predictor: does each image show its intervened labels?

    Adds a ``read_back_<node>`` column (the predictor's reading, on rows that intervened on the node) to labels.csv
    and writes ``read_back.json``: per node, the share read back as the intended class (discrete) or the mean absolute
    error in label units and in training-label stds (continuous). Returns that summary.
    """
    predictor.check_graph(graph)
    ds = FolderDataset(out, graph, size, channels)
    x = torch.stack([ds[i]["x"] for i in range(len(ds))])
    got = [predictor.predict(x[a:a + batch]) for a in range(0, len(x), batch)]
    got = {k: torch.cat([g[k] for g in got]) for k in graph.order}
    with open(out / "labels.csv", newline="") as f:
        rows = list(csv.reader(f))
    header, rows = rows[0], rows[1:]
    col = header.index("intervention")
    touched = [{iv.node for iv in resolve(r[col].split(";"), graph)} if r[col].strip() else set() for r in rows]
    summary, extra = {}, {}
    for i, node in enumerate(graph.order):
        on = torch.tensor([node in t for t in touched])
        if not on.any():
            continue
        want, read = ds.labels[node][on], got[node][on]
        if graph[node].discrete:
            summary[node] = {"n": int(on.sum()), "read_back_share": round((read == want).float().mean().item(), 4)}
        else:
            mae = (read - want).abs().mean().item()
            summary[node] = {"n": int(on.sum()), "mae": round(mae, 4),
                             "mae_in_stds": round(mae / predictor.scale[i].item(), 4)}
        extra[f"read_back_{node}"] = [format_value(float(v)) if t else "" for v, t in zip(got[node], on.tolist())]
    keep = [j for j, h in enumerate(header) if not h.startswith("read_back_")]  # a rerun replaces old readings
    header = [header[j] for j in keep] + list(extra)
    rows = [[r[j] for j in keep] + [extra[c][k] for c in extra] for k, r in enumerate(rows)]
    atomic_write_text(out / "labels.csv", csv_text(header, rows))
    atomic_write_text(out / "read_back.json", json.dumps(summary, indent=1))
    return summary


def run_augment(pipeline: CounterfactualPipeline, inputs: Inputs, out: str | Path, items: list[dict], args: dict,
                opts: CounterfactualConfig, devices: int = 1, strategy: str = "auto", accelerator: str = "auto",
                predictor=None) -> int:
    """Plan → manifest → predict the unfinished items → merged labels.csv (→ :func:`read_back` with a predictor).
    Returns the number of items."""
    out = Path(out)
    plan = load_or_write_plan(out, {**args, "n_inputs": len(inputs.names),
                                    "items": [{"id": f"{i:06d}", **it} for i, it in enumerate(items)]})
    for stale in [*out.glob(".*.tmp"), *out.glob("items/.*.tmp")]:  # a killed run's half-written files
        stale.unlink(missing_ok=True)
    todo = [it for it in plan["items"] if not (out / "items" / f"{it['id']}.json").is_file()]
    if todo:
        loader = torch.utils.data.DataLoader(PlanDataset(todo, inputs), batch_size=opts.batch_size,
                                             collate_fn=collate)
        trainer = pl.Trainer(accelerator=accelerator, devices=devices, strategy=strategy, logger=False,
                             callbacks=[ItemWriter(out)], enable_progress_bar=True, enable_checkpointing=False)
        trainer.predict(AugmentModule(pipeline, opts), loader, return_predictions=False)
        trainer.strategy.barrier()  # every rank's items are on disk before rank zero merges
        if trainer.global_rank != 0:
            return len(plan["items"])
    n = merge_labels(out, plan, pipeline.graph, inputs.names)
    if predictor is not None and n:
        m = pipeline.model
        for node, res in read_back(out, predictor, pipeline.graph, m.image_size, m.channels).items():
            text = (f"{res['read_back_share']:.1%} read back as intended" if "read_back_share" in res
                    else f"mean error {res['mae']:.4g} ({res['mae_in_stds']:.2f} label stds)")
            print(f"read-back of {node} on {res['n']} counterfactuals: {text}")
    return n
