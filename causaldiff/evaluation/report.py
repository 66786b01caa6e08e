"""Reading an evaluation report: effect gains against the identity and truth rows, and the Markdown tables."""

from __future__ import annotations

MIN_GAP = 0.05  # identity and truth closer than this (normalised error): the predictor cannot tell them apart


def _gain(ident: float | None, method: float | None, truth: float | None) -> float | None:
    """(identity - method) / (identity - truth), or / identity without a truth; None where undefined."""
    if ident is None or method is None:
        return None
    floor = 0.0 if truth is None else truth
    return None if ident - floor < MIN_GAP else (ident - method) / (ident - floor)


def gains(row: dict, references: dict) -> dict:
    """Effect gain per node, its mean, the descendants' gain, and the true-CF L1 ratio of one variant's ``row``."""
    ident, truth = references["identity"], references.get("truth", {})
    per_node = {n: _gain(ident["effect_per_node"].get(n), e, truth.get("effect_per_node", {}).get(n))
                for n, e in row["effect_per_node"].items()}
    known = [g for g in per_node.values() if g is not None]
    l1, l1_ident = row.get("true_cf_image_l1"), ident.get("true_cf_image_l1")
    return {"effect_gain": per_node, "effect_gain_mean": sum(known) / len(known) if known else None,
            "effect_gain_descendants": _gain(ident["effect_descendants"], row["effect_descendants"],
                                             truth.get("effect_descendants")),
            "true_cf_l1_ratio": l1 / l1_ident if l1 is not None and l1_ident else None}


def first_crossing(points: list[tuple[int, float]], threshold: float) -> dict:
    """Where a training curve [(images seen, mean effect gain)], in order, first reaches ``threshold``:
    {threshold, reached (its images, None if never), last_below (the point before it, None if it is the first)}."""
    for i, (images, value) in enumerate(points):
        if value is not None and value >= threshold:
            return {"threshold": threshold, "reached": images, "last_below": points[i - 1][0] if i else None}
    return {"threshold": threshold, "reached": None, "last_below": points[-1][0] if points else None}


def _cell(val) -> str:
    return "—" if val is None else f"{val:.3f}"


def headline(report: dict) -> list[str]:
    """Effect gain per node (1 = truth, 0 = identity) and true-CF L1 ratio (< 1 beats identity), per variant."""
    nodes = report["meta"]["nodes"]
    cols = [f"gain {n}" for n in nodes] + ["gain mean", "gain descendants", "true-CF L1 / identity"]
    lines = ["| variant | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    for name, g in report["gains"].items():
        cells = [g["effect_gain"].get(n) for n in nodes]
        cells += [g["effect_gain_mean"], g["effect_gain_descendants"], g["true_cf_l1_ratio"]]
        lines.append(f"| {name} | " + " | ".join(map(_cell, cells)) + " |")
    return lines


def markdown(report: dict) -> str:
    """The headline gains, then the metrics table: rows = variants and the identity / truth references."""
    meta = report["meta"]
    cols = ["effect_self", "effect_descendants", "composition@1", f"composition@{meta['cycles']}",
            "reversibility@1", f"reversibility@{meta.get('reversibility_cycles', meta['cycles'])}", "realism_fd"]
    if report["meta"]["world"]:
        cols += ["true_cf_image_l1", "true_cf_label_error"]
    cols = list(dict.fromkeys(cols))  # one column each when cycles == 1
    lines = []
    if any(g["effect_gain_mean"] is not None or g["true_cf_l1_ratio"] is not None for g in report["gains"].values()):
        lines += headline(report) + [""]
    lines += ["| row | " + " | ".join(cols) + " |", "|---" * (len(cols) + 1) + "|"]
    rows = {**report["variants"], **{f"*{k}*": v for k, v in report["references"].items()}}
    for name, v in rows.items():
        cells = []
        for c in cols:
            key, _, at = c.partition("@")
            cells.append(v[key].get(at) if at else v.get(key))
        lines.append(f"| {name} | " + " | ".join(map(_cell, cells)) + " |")
    nodes = report["meta"]["nodes"]
    if any(v["effect_per_node"] for v in rows.values()):
        lines += ["", "Effectiveness error of the intervened node (normalised; lower is better):", "",
                  "| row | " + " | ".join(nodes) + " |", "|---" * (len(nodes) + 1) + "|"]
        lines += [f"| {name} | " + " | ".join(_cell(v["effect_per_node"].get(n)) for n in nodes) + " |"
                  for name, v in rows.items()]
    d = report["disentanglement"]
    lines.append("")
    lines.append(f"DCI of z: disentanglement {d['disentanglement']:.3f}, completeness {d['completeness']:.3f}, "
                 f"informativeness {d['informativeness']:.3f}. n = {report['meta']['n']}, "
                 f"steps = {report['meta']['config']['steps']}, world = {report['meta']['world']}.")
    return "\n".join(lines) + "\n"
