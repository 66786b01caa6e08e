"""Safe checkpoint loading: ``torch.load(weights_only=True)`` only; a file that would run code is refused."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

PRETRAINED = Path(__file__).parent / "pretrained"


def shipped_models() -> dict[str, dict]:
    """``{name: info}`` of the checkpoints shipped with the package (``causaldiff models``)."""
    import yaml

    info = yaml.safe_load((PRETRAINED / "models.yaml").read_text()) or {}
    return {name: {**meta, "path": str(PRETRAINED / f"{name}.ckpt")} for name, meta in info.items()
            if (PRETRAINED / f"{name}.ckpt").is_file()}


def resolve_checkpoint(name_or_path: str | Path) -> Path:
    """A file path as is, or the shipped checkpoint of that name (e.g. ``pendulum32``)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    shipped = shipped_models()
    if str(name_or_path) in shipped:
        return Path(shipped[str(name_or_path)]["path"])
    raise FileNotFoundError(f"checkpoint not found: {path} (shipped models: {', '.join(shipped) or 'none'})")


def load_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load a checkpoint dict with ``weights_only=True``; raises ValueError naming the file on any problem.

    ``path`` may also name a shipped model (``pendulum32``, ``morpho32``, ``brain32``).
    """
    path = Path(path)
    if not path.is_file() and not path.suffix and str(path) in shipped_models():
        path = resolve_checkpoint(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise ValueError(
            f"refusing to load {path}: it contains pickled objects that could run code "
            f"(only tensors and plain data are accepted). Detail: {str(e).splitlines()[0]}"
        ) from None
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError) as e:
        raise ValueError(f"{path} is not a readable checkpoint (truncated or corrupt?): {e}") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(f"{path} is not a causaldiff checkpoint (no state_dict)")
    return ckpt


def as_checkpoint(checkpoint: str | Path | dict, map_location="cpu") -> dict:
    """A loaded checkpoint dict as is, else :func:`load_checkpoint` of the path or shipped name (so a command that
    passes the dict on reads its file once)."""
    return checkpoint if isinstance(checkpoint, dict) else load_checkpoint(checkpoint, map_location)


def recommended_settings(checkpoint: str | Path | dict) -> dict:
    """The :class:`~causaldiff.inference.config.CounterfactualConfig` fields a checkpoint recommends (its
    ``inference`` entry, written by ``export_checkpoint`` from a measurement, e.g. brain32's
    ``{"inversion": "residual", "keep_unchanged": True, "depth": 0.75}``; the config refuses unknown keys); {} when it
    has none."""
    return dict(as_checkpoint(checkpoint).get("inference") or {})


def model_state(ckpt: dict, path, ema: bool = True) -> dict:
    """The CausalDiffAE weights from a Lightning checkpoint (``ema_model.*`` or ``model.*``) or an exported one."""
    sd = ckpt["state_dict"]
    for prefix in (("ema_model.", "model.") if ema else ("model.",)):
        sub = {k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}
        if sub:
            return sub
    if any(k.startswith("unet.") for k in sd):
        return sd
    raise ValueError(f"{path}: no model weights found in the checkpoint's state_dict")
