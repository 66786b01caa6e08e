"""A world rendered into a folder the loader reads: PNGs, labels.csv, graph.yaml, each finding's mask and world.yaml
(what ``causaldiff data make`` writes)."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from causaldiff.data.datamodule import FOCUS_LEVELS
from causaldiff.data.folder import write_folder
from causaldiff.data.provenance import write_provenance
from causaldiff.data.worlds import get_world
from causaldiff.io import atomic_write_bytes, png_bytes


def make_world_folder(world_name: str, n: int, size: int, seed: int, out: Path,
                      options: dict[str, float] | None = None) -> None:
    """Render ``n`` images of a world (with its ``options``) into a new folder, atomically (a temp folder renamed
    into place), with ``world.yaml``, from which the evaluation renders its images' true counterfactuals."""
    if out.exists() and any(out.iterdir()):
        raise SystemExit(f"error: {out} exists and is not empty; choose a new --out (nothing was written)")
    world = get_world(world_name, size, **(options or {}))
    exo, labels = world.sample(n, seed)
    images = world.render(exo, labels)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.tmp-"))
    try:
        write_folder(tmp, images, labels, world.graph, extra=_finding_masks(tmp, world, exo, labels, images))
        write_provenance(tmp, world_name, size, seed, n, options or {})
        if out.exists():
            out.rmdir()
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _finding_masks(out: Path, world, exo: dict, labels: dict, images) -> dict[str, list[str]]:
    """Column ``<node>_mask`` per local binary node: a segmentation PNG (255 where the finding changes the image by
    more than FOCUS_LEVELS grey levels) for each image that has the finding, an empty cell for the others."""
    columns = {}
    for node in world.graph.order:
        if not (world.graph[node].local and world.graph[node].cardinality == 2):
            continue
        _, without = world.counterfactual(exo, labels, f"{node}=0")
        change = (images.int() - without.int()).abs().amax(1, keepdim=True) > FOCUS_LEVELS
        cells = []
        for i in range(images.shape[0]):
            if labels[node][i] == 1:
                name = f"{i:06d}_{node}_mask.png"
                atomic_write_bytes(out / name, png_bytes((change[i] * 255).to(images.dtype).numpy()))
                cells.append(name)
            else:
                cells.append("")
        columns[f"{node}_mask"] = cells
    return columns
