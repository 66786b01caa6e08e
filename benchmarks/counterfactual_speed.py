"""Counterfactual throughput on the CPU: images/s of each shipped model at its recommended settings, beside the
network-only limit, and (``--compare REV``) beside another revision's code in the same run.

Run: ``python benchmarks/counterfactual_speed.py [--n 16] [--repeats 2] [--compare REV]``; prints a table and writes
benchmarks/results/counterfactual_speed.json.

Each measurement is ``causaldiff counterfactual``'s path (:func:`causaldiff.inference.batch.counterfactuals`) on n
fresh world images, per intervention, timed after one warm-up call. The network calls it makes are counted (their
batch sizes recorded) and then replayed alone on the same shapes: the network-only limit is the images/s the path
would reach if everything but the network took no time. ``--compare REV`` checks REV's package out into a temporary
worktree; each repeat runs this tree and REV's in turn, one process each (one torch job at a time), on the same
images, and the table gives the speed ratio and the outputs' mean |difference| in grey levels (of 255).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MODELS = {  # model: (world, interventions): a continuous node, a discrete one, and brain32's transplanted finding
    "pendulum32": ("pendulum", ["light_angle+=20", "pendulum_angle-=20"]),
    "morpho32": ("morpho", ["thickness+=1", "digit=3"]),
    "brain32": ("brain", ["age+=10", "sex=1", "lesion=1"]),
}


def worker(models: list[str], n: int, out: str) -> None:
    """Measure in this process with whichever ``causaldiff`` is first on sys.path; save rows and outputs to ``out``."""
    import warnings

    import torch

    from causaldiff.data.worlds import get_world
    from causaldiff.inference.batch import counterfactuals
    from causaldiff.inference.config import CounterfactualConfig
    from causaldiff.inference.pipeline import CounterfactualPipeline

    warnings.simplefilter("ignore")  # extrapolation warnings: this measures speed
    rows, outputs = [], {}
    for name in models:
        world_name, dos = MODELS[name]
        config = CounterfactualConfig.for_checkpoint(name)
        config = CounterfactualConfig(**{**config.asdict(), "device": "cpu", "batch_size": n})
        pipe = CounterfactualPipeline.from_checkpoint(name, config)
        world = get_world(world_name, pipe.model.image_size)
        exo, labels = world.sample(n, seed=123)
        x = world.render(exo, labels).float() / 127.5 - 1
        calls: list[tuple] = []
        eps = pipe.model.eps

        def counted(x_t, t, cond, eps=eps, calls=calls):
            calls.append((x_t.shape, t.shape, cond.shape))
            return eps(x_t, t, cond)

        pipe.model.eps = counted
        counterfactuals(pipe, x[:2], labels and {k: v[:2] for k, v in labels.items()}, dos[0], config)  # warm-up
        for do in dos:
            calls.clear()
            t0 = time.perf_counter()
            cf_x, _ = counterfactuals(pipe, x, labels, do, config)
            seconds = time.perf_counter() - t0
            shapes = list(calls)
            t0 = time.perf_counter()
            bf16 = getattr(pipe, "precision", "") == "bfloat16"  # a revision before the precision setting: float32
            with torch.no_grad(), torch.autocast("cpu", torch.bfloat16, enabled=bf16):
                for xs, ts, cs in shapes:
                    eps(torch.randn(xs), torch.full(ts, 500), torch.randn(cs))
            network = time.perf_counter() - t0
            rows.append({"model": name, "do": do, "n": n, "seconds": seconds, "network_seconds": network,
                         "calls": len(shapes), "call_images": sum(s[0][0] for s in shapes)})
            outputs[f"{name}:{do}"] = cf_x
    torch.save({"rows": rows, "outputs": outputs, "config": {m: CounterfactualConfig.for_checkpoint(m).asdict()
                                                            for m in models}}, out)


def run_tree(tree: Path, models: list[str], n: int, scratch: Path) -> dict:
    import torch

    out = scratch / f"{tree.name}.pt"
    env = {**os.environ, "PYTHONPATH": str(tree)}
    subprocess.run([sys.executable, __file__, "--worker", "--n", str(n), "--models", *models, "--out", str(out)],
                   check=True, env=env, cwd=tree)
    return torch.load(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=16, help="images per intervention")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--models", nargs="*", default=list(MODELS))
    ap.add_argument("--compare", help="a git revision whose package is measured beside this tree's")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "counterfactual_speed.json"))
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args.models, args.n, args.out)
    from common import commit, rerun_command  # benchmarks/common.py

    from causaldiff.io import atomic_write_text

    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        trees = {"this": ROOT}
        if args.compare:
            trees[args.compare] = scratch / "compare"
            subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(trees[args.compare]),
                            args.compare], check=True, capture_output=True)
        try:
            runs = {k: [] for k in trees}
            for _ in range(args.repeats):
                for key, tree in trees.items():  # interleaved: drift hits both alike
                    runs[key].append(run_tree(tree, args.models, args.n, scratch))
        finally:
            if args.compare:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees[args.compare])],
                               check=True)
    table = summarise(runs, args.compare)
    meta = {"command": rerun_command(), "commit": commit(), "threads": int(os.environ.get("OMP_NUM_THREADS", 0))
            or os.cpu_count(), "repeats": args.repeats, "compare": args.compare,
            "config": runs["this"][0]["config"]}
    atomic_write_text(args.out, json.dumps({"meta": meta, "rows": table}, indent=2))


def summarise(runs: dict[str, list[dict]], compare: str | None) -> list[dict]:
    """One row per (model, intervention): min / median / spread of images/s over repeats, the network-only limit,
    and against ``compare``: the speed ratio of medians and the outputs' mean |difference| in grey levels."""
    from common import spread_stats  # benchmarks/common.py

    table = []
    head = f"{'model':<11}{'do':<20}{'calls':>6}{'img/s':>8}{'spread':>8}{'net-only':>9}{'limit x':>8}"
    head += f"{'then':>8}{'speed-up':>9}{'diff':>7}" if compare else ""
    print(head)
    for i, row in enumerate(runs["this"][0]["rows"]):
        key = f"{row['model']}:{row['do']}"
        speed = [row["n"] / r["rows"][i]["seconds"] for r in runs["this"]]
        limit = [row["n"] / r["rows"][i]["network_seconds"] for r in runs["this"]]
        out = {"model": row["model"], "do": row["do"], "n": row["n"], "calls": row["calls"],
               "call_images": row["call_images"], "images_per_s": spread_stats(speed),
               "network_only_images_per_s": spread_stats(limit),
               "time_over_network_only": round(statistics.median(limit) / statistics.median(speed), 3)}
        line = (f"{row['model']:<11}{row['do']:<20}{row['calls']:>6}{out['images_per_s']['median']:>8.2f}"
                f"{out['images_per_s']['spread']:>8.2f}{out['network_only_images_per_s']['median']:>9.2f}"
                f"{out['time_over_network_only']:>8.2f}")
        if compare:
            then = [row["n"] / r["rows"][i]["seconds"] for r in runs[compare]]
            diff = (runs["this"][0]["outputs"][key] - runs[compare][0]["outputs"][key]).abs().mean().item() * 127.5
            then_limit = [row["n"] / r["rows"][i]["network_seconds"] for r in runs[compare]]
            out.update({"then_images_per_s": spread_stats(then), "then_calls": runs[compare][0]["rows"][i]["calls"],
                        "then_call_images": runs[compare][0]["rows"][i]["call_images"],
                        "then_network_only_images_per_s": spread_stats(then_limit),
                        "speed_up": round(statistics.median(speed) / statistics.median(then), 3),
                        "mean_abs_diff_grey_levels": round(diff, 4)})
            line += f"{out['then_images_per_s']['median']:>8.2f}{out['speed_up']:>9.2f}{diff:>7.3f}"
        print(line, flush=True)
        table.append(out)
    print("img/s: counterfactual images a second (median of repeats; spread = max - min); net-only: the same network "
          "calls alone; limit x: time over the network-only time" + ("; then / speed-up / diff: the compared "
                                                                     "revision's img/s, the ratio, mean |diff| of "
                                                                     "outputs in grey levels" if compare else ""))
    return table


if __name__ == "__main__":
    main()
