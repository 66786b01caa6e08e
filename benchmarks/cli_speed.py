"""Start-up time of the ``causaldiff`` command: ``causaldiff --help`` and ``causaldiff models``, each run as a fresh
process, interleaved, median / min / spread of ``--repeats``. Target: ``--help`` under 2 s on the CPU.

Run: ``python benchmarks/cli_speed.py [--repeats 5]``; prints a table and writes benchmarks/results/cli_speed.json.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import time
from pathlib import Path

from common import commit, rerun_command  # benchmarks/common.py

COMMANDS = {"--help": ["--help"], "models": ["models"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "cli_speed.json"))
    args = ap.parse_args()
    exe = shutil.which("causaldiff")
    if exe is None:
        raise SystemExit("error: the causaldiff command is not installed (pip install -e .)")
    times: dict[str, list[float]] = {name: [] for name in COMMANDS}
    for _ in range(args.repeats):  # interleaved: a slow moment of the machine hits every command alike
        for name, argv in COMMANDS.items():
            t0 = time.perf_counter()
            subprocess.run([exe, *argv], check=True, capture_output=True)
            times[name].append(time.perf_counter() - t0)
    rows = {name: {"median_s": round(statistics.median(t), 3), "min_s": round(min(t), 3),
                   "spread": round((max(t) - min(t)) / statistics.median(t), 3)} for name, t in times.items()}
    print("| command | median s | min s | spread |\n|---|---|---|---|")
    for name, r in rows.items():
        print(f"| causaldiff {name} | {r['median_s']} | {r['min_s']} | {r['spread']:.0%} |")
    result = {"meta": {"command": rerun_command(), "commit": commit(), "repeats": args.repeats,
                       "target": "causaldiff --help < 2 s (median)"}, "rows": rows}
    Path(args.out).write_text(json.dumps(result, indent=1) + "\n")


if __name__ == "__main__":
    main()
