"""Test beds through the folder path, as a user would run them: each world exported by ``causaldiff data make`` and
fitted with the CPU template ``configs/custom_folder_cpu.yaml`` at its defaults (nothing chosen per bed), then read
by the fit's own quality report (settings chosen by its rule; n and steps the report's defaults). The truth comes
from the folder's world.yaml.

    python benchmarks/testbeds.py [--beds strokes bloom] [--n 10000] [--workdir runs/testbeds]

A bed whose folder or run exists is reused (its fit time read from ``fit_seconds.txt`` in the run). Writes
benchmarks/results/testbeds.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from pathlib import Path

from causaldiff.io import atomic_write_text

RESULTS = Path(__file__).parent / "results"
CHANNELS = {"pendulum": 3, "morpho": 1, "brain": 1, "strokes": 1, "bloom": 3}
TARGETS = {"mean gain": 0.9, "every gain": 0.8, "true-CF L1 / identity's": 0.5}


def run_bed(bed: str, n: int, work: Path) -> dict:
    folder, run = work / bed, work / f"{bed}_run"
    if not folder.exists():
        subprocess.run(["causaldiff", "data", "make", bed, "--n", str(n), "--size", "32", "--out", str(folder)],
                       check=True)
    report = run / "report" / "report.json"
    if not report.is_file():
        t0 = time.perf_counter()
        subprocess.run(["causaldiff", "fit", "--config", "custom_folder_cpu", f"--data.folder={folder}",
                        f"--data.folder_channels={CHANNELS[bed]}", f"--trainer.default_root_dir={run}",
                        "--trainer.enable_progress_bar=false"], check=True)
        (run / "fit_seconds.txt").write_text(f"{time.perf_counter() - t0:.0f}\n")
    rep = json.loads(report.read_text())
    gains = {k: v for k, v in rep["effect_gain"].items() if v is not None}
    seconds = run / "fit_seconds.txt"
    return {"bed": bed, "n_images": n, "global_step": rep["global_step"], "report_n": rep["n"],
            "report_steps": rep["config"]["steps"], "effect_gain": rep["effect_gain"],
            "effect_gain_mean": rep["effect_gain_mean"], "lowest_gain": min(gains.values()) if gains else None,
            "true_cf_l1_ratio": rep["true_cf_l1_ratio"], "chosen": (rep.get("choice") or {}).get("chosen"),
            "fit_seconds": float(seconds.read_text()) if seconds.is_file() else None,
            "meets": {"mean gain": (rep["effect_gain_mean"] or 0) >= TARGETS["mean gain"],
                      "every gain": bool(gains) and min(gains.values()) >= TARGETS["every gain"],
                      "true-CF L1 / identity's": (rep["true_cf_l1_ratio"] or 9) <= TARGETS["true-CF L1 / identity's"]}}


def markdown(rows: list[dict]) -> str:
    lines = ["# Test beds through the folder path", "",
             "`data make <world>` → `causaldiff fit --config custom_folder_cpu` (the template's defaults) → the fit's "
             "quality report (n held-out items, DDIM steps as given; settings chosen by the report's rule). Targets: "
             + ", ".join(f"{k} {'≤' if 'L1' in k else '≥'} {v}" for k, v in TARGETS.items()) + ".", "",
             "| bed | gain per node | mean gain | lowest | true-CF L1 / identity's | chosen settings | fit min | "
             "report n, steps | targets met |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        per = " / ".join(f"{k} {v:.2f}" if v is not None else f"{k} —" for k, v in r["effect_gain"].items())
        chosen = ", ".join(f"{k} {v}" for k, v in (r["chosen"] or {}).items()) or "—"
        minutes = f"{r['fit_seconds'] / 60:.0f}" if r["fit_seconds"] else "—"
        met = ", ".join(k for k, ok in r["meets"].items() if ok) or "none"
        lines.append(f"| {r['bed']} | {per} | {r['effect_gain_mean']:.2f} | {r['lowest_gain']:.2f} | "
                     f"{r['true_cf_l1_ratio']:.2f} | {chosen} | {minutes} | {r['report_n']}, {r['report_steps']} | "
                     f"{met} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--beds", nargs="*", default=["strokes", "bloom"], choices=list(CHANNELS))
    ap.add_argument("--n", type=int, default=10000, help="images per bed")
    ap.add_argument("--workdir", default="runs/testbeds")
    ap.add_argument("--results", default=str(RESULTS))
    args = ap.parse_args()
    rows = [run_bed(bed, args.n, Path(args.workdir)) for bed in args.beds]
    results = Path(args.results)
    atomic_write_text(results / "testbeds.json", json.dumps(rows, indent=2))
    atomic_write_text(results / "testbeds.md", markdown(rows))
    print(markdown(rows))


if __name__ == "__main__":
    main()
