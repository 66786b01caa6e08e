"""Drawing grids of images: columns side by side under wrapped headers, with grey gutters; blocks stacked.

What goes into an intervention grid is computed in :mod:`causaldiff.inference.grid`.
"""

from __future__ import annotations

import math
import re

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

from causaldiff.pixels import to_uint8

HEADER = 14  # px of header text per line
GUTTER = 140  # grey of the lines between cells: white-background images stay apart


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


def stack_vertical(images: list[Image.Image], gap: int = 8) -> Image.Image:
    """Stack blocks of different widths top to bottom on white."""
    w = max(im.width for im in images)
    out = Image.new("RGB", (w, sum(im.height for im in images) + gap * (len(images) - 1)), (255, 255, 255))
    y = 0
    for im in images:
        out.paste(im, (0, y))
        y += im.height + gap
    return out
