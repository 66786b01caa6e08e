"""The inference settings a model is recommended with, chosen by measurement on held-out items and a rule fixed in
advance (as brain32's were chosen by hand):

1. the candidates that meet the project's quality targets: every intervened node's effect gain >= NODE_FLOOR and
   their mean >= MEAN_FLOOR (each intervention shows); if none does, the candidates whose lowest gain is within
   GAIN_TIE of the highest (gains that close are the same quality: 64 held-out items give each node about 13
   interventions, and a re-run within 0.03 is the project's own measure of "the same model");
2. then the lowest true-CF image L1 where the data knows the truth (a world, or a folder ``data make`` wrote), else
   the lowest L1 between the counterfactual and its input (the smallest change that moves every label: minimality).
"""

from __future__ import annotations

import dataclasses

from causaldiff.evaluation.evaluate import EvalData, Evaluator
from causaldiff.inference.config import CounterfactualConfig

NODE_FLOOR, MEAN_FLOOR = 0.8, 0.9  # the quality targets (benchmarks/quality.py, docs/results.md)
GAIN_TIE = 0.03  # lowest gains this close to the best tie when no candidate meets the targets
CANDIDATES = [{"inversion": inversion, "keep_unchanged": keep, "depth": depth}
              for inversion in ("ddim", "residual") for keep in (False, True) for depth in (1.0, 0.75)]


def measure_candidates(model, reader, data: EvalData, base: CounterfactualConfig, site_banks=None) -> list[dict]:
    """One row per candidate of :data:`CANDIDATES` at ``base``'s other settings: its gains and L1s on ``data``. One
    evaluator serves them all: the interventions, true counterfactuals and real features are computed once."""
    rows = []
    evaluator = Evaluator(model, reader, data, base, cycles=0, reversibility_cycles=0, variants=["causaldiff"],
                          progress=False, site_banks=site_banks)
    for candidate in CANDIDATES:
        evaluator.opts = dataclasses.replace(base, **candidate)  # the interventions depend only on the seed
        report = evaluator.run()
        g, row = report["gains"]["causaldiff"], report["variants"]["causaldiff"]
        measured = [v for v in g["effect_gain"].values() if v is not None]
        rows.append({**candidate, "effect_gain": g["effect_gain"], "effect_gain_mean": g["effect_gain_mean"],
                     "lowest_gain": min(measured) if measured else None, "true_cf_l1_ratio": g["true_cf_l1_ratio"],
                     "input_l1": row["input_l1"]})
    return rows


def choose(rows: list[dict]) -> dict:
    """The row the rule of this module picks (see its docstring)."""
    lowest = [r["lowest_gain"] if r["lowest_gain"] is not None else float("-inf") for r in rows]
    eligible = [r for r, low in zip(rows, lowest) if low >= NODE_FLOOR and r["effect_gain_mean"] >= MEAN_FLOOR] or \
               [r for r, low in zip(rows, lowest) if low >= max(lowest) - GAIN_TIE]
    truth = all(r["true_cf_l1_ratio"] is not None for r in eligible)
    return min(eligible, key=lambda r: r["true_cf_l1_ratio"] if truth else r["input_l1"])


def settings(row: dict) -> dict:
    """The recommendation a chosen row stands for (the fields a checkpoint's ``inference`` entry takes)."""
    return {k: row[k] for k in CANDIDATES[0]}
