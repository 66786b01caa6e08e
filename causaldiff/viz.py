"""Intervention grids: rows are images, columns factual / reconstruction / one per intervention, labelled header."""

from __future__ import annotations

import math
import re

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

HEADER = 14  # px of header text per line
GUTTER = 140  # grey of the lines between cells: white-background images stay apart


def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] floats → uint8 (same shape)."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def grid_image(columns: list[Tensor], headers: list[str], min_cell: int = 64, padding: int = 4) -> Image.Image:
    """Compose ``columns`` (each (N, C, H, W) in [-1, 1]) side by side under ``headers`` into one RGB image."""
    if len(columns) != len(headers):
        raise ValueError(f"{len(columns)} columns but {len(headers)} headers")
    n, c, h, w = columns[0].shape
    cells = torch.stack(columns, dim=1).reshape(n * len(columns), c, h, w)
    scale = max(1, math.ceil(min_cell / h))
    if scale > 1:
        cells = torch.nn.functional.interpolate(cells.float(), scale_factor=scale, mode="nearest")
    if c == 1:
        cells = cells.expand(-1, 3, -1, -1)
    body = make_grid(to_uint8(cells), nrow=len(columns), padding=padding, pad_value=GUTTER)
    body = Image.fromarray(body.permute(1, 2, 0).numpy())
    cell_w = w * scale + padding
    font = ImageFont.load_default(size=11)
    lines = [_wrap(hd, cell_w, font) for hd in headers]
    head_h = HEADER * max(len(ls) for ls in lines) + 4
    out = Image.new("RGB", (body.width, body.height + head_h), (255, 255, 255))
    out.paste(body, (0, head_h))
    draw = ImageDraw.Draw(out)
    for j, ls in enumerate(lines):
        for k, line in enumerate(ls):
            draw.text((padding + j * cell_w + cell_w / 2, 2 + k * HEADER), line, fill=(0, 0, 0), font=font, anchor="ma")
    return out


def _wrap(text: str, width: int, font) -> list[str]:
    """Break a header before '=' / '+=' and after ',' or ';' so each line fits ``width`` px (long words split)."""
    words = [w for w in re.split(r"(?<=[,;])\s*|\s+|(?=\+=|-=|(?<![+-])=)", text) if w]
    lines, cur = [], ""
    for word in words:
        trial = cur + word
        if cur and font.getlength(trial) > width - 4:
            lines.append(cur)
            cur = word
        else:
            cur = trial
        while font.getlength(cur) > width - 4 and len(cur) > 1:  # a single over-long word
            cut = max(1, next(k for k in range(len(cur), 0, -1) if font.getlength(cur[:k]) <= width - 4))
            lines.append(cur[:cut])
            cur = cur[cut:]
    return [*lines, cur] if cur else lines or [""]


def save_png(image: Image.Image, path) -> None:
    from causaldiff.io import atomic_write_png

    atomic_write_png(path, np.asarray(image).transpose(2, 0, 1))


def node_values(model, node: str, k: int = 5) -> list[float]:
    """Values spanning a node's observed range: k training quantiles (5 %..95 %) or every class (discrete)."""
    spec = model.graph[node]
    if spec.discrete:
        return list(range(spec.cardinality))
    q = model.scm.quantiles[model.graph.index(node)]
    pos = torch.linspace(0.05, 0.95, k) * (q.shape[0] - 1)
    return [float(f"{q[int(p)].item():.4g}") for p in pos]


def intervention_grid(pipeline, x: Tensor, labels: dict, node: str, values: list[float], steps: int = 50,
                      guidance: float = 1.0, generator=None) -> tuple[Image.Image, list[dict]]:
    """Rows = images; columns = factual, reconstruction (null intervention), then ``do(node = v)`` per value.

    Returns the image and one record per counterfactual cell (row, column, intervention, cf labels).
    """
    dos = [[], *[f"{node}={v:g}" for v in values]]
    outs = pipeline.counterfactuals(pipeline.abduct(x, labels, steps), dos, steps, guidance, generator)
    headers = ["factual", "recon", *dos[1:]]
    records = []
    for j, (do, out) in enumerate(zip(dos, outs)):
        for i in range(x.shape[0]):
            rec = {"row": i, "column": j + 1, "intervention": do or "none"}
            rec.update({k: float(v[i]) for k, v in out.cf_labels.items()})
            records.append(rec)
    return grid_image([x.cpu(), *[o.cf_x.cpu() for o in outs]], headers), records


def stack_vertical(images: list[Image.Image], gap: int = 8) -> Image.Image:
    """Stack blocks of different widths top to bottom on white."""
    w = max(im.width for im in images)
    out = Image.new("RGB", (w, sum(im.height for im in images) + gap * (len(images) - 1)), (255, 255, 255))
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height + gap
    return out
