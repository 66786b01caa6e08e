"""CausalDataModule: a world or a labelled folder, split by seed, label normalisation fitted on train."""

from __future__ import annotations

from functools import cached_property

import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader, Dataset, Subset, WeightedRandomSampler

from causaldiff.data.focus import focus_nodes
from causaldiff.data.folder import FolderDataset
from causaldiff.data.worlds import get_world
from causaldiff.graph import CausalGraph
from causaldiff.pixels import to_unit

FOCUS_LEVELS = 4  # grey levels (of 255) a pixel must change by to count as the focus node's


class WorldDataset(Dataset):
    """``n`` rendered samples of a world held in memory (uint8), with their exogenous noise kept for true CFs."""

    def __init__(self, world: str, n: int, size: int = 32, seed: int = 0, randomise: tuple[str, ...] = (),
                 twins: str | None = None, focus: str | None = None, options: dict[str, float] | None = None):
        self.world = get_world(world, size, **(options or {}))
        self.graph = self.world.graph
        self.channels = self.world.channels
        self.exogenous, self.labels = self.world.sample(n, seed, randomise)
        self.images = self.world.render(self.exogenous, self.labels)
        self.twins = None  # each item's true counterfactual with binary node ``twins`` flipped: (labels, images)
        if twins is not None:
            self.twins = self._flipped("twins", twins)
        self.focus = None  # (N, 1, H, W) bool: the pixels that flipping a ``focus`` node changes (several: any)
        self.focus_nodes = focus_nodes(self.graph, focus, lambda n: True, self.world.name)
        for node in self.focus_nodes:
            flipped = self.twins[1] if twins == node else self._flipped("focus", node)[1]
            changed = (self.images.int() - flipped.int()).abs().amax(1, keepdim=True) > FOCUS_LEVELS
            self.focus = changed if self.focus is None else self.focus | changed

    def _flipped(self, option: str, node: str) -> tuple[dict, torch.Tensor]:
        """(labels, uint8 images) of every item's true counterfactual with binary ``node`` flipped."""
        if node not in self.graph.order or self.graph[node].cardinality != 2:
            raise ValueError(f"{option}: {node!r} is not a binary node of {self.world.name}")
        return self.world.counterfactual(self.exogenous, self.labels, {node: 1 - self.labels[node]})

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, i: int) -> dict:
        item = {
            "x": to_unit(self.images[i]),
            "labels": {k: v[i] for k, v in self.labels.items()},
            "mask": {k: torch.tensor(True) for k in self.labels},
        }
        if self.focus is not None:
            item["focus"] = self.focus[i].float()
        if self.twins is not None:
            item["twin"] = {"x": to_unit(self.twins[1][i]), "labels": {k: v[i] for k, v in self.twins[0].items()}}
        return item


def label_stats(graph: CausalGraph, labels: dict[str, torch.Tensor]) -> dict[str, list[float]]:
    """``{node: [mean, std]}`` of each continuous node over observed values (discrete nodes: [0, 1])."""
    stats = {}
    for name in graph:
        y = labels[name][labels[name].isfinite()]
        if graph[name].discrete or y.numel() == 0:
            stats[name] = [0.0, 1.0]
        else:
            std = y.std(unbiased=False).item() if y.numel() > 1 else 1.0
            stats[name] = [y.mean().item(), std if std > 1e-8 else 1.0]
    return stats


class CausalDataModule(pl.LightningDataModule):
    """Data for every command: ``world`` (a procedural world: ``causaldiff.data.worlds.WORLDS``) **or** ``folder``
    (images + labels.csv).

    Args:
        world: name of a procedural world to render ``n`` samples of.
        folder: a directory with images, ``labels.csv`` (``file`` + one column per node) and optionally graph.yaml.
        folder_graph: the causal graph of a folder without graph.yaml (a world brings its own).
        n: number of world samples.
        size: image side in pixels.
        folder_channels: image channels for a folder, 1 or 3 (a world brings its own).
        seed: seed for world sampling and for the train/val/test split.
        val_fraction, test_fraction: split fractions.
        batch_size, num_workers: DataLoader settings.
        balance: a discrete node whose classes (and unlabelled items, as one more group) the training batches draw
            equally often, with replacement: for long-tail data whose rare subgroup the decoder must learn to draw.
            Only the batch stream changes; label statistics and the attribute SCM are fitted on the train split as is.
        randomise: discrete nodes of a world assigned uniformly at random, independent of their parents (a
            randomised trial of the world; folders cannot). For reference predictors: one trained on the world as
            observed reads a rare node's parents through it (brain: lesions are rare and follow age). A model fitted
            on such data learns the trial's mechanism for these nodes, not the world's.
        twins: a binary node of a world: each item also carries its true counterfactual with that node flipped
            (``batch["twin"]``), for a predictor whose other readings must not move with it (``PredictorModule``).
        focus: a binary node whose pixels the diffusion loss weighs more (the model's ``focus_weight``): for a small
            finding, such as a lesion, whose few pixels the mean loss barely charges; ``"auto"``: every local node
            whose pixels the data marks (none: no focus). Each item carries them as ``batch["focus"]`` (B, 1, H, W)
            in {0, 1}: a world's are the pixels its true counterfactual with the node flipped changes (the lesion's
            site, lesion or not); a folder's are the nonzero pixels of the mask image (e.g. the lesion's
            segmentation) named in labels.csv's column ``<node>_mask`` (empty: none); several nodes: their union.
        world_options: a world's named variants, e.g. ``{lesion_scale: 2}`` for the brain with lesions twice as wide.
        shown: the nodes the image shows directly, in place of the graph's ``shown`` flags (a world's graph, or
            graph.yaml, declares its own): e.g. every node, for the recipe of a model trained before the flag.
    """

    def __init__(self, world: str | None = None, folder: str | None = None, folder_graph: dict | None = None,
                 n: int = 10000, size: int = 32, folder_channels: int = 3, seed: int = 0, val_fraction: float = 0.1,
                 test_fraction: float = 0.1, batch_size: int = 64, num_workers: int = 0, balance: str | None = None,
                 randomise: list[str] | None = None, twins: str | None = None, focus: str | None = None,
                 world_options: dict[str, float] | None = None, shown: list[str] | None = None):
        super().__init__()
        self.save_hyperparameters()  # stored in checkpoints, so grids and evaluation can find the same data
        if (world is None) == (folder is None):
            raise ValueError("give exactly one of `world` (a procedural world) or `folder` (images + labels.csv)")
        if (randomise or twins or world_options) and folder is not None:
            raise ValueError("randomise, twins and world_options need a world: a folder's images are fixed")
        if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
            raise ValueError(f"val_fraction + test_fraction must be in [0, 1), got {val_fraction} + {test_fraction}")
        self.world, self.folder, self.folder_graph = world, folder, folder_graph
        self.n, self.size, self.folder_channels, self.seed = n, size, folder_channels, seed
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.batch_size, self.num_workers, self.balance = batch_size, num_workers, balance
        self.randomise, self.twins, self.focus = tuple(randomise or ()), twins, focus
        self.world_options = dict(world_options or {})
        self.shown = None if shown is None else list(shown)

    @cached_property
    def dataset(self) -> Dataset:
        if self.world is not None:
            return WorldDataset(self.world, self.n, self.size, self.seed, self.randomise, self.twins, self.focus,
                                self.world_options)
        return FolderDataset(self.folder, self.folder_graph, self.size, self.folder_channels, focus=self.focus)

    @cached_property
    def graph(self) -> CausalGraph:
        graph = self.dataset.graph
        if self.shown is None:
            return graph
        unknown = sorted(set(self.shown) - set(graph.order))
        if unknown:
            raise ValueError(f"shown names unknown node {unknown[0]!r} (nodes: {', '.join(graph.order)})")
        return CausalGraph.from_dict({name: {**node.to_dict(), "shown": name in self.shown}
                                      for name, node in graph.nodes.items()})

    @property
    def graph_spec(self) -> dict:
        """Plain-dict graph (what the model and checkpoint store)."""
        return self.graph.to_dict()

    @property
    def channels(self) -> int:
        return self.dataset.channels

    @cached_property
    def splits(self) -> dict[str, torch.Tensor]:
        n = len(self.dataset)
        n_val, n_test = (max(1, round(n * f)) if f > 0 else 0 for f in (self.val_fraction, self.test_fraction))
        if n - n_val - n_test < 1:
            raise ValueError(f"dataset of {n} item(s) leaves no training items after the val/test split")
        perm = torch.randperm(n, generator=torch.Generator().manual_seed(self.seed))
        return {"train": perm[: n - n_val - n_test], "val": perm[n - n_val - n_test: n - n_test],
                "test": perm[n - n_test:]}

    def train_labels(self) -> dict[str, torch.Tensor]:
        """Raw labels (NaN = missing) of the training split, for fitting normalisation and the attribute SCM."""
        idx = self.splits["train"]
        return {k: v[idx] for k, v in self.dataset.labels.items()}

    @cached_property
    def label_stats(self) -> dict[str, list[float]]:
        return label_stats(self.graph, self.train_labels())

    def subset(self, split: str) -> Dataset:
        return Subset(self.dataset, self.splits[split].tolist())

    def balance_weights(self) -> torch.Tensor:
        """(N_train,) sampling weights giving each class of ``balance`` (and the unlabelled) an equal share."""
        node = self.balance
        if node not in self.graph:
            raise ValueError(f"balance: unknown node {node!r}; nodes are {self.graph.order}")
        if not self.graph[node].discrete:
            raise ValueError(f"balance: node {node!r} is continuous; only a discrete node can be balanced")
        y = self.train_labels()[node]
        group = torch.where(y.isfinite(), y, torch.full_like(y, -1.0))
        _, inverse, counts = torch.unique(group, return_inverse=True, return_counts=True)
        return 1.0 / counts[inverse].double()

    def _loader(self, split: str, shuffle: bool) -> DataLoader:
        ds = self.subset(split)
        if len(ds) == 0:
            raise ValueError(f"the {split} split is empty; raise {split}_fraction or n")
        gen = torch.Generator().manual_seed(self.seed)
        sampler = None
        if shuffle and self.balance is not None:
            sampler = WeightedRandomSampler(self.balance_weights(), len(ds), replacement=True, generator=gen)
        return DataLoader(ds, batch_size=self.batch_size, shuffle=shuffle and sampler is None, sampler=sampler,
                          num_workers=self.num_workers, generator=gen, drop_last=shuffle and len(ds) > self.batch_size,
                          persistent_workers=self.num_workers > 0)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", False)

    def predict_dataloader(self) -> DataLoader:
        return self._loader("test", False)
