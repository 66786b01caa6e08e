"""Intervention grids: rows are images, columns factual / reconstruction / one per intervention, labelled header."""

from __future__ import annotations

import math

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont
from torch import Tensor
from torchvision.utils import make_grid

HEADER = 14  # px of header text per line


def to_uint8(x: Tensor) -> Tensor:
    """[-1, 1] floats → uint8 (same shape)."""
    return ((x.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)


def grid_image(columns: list[Tensor], headers: list[str], min_cell: int = 64, padding: int = 2) -> Image.Image:
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
    body = make_grid(to_uint8(cells), nrow=len(columns), padding=padding, pad_value=255)
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
    """Split a header on commas / spaces so each line fits in ``width`` px."""
    words, lines, cur = text.replace(",", ", ").split(), [], ""
    for word in words:
        trial = f"{cur} {word}".strip()
        if cur and font.getlength(trial) > width - 4:
            lines.append(cur)
            cur = word
        else:
            cur = trial
    return [*lines, cur] if cur else lines or [""]


def save_png(image: Image.Image, path) -> None:
    from causaldiff.io import atomic_write_png

    atomic_write_png(path, np.asarray(image).transpose(2, 0, 1))
