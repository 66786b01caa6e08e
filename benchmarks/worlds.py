"""Rendering speed of each procedural world (images/s) at 32 and 64 px; target: 10,000 images at 32 px < 30 s.

Run: ``python benchmarks/worlds.py [--n 10000]``; prints a table and writes benchmarks/results/worlds.json.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from causaldiff.data.worlds import WORLDS, get_world
from causaldiff.io import atomic_write_text


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "worlds.json"))
    args = ap.parse_args()
    rows = []
    for name in WORLDS:
        for size in (32, 64):
            w = get_world(name, size)
            w.render(*w.sample(8, seed=0))  # warm caches (glyph fields)
            t0 = time.perf_counter()
            exo, labels = w.sample(args.n, seed=0)
            w.render(exo, labels)
            dt = time.perf_counter() - t0
            rows.append({"world": name, "size": size, "n": args.n, "seconds": round(dt, 3),
                         "images_per_s": round(args.n / dt, 1)})
    print(f"{'world':<10}{'size':>6}{'n':>8}{'seconds':>10}{'images/s':>12}")
    for r in rows:
        print(f"{r['world']:<10}{r['size']:>6}{r['n']:>8}{r['seconds']:>10.2f}{r['images_per_s']:>12.0f}")
    meta = {"torch_threads": torch.get_num_threads(), "target": "10,000 images at 32 px in < 30 s"}
    atomic_write_text(args.out, json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
