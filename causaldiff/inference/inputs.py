"""Inputs for the inference commands: a user's folder, or the held-out split of a checkpoint's own dataset."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from causaldiff.checkpoint import as_checkpoint
from causaldiff.data.folder import FolderDataset, has_column, load_mask, read_image, read_mask_files
from causaldiff.graph import CausalGraph
from causaldiff.hparams import kwargs_for


@dataclass
class Inputs:
    x: torch.Tensor  # (N, C, H, W) in [-1, 1]
    labels: dict[str, torch.Tensor]  # raw units, NaN = unknown (read back from the image)
    names: list[str]  # source file (folder) or dataset index
    sources: list[dict] | None = None  # each image's depth (see folder.read_image); None: 8-bit


def folder_inputs(root: str | Path, graph: CausalGraph, size: int, channels: int, n: int | None = None) -> Inputs:
    """All (or the first ``n``) images of a folder with labels.csv, resized to the model's size."""
    ds = FolderDataset(root, graph, size, channels)
    count = len(ds) if n is None else min(n, len(ds))
    read = [read_image(f, channels, size) for f in ds.files[:count]]
    labels = {k: v[:count].clone() for k, v in ds.labels.items()}
    names = [str(f.relative_to(Path(root).resolve())) for f in ds.files[:count]]
    return Inputs(torch.stack([x for x, _ in read]), labels, names, [src for _, src in read])


def checkpoint_datamodule(checkpoint: str | Path | dict):
    """The DataModule the checkpoint (path, shipped name or loaded dict) was trained with (same world or folder,
    seed and split). The data layer imports Lightning: only a command without ``--input`` gets here."""
    from causaldiff.data.datamodule import CausalDataModule

    hp = as_checkpoint(checkpoint).get("datamodule_hyper_parameters")
    if not hp:
        raise ValueError("the checkpoint does not record its dataset; pass --input DIR with images + labels.csv")
    return CausalDataModule(**kwargs_for(CausalDataModule, hp))


def checkpoint_inputs(checkpoint: str | Path | dict, n: int, split: str = "test") -> Inputs:
    """The first ``n`` items of the ``split`` of the dataset the checkpoint was trained on."""
    return split_inputs(checkpoint_datamodule(checkpoint), n, split)


def split_inputs(dm, n: int, split: str = "test") -> Inputs:
    """The first ``n`` items of the ``split`` of a DataModule's dataset (the training split's when it is empty)."""
    ds = dm.subset(split if len(dm.splits[split]) else "train")
    count = len(ds) if n is None else min(n, len(ds))
    items = [ds[i] for i in range(count)]
    x = torch.stack([it["x"] for it in items])
    labels = {k: torch.stack([torch.where(it["mask"][k], it["labels"][k], torch.tensor(float("nan")))
                              for it in items]) for k in dm.graph.order}
    names = [f"{split}[{int(dm.splits[split][i])}]" for i in range(count)]
    return Inputs(x, labels, names)


def training_images(checkpoint: str | Path | dict, n: int = 4000) -> tuple[torch.Tensor, dict[str, torch.Tensor],
                                                                          dict[str, torch.Tensor]]:
    """The first ``n`` training images (N, C, H, W), labels and findings' masks ({node: (N, 1, H, W)}, see
    :func:`finding_masks`) of the dataset a checkpoint records: what site banks are fitted on at export
    (:func:`causaldiff.inference.sites.fit_site_banks`), never the images being evaluated."""
    dm = checkpoint_datamodule(checkpoint)
    found = split_inputs(dm, n, split="train")
    return found.x, found.labels, finding_masks(dm, dm.splits["train"][:found.x.shape[0]].tolist())


def finding_masks(dm, rows: list[int]) -> dict[str, torch.Tensor]:
    """{node: (N, 1, H, W) float in {0, 1}} for each local node whose segmentations a folder's labels.csv names in
    a ``<node>_mask`` column, for its ``rows`` (all zero where a cell is empty); {} for a world."""
    if not isinstance(dm.dataset, FolderDataset):
        return {}
    ds, masks = dm.dataset, {}
    for node in [k for k in ds.graph.order if ds.graph[k].local]:
        files = read_mask_files(ds.root, f"{node}_mask") if has_column(ds.root, f"{node}_mask") else None
        if files is not None:
            empty = torch.zeros(1, ds.size, ds.size)
            masks[node] = torch.stack([empty if files[i] is None else load_mask(files[i], ds.size) for i in rows])
    return masks
