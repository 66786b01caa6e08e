"""Peers side by side: causaldiff beside the models a user would pick instead, on the same images, read by the same
Evaluator on the same items and interventions, beside doing nothing (identity) and the true counterfactual.

Rows per world: causaldiff at the shipped model's recommended settings; *no-abduction*, the published CausalDiffAE
inference (x_T by forward-noising x); DeepSCM's conditional VAE and a small hierarchical VAE in causal-gen's manner
(benchmarks/peers/), each decoded from its posterior latents (``vae``, ``hvae``) and with the image's own Gaussian
noise abducted too, as both papers do (``+u``; a null intervention then returns x exactly). The peers train on the
shipped model's training split for as many images as it saw (IMAGES) and use its attribute SCM for the labels, so
every row is asked for the same counterfactual labels. Peers are trained into ``--workdir`` when missing, else reused.

  python benchmarks/peers.py --worlds pendulum --n 128

Writes benchmarks/results/peers.json (every metric), peers.md (one compact table, then each world's full one) and
peers_<world>.png (input, truth and every row's counterfactual of two items per intervened node).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch
from common import add_config_args, commit, config_for, rerun_command, site_banks  # benchmarks/common.py
from peers.base import PeerPipeline
from peers.train import PEERS, load_peer, train_peer

from causaldiff.evaluation.evaluate import Evaluator, eval_data
from causaldiff.evaluation.predictor import AntiCausalPredictor
from causaldiff.evaluation.report import markdown
from causaldiff.inference.batch import counterfactuals
from causaldiff.inference.inputs import checkpoint_datamodule
from causaldiff.io import atomic_write_text
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.viz import grid_image, save_png

ROOT = Path(__file__).parent.parent
RESULTS = ROOT / "benchmarks" / "results"
PREDICTORS = ROOT / "benchmarks" / "predictors"
IMAGES = {"pendulum": 256_000, "morpho": 352_000, "brain": 608_000}  # images each shipped model saw (models.yaml)
COLUMNS = ["gain mean", "true-CF L1 / identity", "composition@1", "composition@10", "reversibility@1",
           "realism FD", "train images", "train CPU min"]


def peer_rows(world: str, ckpt: Path, scm, args) -> tuple[dict, dict]:
    """({row name: PeerPipeline}, {peer: its training record}), training the peers that ``--workdir`` lacks."""
    rows, records = {}, {}
    for kind in PEERS:
        path = Path(args.workdir) / world / f"{kind}.pt"
        if not path.is_file():
            train_peer(kind, checkpoint_datamodule(ckpt), args.images or IMAGES[world], path)
        model, record = load_peer(path)
        records[kind] = {k: record[k] for k in ("images", "batch_size", "seconds", "skipped")}
        records[kind]["parameters"] = sum(p.numel() for p in model.parameters())
        rows[kind], rows[f"{kind}+u"] = PeerPipeline(model, scm, False), PeerPipeline(model, scm, True)
    return rows, records


def run_world(world: str, args) -> dict:
    ckpt = ROOT / "causaldiff" / "pretrained" / f"{world}32.ckpt"
    model = CausalDiffAE.from_checkpoint(ckpt)
    peers, records = peer_rows(world, ckpt, model.scm, args)
    predictor = AntiCausalPredictor.from_checkpoint(PREDICTORS / f"{world}32.ckpt")
    opts = config_for(ckpt, args, steps=args.steps, batch_size=256)
    t0 = time.perf_counter()
    ev = Evaluator(model, predictor, eval_data(ckpt, args.n), opts, args.cycles, ["causaldiff", "no-abduction"],
                   progress=False, site_banks=site_banks(ckpt, opts), peers=peers, reversibility_cycles=1,
                   bins=args.bins)
    report = ev.run()
    save_png(grid(ev, peers), Path(args.results) / f"peers_{world}.png")
    report["meta"].update({"model": str(ckpt.relative_to(ROOT)), "peers": records,
                           "discrete": [n for n in model.graph.order if model.graph[n].discrete],
                           "evaluation_seconds": round(time.perf_counter() - t0, 1),
                           "commit": commit(), "command": rerun_command()})
    return report


def grid(ev: Evaluator, peers: dict, per_node: int = 2):
    """Columns input, truth, causaldiff and each peer; rows: the first ``per_node`` items of each node's
    interventions, the nodes in the graph's order."""
    rows = {"causaldiff": ev.pipeline("causaldiff"), **peers}
    cols: dict[str, list] = {"input": [], "truth": [], **{name: [] for name in rows}}
    for j, (node, idx, vals) in enumerate(ev.groups):
        idx, vals = idx[:per_node], vals[:per_node]
        x, labels = ev.data.x[idx], {k: v[idx] for k, v in ev.data.labels.items()}
        cols["input"].append(x)
        cols["truth"].append(ev.truths[j][1][:per_node])
        for name, pipe in rows.items():
            cols[name].append(counterfactuals(pipe, x, labels, {node: vals}, ev.opts, ("grid", j))[0])
    return grid_image([torch.cat(c) for c in cols.values()], list(cols), min_cell=48)


def _cell(v, fmt: str = "{:.3f}") -> str:
    return "—" if v is None else fmt.format(0.0 if abs(v) < 5e-4 else v)  # no "-0.000"


def compact(parts: dict[str, dict]) -> list[str]:
    """One table: per world, the references and every row on the headline metrics."""
    lines = ["| world | row | " + " | ".join(COLUMNS) + " |", "|---" * (len(COLUMNS) + 2) + "|"]
    for world, rep in parts.items():
        cycles, peers = str(rep["meta"]["cycles"]), rep["meta"]["peers"]
        rows = {**{f"*{k}*": v for k, v in rep["references"].items()}, **rep["variants"]}
        for name, v in rows.items():
            g = rep["gains"].get(name, {})
            kind = name.removesuffix("+u")
            train = peers.get(kind, {})
            cells = [_cell(g.get("effect_gain_mean")), _cell(g.get("true_cf_l1_ratio")),
                     _cell(v["composition"].get("1")), _cell(v["composition"].get(cycles)),
                     _cell(v["reversibility"].get("1")), _cell(v.get("realism_fd")),
                     _cell(train.get("images", IMAGES[world] if name in ("causaldiff", "no-abduction") else None),
                           "{:,}"), _cell(train["seconds"] / 60 if train else None, "{:.0f}")]
            lines.append(f"| {world} | {name} | " + " | ".join(cells) + " |")
    return lines


def effectiveness(rep: dict) -> list[str]:
    """The benchmark's own effectiveness: per intervened attribute, MAE in its units (accuracy for a class)."""
    nodes, graph = rep["meta"]["nodes"], rep["meta"].get("discrete", [])
    heads = [f"{n} ({'accuracy' if n in graph else 'MAE'})" for n in nodes]
    lines = ["| row | " + " | ".join(heads) + " |", "|---" * (len(nodes) + 1) + "|"]
    rows = {**{f"*{k}*": v for k, v in rep["references"].items()}, **rep["variants"]}
    for name, v in rows.items():
        lines.append(f"| {name} | " + " | ".join(_cell(v["effectiveness"].get(n, {}).get(n)) for n in nodes) + " |")
    return lines


def write(parts: dict[str, dict], results: Path) -> None:
    """peers.json and peers.md from ``parts`` and the worlds already there that were not rerun."""
    path = results / "peers.json"
    parts = {**(json.loads(path.read_text()) if path.is_file() else {}), **parts}
    atomic_write_text(path, json.dumps(parts, indent=1))
    lines = ["# Peers side by side", "",
             "Each world's command and commit are in peers.json. Gain: 1 = the truth, 0 = doing nothing; L1 on the "
             "0–255 scale; realism FD: Fréchet distance of the reference predictor's features (not Inception's) to "
             "the real images'. A continuous do() lands in another of 9 equal bins of the attribute's range, a "
             "discrete one switches the class. causaldiff's training: causaldiff/pretrained/models.yaml. The peers' "
             "CPU minutes are this machine's (2 cores).", "", *compact(parts), ""]
    for world, rep in parts.items():
        m = rep["meta"]
        lines += [f"## {world}", "", f"n = {m['n']} held-out items, {m['config']['steps']} DDIM steps for the "
                  f"diffusion rows, {m['bins']} bins; `{m['command']}` at {m['commit']}.", "",
                  "Effectiveness of the intervened attribute (the benchmark's definition):", "",
                  *effectiveness(rep), "", markdown(rep)]
    atomic_write_text(results / "peers.md", "\n".join(lines) + "\n")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--worlds", nargs="*", default=list(IMAGES), choices=list(IMAGES))
    add_config_args(ap)
    ap.add_argument("--n", type=int, default=128, help="held-out items per world")
    ap.add_argument("--steps", type=int, default=50, help="DDIM steps of the diffusion rows (as quality.py's)")
    ap.add_argument("--cycles", type=int, default=10, help="null interventions for composition")
    ap.add_argument("--bins", type=int, default=9, help="a continuous do() lands in another of this many bins of the "
                    "range (0: another item's value, as benchmarks/quality.py draws)")
    ap.add_argument("--images", type=int, help="train the peers on this many images (default: the shipped model's)")
    ap.add_argument("--workdir", default="runs/peers", help="trained peers are reused from here")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    torch.manual_seed(0)
    parts = {}
    for world in args.worlds:
        parts[world] = run_world(world, args)
        write(parts, Path(args.results))  # each world's result lands as soon as it is measured
        print(f"{world}: {parts[world]['meta']['evaluation_seconds']} s")
    print("\n".join(compact(parts)))


if __name__ == "__main__":
    main()
