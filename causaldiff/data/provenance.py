"""A folder written by ``causaldiff data make`` keeps its world's recipe in ``world.yaml`` (world, size, seed, n,
options), so that the true counterfactual of each of its images can be rendered again: a model trained through the
folder path is measured against the truth as one trained on the world is."""

from __future__ import annotations

from pathlib import Path

import torch
import yaml
from torch import Tensor

from causaldiff.io import atomic_write_text

PROVENANCE = "world.yaml"


def write_provenance(out: Path, world: str, size: int, seed: int, n: int, options: dict[str, float]) -> None:
    """Record how ``out``'s images were rendered: image ``{i:06d}.png`` is sample ``i`` of ``world.sample(n, seed)``."""
    spec = {"world": world, "size": size, "seed": seed, "n": n, "options": dict(options)}
    atomic_write_text(Path(out) / PROVENANCE, yaml.safe_dump(spec, sort_keys=False))


def folder_truth(root: Path, files: list[Path], labels: dict[str, Tensor], size: int):
    """``(world, exogenous)`` for a folder with ``world.yaml``, each exogenous tensor indexed like ``files`` (N,); None
    for a folder without one, or read at another size than it was rendered at (its truth would be rendered
    differently). Raises ValueError when a row's labels are not the world's (the folder was edited)."""
    from causaldiff.data.worlds import get_world

    path = Path(root) / PROVENANCE
    if not path.is_file():
        return None
    spec = yaml.safe_load(path.read_text())
    if spec["size"] != size:
        return None
    world = get_world(spec["world"], size, **spec.get("options", {}))
    exo, truth = world.sample(spec["n"], spec["seed"])
    try:
        rows = torch.tensor([int(Path(f).stem) for f in files])
    except ValueError:
        raise ValueError(f"{path}: the folder's files are not named by sample index as data make wrote them") from None
    if rows.min() < 0 or rows.max() >= spec["n"]:
        raise ValueError(f"{path}: a file's sample index is outside the world's {spec['n']} samples")
    for node, y in labels.items():
        known = y.isfinite()
        if node not in truth or not torch.equal(y[known], truth[node][rows][known]):
            raise ValueError(f"{path}: the labels of {node!r} differ from the world's; was labels.csv edited?")
    return world, {k: v[rows] for k, v in exo.items()}
