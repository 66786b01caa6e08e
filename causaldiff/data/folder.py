"""Labelled image folder: a directory of images plus a CSV with a ``file`` column and one column per node."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch.utils.data import Dataset

from causaldiff.data.focus import focus_nodes
from causaldiff.data.medical import is_medical, is_nifti, load_slice
from causaldiff.graph import CausalGraph
from causaldiff.io import atomic_write_bytes, atomic_write_text, csv_text, format_value, png_bytes

MAX_PIXELS = 64_000_000  # larger images are refused before decoding (decompression-bomb guard)


def read_labels_csv(root: str | os.PathLike, graph: CausalGraph, csv_name: str = "labels.csv"):
    """Return (files, labels) from ``root/csv_name``; labels are float (N,) per node, NaN where empty."""
    root = Path(root)
    path, rows = _rows(root / csv_name, ["file", *graph.order])
    files = [safe_path(root, r["file"], path) for r in rows]
    first: dict[Path, int] = {}
    for i, f in enumerate(files):
        if f in first:
            raise ValueError(f"{path}, rows {first[f] + 2} and {i + 2} name the same file {rows[i]['file']!r} "
                             "(one row per image: a duplicate would be counted twice and could sit in two splits)")
        first[f] = i
    labels = {}
    for name in graph:
        node, vals = graph[name], []
        for i, r in enumerate(rows):
            cell = (r[name] or "").strip()
            try:
                v = float(cell) if cell else math.nan
            except ValueError:
                raise ValueError(f"{path}, row {i + 2}, column '{name}': {cell!r} is not a number") from None
            if math.isinf(v):
                raise ValueError(f"{path}, row {i + 2}, column '{name}': infinite value")
            if node.discrete and v == v and (v != int(v) or not 0 <= v < node.cardinality):
                raise ValueError(
                    f"{path}, row {i + 2}, column '{name}': {cell!r} is not a class of {node.kind} node "
                    f"(expected an integer in [0, {node.cardinality - 1}])"
                )
            vals.append(v)
        labels[name] = torch.tensor(vals, dtype=torch.float32)
    return files, labels


def read_mask_files(root: str | os.PathLike, column: str, csv_name: str = "labels.csv") -> list[Path | None]:
    """Each row's mask image named in ``column`` of ``root/csv_name`` (None where the cell is empty)."""
    root = Path(root)
    path, rows = _rows(root / csv_name, ["file", column])
    return [safe_path(root, r[column].strip(), path) if (r[column] or "").strip() else None for r in rows]


def has_column(root: str | os.PathLike, column: str, csv_name: str = "labels.csv") -> bool:
    """Whether ``root/csv_name`` has a column named ``column``."""
    with open(Path(root) / csv_name, newline="", encoding="utf-8-sig") as f:
        return column in (next(csv.reader(f), None) or [])


def _rows(path: Path, required: list[str]) -> tuple[Path, list[dict]]:
    """(path, rows as dicts) of a CSV that has the ``required`` columns and at least one row."""
    if not path.is_file():
        raise FileNotFoundError(f"label CSV not found: {path}")
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:  # a byte-order mark is not part of the header
            reader = csv.DictReader(f)
            rows, header = list(reader), reader.fieldnames or []
    except (UnicodeDecodeError, csv.Error) as e:
        raise ValueError(f"{path}: not a readable CSV ({e})") from None
    missing = [c for c in required if c not in header]
    if missing:
        raise ValueError(f"{path}: missing column(s) {missing} (has {list(header)})")
    if not rows:
        raise ValueError(f"{path}: no rows")
    return path, rows


def safe_path(root: Path, rel: str, source: Path) -> Path:
    """Resolve ``rel`` inside ``root``; absolute paths, ``..`` escapes and symlinks out of the root are refused."""
    if not rel:
        raise ValueError(f"{source}: empty 'file' cell")
    if os.path.isabs(rel):
        raise ValueError(f"{source}: file {rel!r} is an absolute path; paths must be relative to {root}")
    real_root = root.resolve()
    p = (root / rel).resolve()
    if not p.is_relative_to(real_root):
        raise ValueError(f"{source}: file {rel!r} is outside the data root {root}")
    return p


def load_image(path: Path, channels: int, size: int) -> torch.Tensor:
    """Read an image file as float (C, size, size) in [-1, 1]; 8/16-bit, grey, RGB, RGBA, .npy, NIfTI, DICOM."""
    return read_image(path, channels, size)[0]


def read_image(path: Path, channels: int, size: int) -> tuple[torch.Tensor, dict]:
    """(C, size, size) in [-1, 1] and the source's depth, to write an image like it back (:func:`encode_like`):
    ``{"depth": 8}`` or ``{"depth": 16}`` (PNG and other images), ``{"depth": "float", "range": [lo, hi]}`` (arrays and
    scans, normalised per image by min-max; lo, hi are the raw intensities that map to 0 and 1)."""
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    if _is_array(path):
        arr, lo, hi = _normalise(_load_array(path), path)
        source = {"depth": "float", "range": [lo, hi], **({"nifti": str(path)} if is_nifti(path) else {})}
        return _from_unit(torch.from_numpy(arr), channels, size), source
    arr, depth = _read_pillow(path, _to_unit)
    return _from_unit(torch.from_numpy(arr), channels, size), {"depth": depth}


def load_mask(path: Path, size: int) -> torch.Tensor:
    """A finding's mask (1, size, size) in {0, 1}: its file's nonzero pixels (any channel), read raw rather than
    min-max normalised, so that every label of a multi-class segmentation counts; resized, a pixel touched counts."""
    arr = _load_array(path) if _is_array(path) else _read_pillow(path, np.asarray)
    on = torch.from_numpy(np.ascontiguousarray(arr != 0)).float()
    on = on.amax(-1) if on.ndim == 3 else on
    return torch.nn.functional.adaptive_max_pool2d(pad_square(on[None]), size)  # padded as its image is


def _is_array(path: Path) -> bool:
    """A .npy array or a medical scan (NIfTI, DICOM), rather than an image Pillow reads."""
    return path.suffix.lower() == ".npy" or is_medical(path)


def _load_array(path: Path) -> np.ndarray:
    """The raw (H, W) or (H, W, C) values of a .npy array or a scan's slice."""
    return load_slice(path) if is_medical(path) else _load_npy(path)


def _read_pillow(path: Path, read):
    """``read(image)`` of the Pillow image at ``path``, refusing images over MAX_PIXELS and unreadable files."""
    try:
        with Image.open(path) as im:
            if im.width * im.height > MAX_PIXELS:
                raise ValueError(f"{path}: image of {im.width}x{im.height} pixels exceeds the {MAX_PIXELS} limit")
            im.load()
            return read(ImageOps.exif_transpose(im))  # a camera's rotation flag, applied as a viewer would
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"unreadable image {path}: {e}") from None


def _load_npy(path: Path) -> np.ndarray:
    """A (H, W) or (H, W, C) float32 array from a .npy file (pickles refused)."""
    try:
        arr = np.load(path, allow_pickle=False).astype(np.float32)
    except (ValueError, OSError) as e:
        raise ValueError(f"unreadable array {path}: {e}") from None
    if arr.ndim not in (2, 3) or (arr.ndim == 3 and arr.shape[2] not in (1, 3, 4)):
        raise ValueError(f"{path}: expected a (H, W) or (H, W, C<=4) array, got shape {arr.shape}")
    return arr


def _normalise(arr: np.ndarray, path: Path) -> tuple[np.ndarray, float, float]:
    """Min-max normalisation per image to [0, 1]; returns (array, lo, hi)."""
    if arr.size > MAX_PIXELS:
        raise ValueError(f"{path}: array of {arr.size} values exceeds the {MAX_PIXELS} limit")
    if not np.isfinite(arr).all():
        raise ValueError(f"{path}: array has NaN or infinite values")
    lo, hi = float(arr.min()), float(arr.max())
    return ((arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)), lo, hi


def _from_unit(x: torch.Tensor, channels: int, size: int) -> torch.Tensor:
    """(H, W) or (H, W, C) floats in [0, 1] → (channels, size, size) in [-1, 1]."""
    if x.ndim == 2:
        x = x[None]
    else:
        x = x.permute(2, 0, 1)
        if x.shape[0] == 4:  # RGBA: composite over black
            x = x[:3] * x[3:]
    if channels == 1 and x.shape[0] == 3:
        x = (0.299 * x[0] + 0.587 * x[1] + 0.114 * x[2])[None]
    elif channels == 3 and x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    x = pad_square(x)
    if x.shape[-2:] != (size, size):
        x = torch.nn.functional.interpolate(x[None], size=(size, size), mode="bilinear", antialias=True)[0]
    return x.clamp(0, 1) * 2 - 1


def pad_square(x: torch.Tensor) -> torch.Tensor:
    """(C, H, W) → (C, M, M), M = max(H, W): a non-square image is padded with zeros (black) on both sides of its
    short axis, centred, so that resizing it neither stretches nor crops it."""
    h, w = x.shape[-2:]
    if h == w:
        return x
    dh, dw = max(w - h, 0), max(h - w, 0)
    return torch.nn.functional.pad(x, (dw // 2, dw - dw // 2, dh // 2, dh - dh // 2))


def _to_unit(im: Image.Image) -> tuple[np.ndarray, int]:
    """Pixels as float32 in [0, 1], keeping 16-bit precision, and the bit depth (8 or 16)."""
    if im.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im, dtype=np.float32)
        depth = 16 if arr.max(initial=0) > 255 or im.mode.startswith("I;16") else 8
        return arr / (2.0**depth - 1), depth
    if im.mode not in ("L", "RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
    return np.asarray(im, dtype=np.float32) / 255.0, 8


class FolderDataset(Dataset):
    """Images + labels from a folder; items are ``{"x": (C, H, W), "labels": {node: ()}, "mask": {node: ()}}``.

    ``focus`` (a binary node, or ``"auto"``: every local node with a ``<node>_mask`` column) adds ``"focus"``
    (1, H, W) in {0, 1} to each item: the nonzero pixels of the mask images (segmentations of the findings) named in
    the CSV columns ``<node>_mask``, all zero where the cells are empty."""

    def __init__(self, root: str | os.PathLike, graph: CausalGraph | dict | None = None, size: int = 32,
                 channels: int = 3, csv_name: str = "labels.csv", focus: str | None = None):
        self.root = Path(root)
        if not self.root.is_dir():
            raise FileNotFoundError(f"data folder not found: {self.root}")
        self.graph = CausalGraph.from_dict(graph) if graph is not None else read_graph(self.root)
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels}")
        self.size, self.channels = size, channels
        self.files, self.labels = read_labels_csv(self.root, self.graph, csv_name)
        self.focus_nodes = focus_nodes(self.graph, focus, lambda n: has_column(self.root, f"{n}_mask", csv_name),
                                       f"the folder's graph {self.graph.order}")
        self.focus_files = {n: read_mask_files(self.root, f"{n}_mask", csv_name) for n in self.focus_nodes}
        for i, f in enumerate(self.files):
            if not f.is_file():
                raise FileNotFoundError(f"{self.root / csv_name}, row {i + 2}: image not found: {f}")
        for node, files in self.focus_files.items():
            for i, f in enumerate(files):
                if f is not None and not f.is_file():
                    raise FileNotFoundError(f"{self.root / csv_name}, row {i + 2}: {node}_mask image not found: {f}")

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, i: int) -> dict:
        labels = {k: v[i] for k, v in self.labels.items()}
        item = {
            "x": load_image(self.files[i], self.channels, self.size),
            "labels": {k: torch.nan_to_num(v, nan=0.0) for k, v in labels.items()},
            "mask": {k: v.isfinite() for k, v in labels.items()},
        }
        if self.focus_nodes:
            item["focus"] = torch.zeros(1, self.size, self.size)
            for files in self.focus_files.values():
                if files[i] is not None:
                    item["focus"] = item["focus"].maximum(load_mask(files[i], self.size))
        return item


def read_graph(root: Path) -> CausalGraph:
    path = Path(root) / "graph.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: pass the graph explicitly or add graph.yaml to the folder")
    return CausalGraph.from_yaml(path.read_text())


def write_folder(out: str | os.PathLike, images: torch.Tensor | list[bytes], labels: dict[str, torch.Tensor],
                 graph: CausalGraph, names: list[str] | None = None, extra: dict[str, list] | None = None) -> Path:
    """Write images (uint8 (N, C, H, W) as PNGs, or already-encoded file bytes) plus ``labels.csv`` and
    ``graph.yaml``, each file atomically.

    The CSV is written last, so a folder whose CSV exists is complete. ``extra`` adds columns after the labels.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(images)
    names = names or [f"{i:06d}.png" for i in range(n)]
    for i in range(n):
        data = images[i] if isinstance(images[i], bytes) else png_bytes(images[i].cpu().numpy())
        atomic_write_bytes(out / names[i], data)
    atomic_write_text(out / "graph.yaml", graph.to_yaml())
    extra = extra or {}
    header = ["file", *graph.order, *extra]
    rows = [[names[i], *(format_value(labels[k][i].item()) for k in graph.order), *(extra[c][i] for c in extra)]
            for i in range(n)]
    atomic_write_text(out / "labels.csv", csv_text(header, rows))
    return out
