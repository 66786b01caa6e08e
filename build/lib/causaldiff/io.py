"""Atomic file output: every file is written to a temporary sibling and renamed into place."""

from __future__ import annotations

import csv
import io
import os
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image

from causaldiff.data.medical import nifti_like


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via temp file + fsync + rename; an interruption leaves no partial file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the file the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode())


def png_bytes(image: np.ndarray) -> bytes:
    """Encode a uint8 (C, H, W) or (H, W) array as PNG (1 channel → L, 3 → RGB); uint16 single-channel → 16-bit."""
    arr = np.asarray(image)
    if arr.ndim == 3:
        arr = arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))
    buf = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(arr)).save(buf, format="PNG")
    return buf.getvalue()


def atomic_write_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    return atomic_write_bytes(path, png_bytes(image))


def encode_like(unit: np.ndarray, source: dict) -> tuple[str, bytes]:
    """(suffix, file bytes) for a float (C, H, W) image in [0, 1], in its source's depth
    (see :func:`causaldiff.data.folder.read_image`): 8-bit PNG, 16-bit PNG (single channel), or a float32 .npy
    ((H, W) or (H, W, C)) mapped back to the source's raw intensity range ``[lo, hi]``; a NIfTI source's image
    becomes a ``.nii.gz`` with its header and affine."""
    unit = np.clip(np.asarray(unit, dtype=np.float32), 0, 1)
    depth = source.get("depth", 8)
    if depth == "float":
        lo, hi = source["range"]
        arr = lo + unit * (hi - lo)
        if "nifti" in source and arr.shape[0] == 1:
            return ".nii.gz", nifti_like(arr[0], source["nifti"])
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(arr[0] if arr.shape[0] == 1 else np.transpose(arr, (1, 2, 0))))
        return ".npy", buf.getvalue()
    if depth == 16 and unit.shape[0] == 1:
        return ".png", png_bytes(np.round(unit * 65535).astype(np.uint16))
    if depth not in (8, 16):
        raise ValueError(f"unknown image depth {depth!r}; expected 8, 16 or 'float'")
    return ".png", png_bytes(np.round(unit * 255).astype(np.uint8))


def csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def format_value(v: float) -> str:
    """Exact round-trip text for a float label (empty for missing)."""
    if v != v:  # NaN
        return ""
    return repr(float(v)) if float(v) != int(v) else str(int(v))
