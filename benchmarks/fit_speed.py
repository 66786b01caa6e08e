"""Training throughput of a running ``causaldiff fit --config pendulum32`` beside another revision's, and the effect
gain each fit reaches at the same image budget.

Run: ``python benchmarks/fit_speed.py --compare REV [--images 32000] [--repeats 2]``; prints a table and writes
benchmarks/results/fit_speed.json.

Each repeat runs this tree's fit and REV's in turn (one torch job at a time), each its own shipped config over
``--images`` images (``max_steps`` = images / the config's batch size, its learning-rate schedule over them),
then this tree's quality report on its last checkpoint (``--report-n`` held-out items, 20 steps, the default
settings, one predictor fitted once and shared). A callback (:mod:`fit_clock`) stamps every training step: steady
images/s is over the steps after the first 10 %, validation, checkpoints and grids included; start-up and the
report are not. The gain is the report's mean effect gain.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
CONFIG = "configs/pendulum32.yaml"


def run_fit(tree: Path, images: int, report_n: int, root: Path, predictor: Path) -> dict:
    """One fit of ``tree``'s pendulum32 config over ``images`` images, in ``root``: its steady images/s, and the mean
    gain of this tree's quality report on its last checkpoint."""
    batch = yaml.safe_load((tree / CONFIG).read_text())["data"]["batch_size"]
    clock = root / "clock.json"
    env = {**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT / 'benchmarks'}", "FIT_CLOCK": str(clock)}
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "causaldiff.cli", "fit", "--config", str(tree / CONFIG),
                    f"--trainer.max_steps={images // batch}", "--trainer.max_time=null",
                    f"--trainer.default_root_dir={root}", "--trainer.enable_progress_bar=false",
                    "--trainer.callbacks+=fit_clock.StepClock", "--report.n=0"],
                   check=True, env=env, cwd=tree, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - t0
    subprocess.run([sys.executable, "-m", "causaldiff.cli", "report", "--checkpoint",
                    str(root / "checkpoints" / "last.ckpt"), "--n", str(report_n), "--out", str(root / "report"),
                    *(["--predictor", str(predictor)] if predictor.exists() else [])],
                   check=True, cwd=ROOT, stdout=subprocess.DEVNULL)
    if not predictor.exists():
        shutil.copy(root / "report" / "predictor.ckpt", predictor)
    stamps = json.loads(clock.read_text())["stamps"]
    first = len(stamps) // 10
    report = json.loads((root / "report" / "report.json").read_text())
    return {"batch": batch, "steps": len(stamps), "images_per_s": batch * (len(stamps) - 1 - first)
            / (stamps[-1] - stamps[first]), "train_s": stamps[-1] - stamps[0], "fit_wall_s": wall,
            "global_step": report["global_step"], "effect_gain_mean": report["effect_gain_mean"],
            "effect_gain": report["effect_gain"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--compare", required=True, help="the git revision measured beside this tree")
    ap.add_argument("--images", type=int, default=32000, help="images each fit trains on")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--report-n", type=int, default=128, help="held-out items of each fit's quality report")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "fit_speed.json"))
    args = ap.parse_args()
    from common import commit, rerun_command, spread_stats  # benchmarks/common.py

    from causaldiff.io import atomic_write_text

    runs: dict[str, list[dict]] = {"this": [], args.compare: []}
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        trees = {"this": ROOT, args.compare: scratch / "compare"}
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(trees[args.compare]),
                        args.compare], check=True, capture_output=True)
        try:
            for i in range(args.repeats):
                for key, tree in trees.items():  # interleaved: drift hits both alike
                    runs[key].append(run_fit(tree, args.images, args.report_n, scratch / f"{i}_{len(runs[key])}"
                                             f"_{key}", scratch / "predictor.ckpt"))
                    r = runs[key][-1]
                    print(f"{key:<10}{r['batch']:>6}{r['steps']:>7}{r['images_per_s']:>9.1f}{r['train_s']:>9.0f}"
                          f"{r['effect_gain_mean']:>7.3f}", flush=True)
        finally:
            subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(trees[args.compare])],
                           check=True)
    rows = {key: {"images_per_s": spread_stats([r["images_per_s"] for r in rs]),
                  "effect_gain_mean": spread_stats([r["effect_gain_mean"] for r in rs]), "runs": rs}
            for key, rs in runs.items()}
    speed_up = rows["this"]["images_per_s"]["median"] / rows[args.compare]["images_per_s"]["median"]
    gain_change = rows["this"]["effect_gain_mean"]["median"] - rows[args.compare]["effect_gain_mean"]["median"]
    print(f"speed-up {speed_up:.2f}x, mean gain change {gain_change:+.3f} (medians over {args.repeats} repeats); "
          "columns: tree batch steps images/s(steady) train_s mean-gain")
    meta = {"command": rerun_command(), "commit": commit(), "compare": args.compare, "images": args.images,
            "report_n": args.report_n, "threads": os.cpu_count()}
    atomic_write_text(args.out, json.dumps({"meta": meta, "speed_up": round(speed_up, 3),
                                            "gain_change": round(gain_change, 4), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
