"""``evaluate``: every metric for causaldiff and the peers' methods, on the same model, data and interventions.

Interventions are drawn from the data: the held-out samples are split evenly across the graph's nodes and each
sample gets ``do(node = value of another random sample)``. Variants: the recommended path under the given
config (``causaldiff``) and the ablations, each that path with one pipeline switch changed
(:mod:`causaldiff.evaluation.variants`); ``peers``: other counterfactual models, anything called as a pipeline is
(``peer(x, labels, do, steps, guidance, generator)`` → an object with ``cf_x`` and ``cf_labels``), scored alike.

Beside them stand two references on the same items and interventions, so no number is read against a straw man:
  identity           cf_x = x ("do nothing"), with the attribute SCM's counterfactual labels;
  truth              the world's rendered true counterfactual (worlds only).
Every row is read against the same targets: the attribute SCM's counterfactual labels. From the three,
  effect gain        (identity - method) / (identity - truth) of the normalised effectiveness error, per node:
                     1 is as good as the truth, 0 no better than doing nothing, < 0 worse; without a truth,
                     (identity - method) / identity;
  true-CF L1 ratio   the method's true-counterfactual image L1 / identity's (< 1 beats doing nothing).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import cached_property

import torch
from torch import Tensor
from tqdm import tqdm

from causaldiff.data.datamodule import WorldDataset
from causaldiff.data.provenance import folder_truth
from causaldiff.evaluation.metrics import dci, frechet_distance, l1_255, label_error
from causaldiff.evaluation.predictor import AntiCausalPredictor
from causaldiff.evaluation.report import gains, markdown  # noqa: F401 - markdown: re-exported from its old path
from causaldiff.evaluation.variants import DEFAULT_VARIANTS, VARIANTS
from causaldiff.inference.batch import chunks, counterfactuals
from causaldiff.inference.config import CounterfactualConfig
from causaldiff.inference.inputs import checkpoint_datamodule
from causaldiff.inference.pipeline import CounterfactualPipeline, switches
from causaldiff.inference.sites import SiteBank
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.pixels import to_unit


@dataclass
class EvalData:
    x: Tensor  # (N, C, H, W) in [-1, 1]
    labels: dict[str, Tensor]
    exogenous: dict[str, Tensor] | None  # worlds only: for the true counterfactual
    world: object | None

    def part(self, n: int | None, start: int = 0, nodes: int = 0) -> EvalData:
        """Items ``start`` to ``start + n`` (None: to the end), as :func:`eval_data` with these arguments would load
        them; ValueError when fewer than ``2 * nodes`` remain."""
        cut = slice(start, None if n is None else start + n)
        _check_enough(len(self.x[cut]), nodes)
        exogenous = {k: v[cut] for k, v in self.exogenous.items()} if self.exogenous is not None else None
        return EvalData(self.x[cut], {k: v[cut] for k, v in self.labels.items()}, exogenous, self.world)


def _check_enough(items: int, nodes: int) -> None:
    """ValueError unless there are at least two evaluation items a node."""
    if items < 2 * nodes:
        raise ValueError(f"evaluation needs at least {2 * nodes} test items, the test split has {items}")


def eval_data(checkpoint, n: int | None, start: int = 0) -> EvalData:
    """``n`` test items (None: all) of the checkpoint's own dataset from the ``start``-th on (with exogenous noise for
    worlds, and for folders that ``data make`` wrote from one: :mod:`causaldiff.data.provenance`).

    The reports use the first ones; a setting is chosen on items the reports do not use (e.g. ``start=256``)."""
    dm = checkpoint_datamodule(checkpoint)
    idx = dm.splits["test"][start:None if n is None else start + n]
    _check_enough(len(idx), len(dm.graph))
    items = [dm.dataset[int(i)] for i in idx]
    x = torch.stack([it["x"] for it in items])
    labels = {k: dm.dataset.labels[k][idx].clone() for k in dm.graph.order}
    if isinstance(dm.dataset, WorldDataset):
        return EvalData(x, labels, {k: v[idx] for k, v in dm.dataset.exogenous.items()}, dm.dataset.world)
    ds = dm.dataset
    truth = folder_truth(ds.root, [ds.files[int(i)] for i in idx], labels, ds.size)
    return EvalData(x, labels, truth[1], truth[0]) if truth else EvalData(x, labels, None, None)


def draw_interventions(data: EvalData, graph, seed: int, bins: int | None = None) -> list[tuple[str, Tensor, Tensor]]:
    """[(node, sample indices, values)]: samples split evenly across nodes; values from other random samples, for a
    discrete node from one of another class (a do() that keeps the class measures nothing: with a rare class, such as
    a 5 % lesion, donors drawn at random would switch a handful of images). With ``bins``, a continuous node's value
    is drawn uniformly from another of ``bins`` equal bins of its range in the data instead (Melistas et al., 2024)."""
    g = torch.Generator().manual_seed(seed)
    n = data.x.shape[0]
    perm, donor = torch.randperm(n, generator=g), torch.randperm(n, generator=g)
    groups = perm.tensor_split(len(graph))
    out = []
    for node, idx in zip(graph.order, groups):
        if graph[node].discrete:
            out.append((node, idx, _other_class(data.labels[node], idx, g)))
        elif bins:
            out.append((node, idx, _other_bin(data.labels[node], idx, bins, g)))
        else:
            out.append((node, idx, data.labels[node][donor[idx]]))
    return out


def _other_bin(y: Tensor, idx: Tensor, bins: int, g: torch.Generator) -> Tensor:
    """(len(idx),) values uniform in a random one of ``bins`` equal bins of y's range other than each item's own."""
    lo, width = y.min(), (y.max() - y.min()).clamp_min(1e-8) / bins
    own = ((y[idx] - lo) / width).floor().clamp(0, bins - 1)
    shift = torch.randint(1, bins, (len(idx),), generator=g)  # another bin: own + 1 .. own + bins - 1, wrapped
    other = (own + shift) % bins
    return lo + (other + torch.rand(len(idx), generator=g)) * width


def _other_class(y: Tensor, idx: Tensor, g: torch.Generator) -> Tensor:
    """(len(idx),) the class of a random sample whose class differs from each indexed sample's (its own where none
    does): other classes in proportion to their share of the data."""
    order = y[torch.randperm(len(y), generator=g)]
    picks = []
    for k, own in enumerate(y[idx].tolist()):
        other = order[order != own]
        picks.append(other[k % len(other)] if len(other) else torch.tensor(own, dtype=y.dtype))
    return torch.stack(picks) if picks else y[:0]


class Evaluator:
    """Runs every metric for the requested variants; ``run()`` returns the report dict."""

    def __init__(self, model: CausalDiffAE, predictor: AntiCausalPredictor | None, data: EvalData,
                 opts: CounterfactualConfig | None = None, cycles: int = 10, variants: list[str] | None = None,
                 capture: bool = False, progress: bool = True, site_banks: dict[str, SiteBank] | None = None,
                 peers: dict | None = None, reversibility_cycles: int | None = None, bins: int | None = None):
        unknown = set(variants or []) - set(VARIANTS)
        if unknown:
            raise ValueError(f"unknown variant(s) {sorted(unknown)} (choose from {list(VARIANTS)})")
        dev = next(model.parameters()).device
        self.model, self.predictor, self.data = model, predictor.to(dev) if predictor else None, data
        self.graph = model.graph
        self.opts, self.cycles = opts or CounterfactualConfig(batch_size=256), cycles
        self.reversibility_cycles = cycles if reversibility_cycles is None else reversibility_cycles
        self.peers, self.bins = peers or {}, bins
        self.variants, self.capture, self.progress = variants or DEFAULT_VARIANTS, capture, progress
        self.site_banks = site_banks or {}  # the checkpoint's (a local node without one is decoded)
        self.groups = draw_interventions(data, self.graph, self.opts.seed, bins)
        # each group's true counterfactual (labels, image in [-1, 1]), rendered once for every row
        self.truths = None if data.world is None else [self._truth(idx, node, vals) for node, idx, vals in self.groups]
        self.std = {k: max(v.float().std().item(), 1e-8) for k, v in data.labels.items()}

    def run(self) -> dict:
        t0 = time.perf_counter()
        rows = len(self.variants) + len(self.peers)
        stages = (rows * (1 + self.cycles + 2 * self.reversibility_cycles) + 2) * len(self.groups)
        self.bar = tqdm(total=stages, desc="evaluate", disable=not self.progress)
        report = {"meta": {"n": self.data.x.shape[0], "cycles": self.cycles, "bins": self.bins,
                           "reversibility_cycles": self.reversibility_cycles, "config": self.opts.asdict(),
                           "nodes": self.graph.order, "world": getattr(self.data.world, "name", None)},
                  "disentanglement": self.disentanglement(), "variants": {}}
        for name in self.variants:
            report["variants"][name] = self.variant(self.pipeline(name))
        for name, peer in self.peers.items():
            report["variants"][name] = self.variant(peer)
        report["references"] = {"identity": self.reference("identity")}
        if self.data.world is not None:
            report["references"]["truth"] = self.reference("truth")
        report["gains"] = {name: gains(v, report["references"]) for name, v in report["variants"].items()}
        self.bar.close()
        report["meta"]["seconds"] = round(time.perf_counter() - t0, 2)
        return report

    # ------------------------------------------------------------------ pieces
    @cached_property
    def real_features(self) -> Tensor:
        """(N, D) the predictor's features of the real images: the reference side of every row's Fréchet distance."""
        return self._predict(self.data.x)[1]

    def _predict(self, x: Tensor) -> tuple[dict, Tensor]:
        dev = next(self.predictor.parameters()).device
        preds, feats = [], []
        with torch.no_grad():
            for a in range(0, x.shape[0], self.opts.batch_size):
                xb = x[a:a + self.opts.batch_size].to(dev)
                preds.append({k: v.cpu() for k, v in self.predictor.predict(xb).items()})
                feats.append(self.predictor.features(xb).cpu())
        return {k: torch.cat([p[k] for p in preds]) for k in preds[0]}, torch.cat(feats)

    def _score(self, node: str, pred: Tensor, target: Tensor) -> float:
        """Normalised error: MAE / std of the node's labels (continuous) or 1 - accuracy (discrete)."""
        e = label_error(self.graph, node, pred, target)
        return 1 - e if self.graph[node].discrete else e / self.std[node]

    def pipeline(self, name: str) -> CounterfactualPipeline:
        """Variant ``name``'s pipeline: the config's switches, the variant's own on top."""
        return CounterfactualPipeline(self.model, capture=self.capture, site_banks=self.site_banks,
                                      **{**switches(self.opts), **VARIANTS[name]})

    def variant(self, pipe) -> dict:
        def make(j, node, idx, vals, x, labels):
            return counterfactuals(pipe, x, labels, {node: vals}, self.opts, ("effect", j))

        out = self.score(make)
        out["composition"] = self.composition(pipe)
        out["reversibility"] = self.reversibility(pipe)
        return out

    def reference(self, kind: str) -> dict:
        """The ``identity`` (cf_x = x) or ``truth`` (rendered true counterfactual) row, scored like a variant."""
        def make(j, node, idx, vals, x, labels):
            parts = [self.model.scm.counterfactual({k: v[sl] for k, v in labels.items()}, {node: vals[sl]}, gen)
                     for sl, gen in chunks(len(idx), self.opts, ("effect", j))]  # the variants' draws
            cf_labels = {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
            if kind == "identity":
                return x, cf_labels
            return self.truths[j][1], cf_labels

        out = self.score(make)
        zeros = [{str(c): 0.0 for c in sorted({1, n})} for n in (self.cycles, self.reversibility_cycles)]
        # doing nothing changes nothing, and is undone
        out["composition"], out["reversibility"] = zeros if kind == "identity" else ({}, {})
        return out

    def _truth(self, idx: Tensor, node: str, vals: Tensor) -> tuple[dict, Tensor]:
        """The world's true counterfactual labels and image (in [-1, 1]) of the items ``idx`` under do(node=vals)."""
        exo = {k: v[idx] for k, v in self.data.exogenous.items()}
        labels = {k: v[idx] for k, v in self.data.labels.items()}
        true_labels, true_img = self.data.world.counterfactual(exo, labels, {node: vals})
        return true_labels, to_unit(true_img)

    def score(self, make) -> dict:
        """Effectiveness, realism and true-CF metrics of ``make(j, node, idx, vals, x, labels) -> (cf_x, cf_labels)``
        over the intervention groups."""
        d, out = self.data, {"effectiveness": {}, "effect_per_node": {}, "true_cf": {}}
        self_err, desc_err, true_l1, true_lab, cf_feats, input_l1 = [], [], [], [], [], []
        for j, (node, idx, vals) in enumerate(self.groups):
            x, labels = d.x[idx], {k: v[idx] for k, v in d.labels.items()}
            cf_x, cf_labels = make(j, node, idx, vals, x, labels)
            self.bar.update()
            input_l1.append(l1_255(cf_x, x) * len(idx))
            if self.predictor is not None:  # effectiveness and realism need the anti-causal predictor
                pred, feats = self._predict(cf_x)
                cf_feats.append(feats)
                targets = [node, *self.graph.descendants(node)]
                out["effectiveness"][node] = {t: label_error(self.graph, t, pred[t], cf_labels[t]) for t in targets}
                out["effect_per_node"][node] = self._score(node, pred[node], cf_labels[node])
                self_err.append(out["effect_per_node"][node])
                desc_err += [self._score(t, pred[t], cf_labels[t]) for t in self.graph.descendants(node)]
            if d.world is not None:
                true_labels, truth = self.truths[j]
                true_l1.append(l1_255(cf_x, truth) * len(idx))
                errs = {t: self._score(t, cf_labels[t], true_labels[t]) for t in self.graph.descendants(node)}
                out["true_cf"][node] = {"image_l1": l1_255(cf_x, truth), "label_error": errs}
                true_lab += list(errs.values())
        if self.predictor is not None:
            out["realism_fd"] = frechet_distance(self.real_features, torch.cat(cf_feats))
        out["input_l1"] = sum(input_l1) / d.x.shape[0]  # how far the counterfactuals moved from their inputs
        out["effect_self"] = sum(self_err) / len(self_err) if self_err else None
        out["effect_descendants"] = sum(desc_err) / len(desc_err) if desc_err else None
        if d.world is not None:
            out["true_cf_image_l1"] = sum(true_l1) / d.x.shape[0]
            out["true_cf_label_error"] = sum(true_lab) / len(true_lab) if true_lab else None
        return out

    def composition(self, pipe) -> dict:
        """L1 (0-255) between x and 1 .. cycles successive null interventions, each re-abducted."""
        res, x = {}, self.data.x
        for c in range(1, self.cycles + 1):
            for j, (_, idx, _) in enumerate(self.groups):
                x = x.clone()
                sub = {k: v[idx] for k, v in self.data.labels.items()}
                x[idx] = counterfactuals(pipe, x[idx], sub, {}, self.opts, ("composition", c, j))[0]
                self.bar.update()
            if c in (1, self.cycles):
                res[str(c)] = l1_255(self.data.x, x)
        return res

    def reversibility(self, pipe) -> dict:
        """L1 (0-255) between x and do(back to y)(do(a*)(x)), repeated 1 .. reversibility_cycles times."""
        res, total = {}, {str(c): 0.0 for c in {1, self.reversibility_cycles}}
        for j, (node, idx, vals) in enumerate(self.groups):
            x0 = self.data.x[idx]
            x, labels = x0, {k: v[idx] for k, v in self.data.labels.items()}
            for c in range(1, self.reversibility_cycles + 1):
                fwd_x, fwd_labels = counterfactuals(pipe, x, labels, {node: vals}, self.opts, ("forward", c, j))
                x, labels = counterfactuals(pipe, fwd_x, fwd_labels, {node: self.data.labels[node][idx]}, self.opts,
                                            ("back", c, j))
                self.bar.update(2)
                if str(c) in total:
                    total[str(c)] += l1_255(x0, x) * len(idx)
        for c in total:
            res[c] = total[c] / self.data.x.shape[0]
        return res

    def disentanglement(self) -> dict:
        dev = next(self.model.parameters()).device
        with torch.no_grad():
            zs = []
            for a in range(0, self.data.x.shape[0], self.opts.batch_size):
                mu_u, _, _, _ = self.model.encode(self.data.x[a:a + self.opts.batch_size].to(dev))
                zs.append(self.model.mechanisms(mu_u).cpu())
        return dci(torch.cat(zs), self.data.labels, self.graph)
