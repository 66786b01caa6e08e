"""Intervention grids: rows are images; columns factual, reconstruction, then one per ``do(node = value)``."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image
from torch import Tensor

from causaldiff.inference.batch import intervention_columns
from causaldiff.inference.config import CounterfactualConfig
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.io import atomic_write_text, csv_text
from causaldiff.viz import grid_image, save_png, stack_vertical


def node_values(model, node: str, k: int = 5) -> list[float]:
    """Values spanning a node's observed range: k training quantiles (5 %..95 %) or every class (discrete)."""
    spec = model.graph[node]
    if spec.discrete:
        return list(range(spec.cardinality))
    q = model.scm.quantiles[model.graph.index(node)]
    pos = torch.linspace(0.05, 0.95, k) * (q.shape[0] - 1)
    return [float(f"{q[int(p)].item():.4g}") for p in pos]


def intervention_grid(pipe: CounterfactualPipeline, x: Tensor, labels: dict | None, node: str, values: list[float],
                      opts: CounterfactualConfig | None = None) -> tuple[Image.Image, list[dict]]:
    """Rows = images x (N, C, H, W); columns = factual, reconstruction (null intervention), then ``do(node = v)``
    per value.

    Returns the image and one record per counterfactual cell (row, column, intervention, cf labels).
    """
    dos = [[], *[f"{node}={v:g}" for v in values]]
    cols = intervention_columns(pipe, x, labels, dos, opts or CounterfactualConfig(), stream=("grid", node))
    records = []
    for j, (do, (_, cf_labels)) in enumerate(zip(dos, cols)):
        for i in range(x.shape[0]):
            rec = {"row": i, "column": j + 1, "intervention": do or "none"}
            rec.update({k: float(v[i]) for k, v in cf_labels.items()})
            records.append(rec)
    return grid_image([x.cpu(), *[c[0] for c in cols]], ["factual", "recon", *dos[1:]]), records


def write_grid(pipe: CounterfactualPipeline, inp, nodes: list[str], values: list[float] | None,
               opts: CounterfactualConfig, out: Path) -> None:
    """One block per node (``values``, or each node's observed range), stacked into ``out`` (+ ``.csv``)."""
    blocks, records = [], []
    for node in nodes:
        img, recs = intervention_grid(pipe, inp.x, inp.labels, node, values or node_values(pipe.model, node), opts)
        blocks.append(img)
        records += [{"node": node, "source": inp.names[r["row"]], **r} for r in recs]
    save_png(stack_vertical(blocks), out)
    header = list(records[0])
    atomic_write_text(out.with_suffix(".csv"), csv_text(header, [[r[h] for h in header] for r in records]))
