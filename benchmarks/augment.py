"""Does counterfactual augmentation help a rare-lesion classifier? Brain world, training sets:
(a) the imbalanced data, (b) (a) + counterfactuals do(lesion=1) raising lesions to 50 %, (c) (a) with the rare class
oversampled to 50 %, (d) (c) with classic augmentation (flips, small affine): what a practitioner would try;
(b2) (b) + each source's reconstruction, labelled as its source (``augment --pairs``: generated images in both
classes), (b3) (b2) with the classic augmentation of (d), (b4) (b3) with the real rare images oversampled to as
many draws as the counterfactuals (all of a practitioner's tools together; it differs from (d) only by the
counterfactual pairs); (e) (a) + copy-paste: a real lesion cut out with its mask (its twin difference) and pasted
with its local background difference at a random site inside the brain of each of (b)'s sources, (e2) (e) with the
classic augmentation of (d); and, as an upper bound, (b*) (a) + the world's true counterfactuals of the same sources.
Same small CNN, three seeds each; balanced accuracy, AUROC, sensitivity and specificity on a balanced held-out set.

Also reported, by a reference classifier trained on a large balanced real set: how often it sees a lesion in the
do(lesion=1) counterfactuals (``cf_lesion_rate``) and their sources, and how often do(lesion=0) of lesion images
is lesion-free (``removal_rate``); and by the anti-causal predictor, how far the other nodes' readings move
(against the identity row: the same predictor on the sources). A grid shows sources and several seeds each.

Run: ``python benchmarks/augment.py [--checkpoint brain32] [--n 2000] [--epochs 8]``: counterfactuals at the
checkpoint's recommended settings and 50 steps, as ``causaldiff augment`` makes them (``--steps``, ``--guidance``, ...
override). Writes the JSON, a Markdown table beside it and lesion_grid.png there. ``--rows "(e)" "(e2)"`` reruns
only rows that need no counterfactuals and merges them into the table there (each row's classifiers are seeded alike
either way).
"""

from __future__ import annotations

import argparse
import json
import math
import time
from dataclasses import replace
from pathlib import Path

import torch
from common import add_config_args, commit, config_for, rerun_command, site_banks  # benchmarks/common.py
from copy_paste import lesion_patches, paste  # benchmarks/copy_paste.py
from torch import Tensor
from torch.nn import functional as F

from causaldiff.augment import plan_balance
from causaldiff.data.worlds import get_world
from causaldiff.evaluation.predictor import AntiCausalPredictor
from causaldiff.inference.batch import counterfactuals
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.io import atomic_write_text
from causaldiff.pixels import to_unit
from causaldiff.viz import grid_image, save_png, stack_vertical

GRAPH = {"lesion": {"kind": "binary"}}


def images(world, n, seed):
    exo, labels = world.sample(n, seed)
    return to_unit(world.render(exo, labels)), labels, exo


def balanced_test(world, per_class: int, seed: int):
    x, labels, _ = images(world, per_class * 40, seed)
    pos = torch.nonzero(labels["lesion"] == 1).flatten()[:per_class]
    neg = torch.nonzero(labels["lesion"] == 0).flatten()[:per_class]
    idx = torch.cat([pos, neg])
    return x[idx], labels["lesion"][idx]


def sources(labels, graph) -> Tensor:
    """The lesion-free items whose do(lesion=1) raises the lesion share to 50 % (augment's plan)."""
    return torch.tensor([it["source"] for it in plan_balance(labels, graph, "lesion", 1, 0.5)])


def copy_pasted(world, x, labels, exo, src) -> tuple[Tensor, int]:
    """Each source with a real lesion of the data pasted in (:mod:`copy_paste`); and the pastes kept at their site."""
    pos = torch.nonzero(labels["lesion"] == 1).flatten()
    _, twins = world.counterfactual({k: v[pos] for k, v in exo.items()}, {k: v[pos] for k, v in labels.items()},
                                    "lesion=0")
    return paste(x[src], *lesion_patches(x[pos], to_unit(twins)), torch.Generator().manual_seed(0))


def classic_augment(x, gen):
    """Random horizontal flips and small affine moves (rotation ±10°, shift ±2 px, scale ±5 %) of a batch."""
    b = x.shape[0]
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0)
    angle = (torch.rand(b, generator=gen) * 2 - 1) * math.radians(10)
    scale = 1 + (torch.rand(b, generator=gen) * 2 - 1) * 0.05
    shift = (torch.rand(b, 2, generator=gen) * 2 - 1) * 2 * 2 / x.shape[-1]
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, shift[:, 0]], 1),
                         torch.stack([sin * flip, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x + 1, grid, align_corners=False, padding_mode="zeros") - 1  # background stays black


def train_classifier(x, y, seed, epochs, weights=None, augment=False):
    torch.manual_seed(seed)
    model = AntiCausalPredictor(GRAPH, None, x.shape[1], (16, 32, 64))
    opt = torch.optim.AdamW(model.parameters(), lr=2e-3)
    g = torch.Generator().manual_seed(seed)
    for _ in range(epochs):
        order = (torch.multinomial(weights, len(y), replacement=True, generator=g) if weights is not None
                 else torch.randperm(len(y), generator=g))
        for a in range(0, len(order), 64):
            b = order[a:a + 64]
            xb = classic_augment(x[b], g) if augment else x[b]
            loss = F.cross_entropy(model.raw(xb)[0], y[b].long())
            opt.zero_grad()
            loss.backward()
            opt.step()
    return model.eval()


def lesion_probability(model, x):
    with torch.no_grad():
        return torch.cat([model.raw(x[a:a + 256])[0].softmax(-1)[:, 1] for a in range(0, len(x), 256)])


def scores(model, x, y):
    """(balanced accuracy, AUROC, sensitivity, specificity) on x with lesion labels y."""
    p = lesion_probability(model, x)
    pred = (p > 0.5).float()
    sens, spec = (pred[y == 1] == 1).float().mean(), (pred[y == 0] == 0).float().mean()
    pos, neg = p[y == 1], p[y == 0]  # AUROC = P(score of a positive > score of a negative)
    auroc = ((pos[:, None] > neg[None]).float().mean() + 0.5 * (pos[:, None] == neg[None]).float().mean())
    return (0.5 * (sens + spec)).item(), auroc.item(), sens.item(), spec.item()


def lesion_grid(pipe, world, opts, path, n=6, seeds=4):
    """Lesion-free sources with do(lesion=1) under several seeds, then lesion sources with do(lesion=0)."""
    x, labels, _ = images(world, 400, seed=5)
    blocks = []
    for source, do, k in ((0, "lesion=1", seeds), (1, "lesion=0", 1)):
        idx = torch.nonzero(labels["lesion"] == source).flatten()[:n]
        sub = {name: v[idx] for name, v in labels.items()}
        cols = [x[idx]] + [counterfactuals(pipe, x[idx], sub, do, replace(opts, seed=s))[0] for s in range(k)]
        blocks.append(grid_image(cols, ["source"] + [f"{do} seed {s}" for s in range(k)]))
    save_png(stack_vertical(blocks), path)


def other_readings(predictor, images: dict, labels):
    """The non-lesion nodes' readings on each of ``images`` ({row: (N, C, H, W)}): the sources (identity), their
    reconstructions (do nothing, through the same pipeline), the counterfactuals and the world's true counterfactuals
    (what a real lesion alone does to the predictor). Per node and row: the mean |reading - label| (``identity_se``:
    the standard error of the identity row's mean) and the mean |shift| of the reading from the source's
    (``*_shift``). The identity row's noise is the predictor's own error on real images: a counterfactual is within it
    when its shift is smaller (``within_noise``)."""
    with torch.no_grad():
        reads = {row: predictor.predict(x) for row, x in images.items()}
    out = {}
    for n in predictor.graph.order:
        if n == "lesion":
            continue
        err = {row: (r[n] - labels[n].float()).abs() for row, r in reads.items()}
        out[n] = {row: round(e.mean().item(), 4) for row, e in err.items()}
        out[n]["identity_se"] = round(err["identity"].std().item() / len(err["identity"]) ** 0.5, 4)
        for row in ("counterfactual", "truth"):
            out[n][f"{row}_shift"] = round((reads[row][n] - reads["identity"][n]).float().abs().mean().item(), 4)
        out[n]["within_noise"] = out[n]["counterfactual_shift"] < out[n]["identity"]
    return out


ORDER = ["(a)", "(b)", "(b2)", "(b3)", "(b4)", "(c)", "(d)", "(e)", "(e2)", "(b*)"]
NEEDS_COUNTERFACTUALS = {"(b)", "(b2)", "(b3)", "(b4)", "(b*)"}


def classify(name, xs, ys, w, aug, args, x_test, y_test) -> dict:
    """One training set's row: a classifier per seed, scored on the balanced test set."""
    res = [scores(train_classifier(xs, ys, s, args.epochs, w, aug), x_test, y_test) for s in range(args.seeds)]
    t = torch.tensor(res)
    share = ys.mean() if w is None else (w * ys).sum() / w.sum()  # as the classifier draws them
    row = {"training set": name, "n": len(ys), "lesion share": round(share.item(), 3),
           "balanced_accuracy_mean": round(t[:, 0].mean().item(), 4),
           "balanced_accuracy_std": round(t[:, 0].std().item(), 4),
           "auroc_mean": round(t[:, 1].mean().item(), 4), "auroc_std": round(t[:, 1].std().item(), 4),
           "sensitivity": round(t[:, 2].mean().item(), 3), "specificity": round(t[:, 3].mean().item(), 3)}
    print(row, flush=True)
    return row


def counterfactual_part(pipe, world, opts, args, x, labels, exo, src, reference):
    """The counterfactual rows' training sets and what the reference classifier and predictor read in them."""
    cf_y = torch.ones(len(src))
    cf_x, _ = counterfactuals(pipe, x[src], {k: v[src] for k, v in labels.items()}, "lesion=1", opts)
    recon = counterfactuals(pipe, x[src], {k: v[src] for k, v in labels.items()}, {}, opts)[0]  # `augment --pairs`
    cf_rate = (lesion_probability(reference, cf_x) > 0.5).float().mean().item()
    src_rate = (lesion_probability(reference, x[src]) > 0.5).float().mean().item()
    pos = torch.nonzero(labels["lesion"] == 1).flatten()
    removed_x, _ = counterfactuals(pipe, x[pos], {k: v[pos] for k, v in labels.items()}, "lesion=0", opts)
    removal_rate = (lesion_probability(reference, removed_x) <= 0.5).float().mean().item()
    _, true_cf = world.counterfactual({k: v[src] for k, v in exo.items()}, {k: v[src] for k, v in labels.items()},
                                      "lesion=1")
    true_cf = to_unit(true_cf)  # the same sources, rendered with their own lesion site: an upper bound
    predictor = AntiCausalPredictor.from_checkpoint(args.predictor)
    others = other_readings(predictor, {"identity": x[src], "reconstruction": recon, "counterfactual": cf_x,
                                        "truth": true_cf}, {k: v[src] for k, v in labels.items()})
    lesion_grid(pipe, world, opts, Path(args.out).with_name("lesion_grid.png"))
    y = labels["lesion"]
    pairs_x, pairs_y = torch.cat([x, cf_x, recon]), torch.cat([y, cf_y, torch.zeros(len(recon))])
    w_real = torch.where(y == 1, len(cf_y) / (y == 1).sum(), 1.0)  # real lesions drawn as often as all the cfs
    w_pairs = torch.cat([w_real, torch.ones(len(cf_y) + len(recon))])
    sets = {"(b) + counterfactuals to 50 %": (torch.cat([x, cf_x]), torch.cat([y, cf_y]), None, False),
            "(b2) + counterfactuals and their reconstructions (--pairs)": (pairs_x, pairs_y, None, False),
            "(b3) (b2) + flips and small affine": (pairs_x, pairs_y, None, True),
            "(b4) (b3) + the real rare class oversampled": (pairs_x, pairs_y, w_pairs, True),
            "(b*) + true counterfactuals (oracle)": (torch.cat([x, true_cf]), torch.cat([y, cf_y]), None, False)}
    meta = {"config": opts.asdict(), "cf_lesion_rate": round(cf_rate, 4), "source_lesion_rate": round(src_rate, 4),
            "removal_rate": round(removal_rate, 4), "removal_n": len(pos), "other_node_readings": others,
            "predictor": args.predictor}
    return sets, meta


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--checkpoint", default="brain32")
    ap.add_argument("--predictor", default="benchmarks/predictors/brain32.ckpt")
    ap.add_argument("--n", type=int, default=2000)
    ap.add_argument("--test-per-class", type=int, default=200)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--seeds", type=int, default=3)
    add_config_args(ap)
    ap.add_argument("--reference-per-class", type=int, default=1500)
    ap.add_argument("--rows", nargs="*", choices=sorted(set(ORDER) - NEEDS_COUNTERFACTUALS),
                    help="rerun only these rows and merge them into --out's table")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "augment.json"))
    args = ap.parse_args()
    if args.rows and not Path(args.out).is_file():
        raise SystemExit(f"--rows merges into an existing table; {args.out} does not exist (run without --rows)")
    t0 = time.perf_counter()
    opts = config_for(args.checkpoint, args, steps=args.steps, batch_size=64)
    pipe = CounterfactualPipeline.from_checkpoint(args.checkpoint, opts)
    world = get_world("brain", pipe.model.image_size)
    x, labels, exo = images(world, args.n, seed=0)
    x_test, y_test = balanced_test(world, args.test_per_class, seed=99)
    src = sources(labels, world.graph)
    x_ref, y_ref = balanced_test(world, args.reference_per_class, seed=7)
    reference = train_classifier(x_ref, y_ref, 0, args.epochs)  # seeded; the pipeline draws from its own generators
    sets, meta = {}, {}
    if not args.rows:
        pipe.site_banks = site_banks(args.checkpoint, opts)
        sets, meta = counterfactual_part(pipe, world, opts, args, x, labels, exo, src, reference)
    pasted, fallbacks = copy_pasted(world, x, labels, exo, src)
    y, cf_y = labels["lesion"], torch.ones(len(src))
    rare = (y == 1).float().mean().item()
    w_over = torch.where(y == 1, 0.5 / rare, 0.5 / (1 - rare))
    sets.update({"(a) imbalanced": (x, y, None, False), "(c) oversampled to 50 %": (x, y, w_over, False),
                 "(d) oversampled + flips and small affine": (x, y, w_over, True),
                 "(e) + copy-paste lesions to 50 %": (torch.cat([x, pasted]), torch.cat([y, cf_y]), None, False),
                 "(e2) (e) + flips and small affine": (torch.cat([x, pasted]), torch.cat([y, cf_y]), None, True)})
    chosen = args.rows or ORDER
    rows = [classify(name, *sets[name], args, x_test, y_test)
            for key in chosen for name in sets if name.split()[0] == key]
    reference_accuracy = round(scores(reference, x_test, y_test)[0], 4)
    meta.update({"paste_lesion_rate": round((lesion_probability(reference, pasted) > 0.5).float().mean().item(), 4),
                 "paste_fallbacks": fallbacks})
    if args.rows:  # the other rows and the counterfactual readings stay as measured before
        old = json.loads(Path(args.out).read_text())
        meta = {**old["meta"], **meta, "rows_rerun": {
            "rows": args.rows, "command": rerun_command(), "commit": commit(),
            "seconds": round(time.perf_counter() - t0), "reference_balanced_accuracy": reference_accuracy}}
        kept = [r for r in old["rows"] if r["training set"].split()[0] not in args.rows]
        rows = sorted(kept + rows, key=lambda r: ORDER.index(r["training set"].split()[0]))
    else:
        meta.update({"reference_balanced_accuracy": reference_accuracy, "checkpoint": args.checkpoint,
                     "n": args.n, "rare_share": round(rare, 4),
                     "counterfactuals": len(src), "test": f"{args.test_per_class} per class", "seeds": args.seeds,
                     "epochs": args.epochs, "command": rerun_command(), "commit": commit(),
                     "seconds": round(time.perf_counter() - t0, 1)})
    acc = {r["training set"].split()[0]: r["balanced_accuracy_mean"] for r in rows}
    baseline = max(acc["(c)"], acc["(d)"])
    meta["minus_best_of_c_d"] = {k: round(acc[k] - baseline, 4) for k in ("(b)", "(b2)", "(b3)", "(b4)")}
    meta["counterfactuals_minus_copy_paste"] = {"(b) - (e)": round(acc["(b)"] - acc["(e)"], 4),
                                                "(b3) - (e2)": round(acc["(b3)"] - acc["(e2)"], 4)}
    meta["targets"] = ("cf_lesion_rate >= 0.9, removal_rate >= 0.9, other nodes within noise, a counterfactual "
                       "recipe (b)-(b4) beats (c) and (d) by >= 0.05; (b) beats copy-paste (e) by >= 0.02")
    atomic_write_text(args.out, json.dumps({"meta": meta, "rows": rows}, indent=2))
    md = markdown(meta, rows)
    atomic_write_text(Path(args.out).with_suffix(".md"), md)
    print(md)


def markdown(meta: dict, rows: list[dict]) -> str:
    md = [f"| training set | n | lesion share | balanced accuracy (mean ± std, {meta['seeds']} seeds) | AUROC | "
          "sensitivity | specificity |", "|---|---|---|---|---|---|---|"]
    md += [f"| {r['training set']} | {r['n']} | {r['lesion share']} | {r['balanced_accuracy_mean']:.3f} ± "
           f"{r['balanced_accuracy_std']:.3f} | {r['auroc_mean']:.3f} ± {r['auroc_std']:.3f} | "
           f"{r['sensitivity']:.3f} | {r['specificity']:.3f} |" for r in rows]
    md += ["", f"Reference classifier (balanced accuracy {meta['reference_balanced_accuracy']:.3f}): lesion seen in "
           f"**{meta['cf_lesion_rate']:.1%}** of the do(lesion=1) counterfactuals ({meta['source_lesion_rate']:.1%} "
           f"of their sources) and **{meta['paste_lesion_rate']:.1%}** of the copy-pasted images "
           f"({meta['paste_fallbacks']} of {meta['counterfactuals']} pastes found no site within 16 grey "
           f"levels of their donor's tissue and took the closest); **{meta['removal_rate']:.1%}** of do(lesion=0) "
           f"of {meta['removal_n']} lesion images read lesion-free.", "",
           *([f"Rows {', '.join(meta['rows_rerun']['rows'])} rerun at {meta['rows_rerun']['commit']} "
              f"(`{meta['rows_rerun']['command']}`); the copy-paste reading is by that run's reference classifier "
              f"(balanced accuracy {meta['rows_rerun']['reference_balanced_accuracy']:.3f}).", ""]
             if "rows_rerun" in meta else []),
           f"Other nodes, mean |predictor reading − label| on the {meta['counterfactuals']} sources (predictor "
           f"`{meta['predictor']}`): the sources themselves (identity: the predictor's noise, ± its standard error), "
           "their reconstructions (no intervention, same pipeline), do(lesion=1) and the world's true do(lesion=1); "
           "then the mean |shift| of the reading from the source's; within noise: the counterfactual's shift is below "
           "the identity row's error:", "",
           "| other node | identity | reconstruction | counterfactual | truth | shift: counterfactual | shift: truth "
           "| within noise |", "|---|---|---|---|---|---|---|---|"]
    md += [f"| {n} | {v['identity']:.3g} ± {v['identity_se']:.2g} | {v['reconstruction']:.3g} | "
           f"{v['counterfactual']:.3g} | {v['truth']:.3g} | {v['counterfactual_shift']:.3g} | {v['truth_shift']:.3g} "
           f"| {'yes' if v['within_noise'] else '**no**'} |" for n, v in meta["other_node_readings"].items()]
    md.append(f"\n{meta}")
    return "\n".join(md) + "\n"


if __name__ == "__main__":
    main()
