"""Interventions: ``do(node = value)`` (hard) and ``node += delta`` (shift), parsed from text."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import torch

from causaldiff.graph import CausalGraph

_EXPR = re.compile(r"^\s*([A-Za-z_][\w.]*)\s*(\+=|-=|=)\s*(\S.*?)\s*$")


@dataclass(frozen=True, eq=False)
class Intervention:
    """One action on one node: ``mode="set"`` replaces the value, ``mode="shift"`` adds ``value``.

    ``value`` is a number, or a (B,) tensor for per-sample values (e.g. values drawn from the data).
    """

    node: str
    value: float | torch.Tensor
    mode: str = "set"

    def __eq__(self, other) -> bool:
        return (isinstance(other, Intervention) and (self.node, self.mode) == (other.node, other.mode)
                and torch.equal(torch.as_tensor(self.value), torch.as_tensor(other.value)))

    def __hash__(self) -> int:
        return hash((self.node, self.mode))

    def values(self, like: torch.Tensor) -> torch.Tensor:
        """The target (B,) for factual values ``like`` (B,): set → value, shift → like + value."""
        v = torch.as_tensor(self.value, dtype=like.dtype, device=like.device).expand_as(like)
        return like + v if self.mode == "shift" else v.clone()

    def __str__(self) -> str:
        if isinstance(self.value, torch.Tensor) and self.value.ndim > 0:
            return f"{self.node}{'=' if self.mode == 'set' else '+='}<per-sample>"
        v = f"{float(self.value):g}"
        if self.mode == "set":
            return f"{self.node}={v}"
        return f"{self.node}+={v}" if float(self.value) >= 0 else f"{self.node}-={-float(self.value):g}"


def parse_intervention(expr: str) -> list[Intervention]:
    """Parse ``"light_angle=30"``, ``"age+=10"``, ``"age-=5"`` or several joined by commas / semicolons."""
    if not isinstance(expr, str) or not expr.strip():
        raise ValueError(f"empty intervention expression {expr!r}; expected e.g. 'age=60' or 'age+=10'")
    out = []
    for part in re.split(r"[;,]", expr):
        if not part.strip():
            continue
        m = _EXPR.match(part)
        if not m:
            raise ValueError(
                f"cannot parse intervention {part.strip()!r}; expected 'node=value', 'node+=d' or 'node-=d'"
            )
        node, op, raw = m.groups()
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"intervention {part.strip()!r}: value {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"intervention {part.strip()!r}: value must be finite")
        if op == "=":
            out.append(Intervention(node, value, "set"))
        else:
            out.append(Intervention(node, value if op == "+=" else -value, "shift"))
    return out


def parse_interventions(exprs: str | Intervention | list | tuple | dict | None) -> list[Intervention]:
    """Normalise any accepted form (str, list of str, ``{node: value}``, Interventions) to a list."""
    if exprs is None:
        return []
    if isinstance(exprs, Intervention):
        return [exprs]
    if isinstance(exprs, str):
        return parse_intervention(exprs)
    if isinstance(exprs, dict):
        return [Intervention(str(k), v if isinstance(v, torch.Tensor) and v.ndim else float(v), "set")
                for k, v in exprs.items()]
    out: list[Intervention] = []
    for e in exprs:
        out.extend(parse_interventions(e))
    return out


def validate(do: list[Intervention], graph: CausalGraph) -> list[Intervention]:
    """Check every intervention against ``graph``; raises ValueError naming the problem."""
    seen = set()
    for iv in do:
        if iv.node not in graph:
            raise ValueError(f"intervention on unknown node '{iv.node}' (nodes: {', '.join(graph.order)})")
        if iv.node in seen:
            raise ValueError(f"node '{iv.node}' is intervened on twice")
        seen.add(iv.node)
        node, v = graph[iv.node], torch.as_tensor(iv.value, dtype=torch.float64).reshape(-1)
        if not torch.isfinite(v).all():
            raise ValueError(f"'{iv}': intervention values must be finite")
        if node.discrete and iv.mode == "shift":
            raise ValueError(f"'{iv}': shift interventions apply to continuous nodes; '{iv.node}' is {node.kind}")
        bad = v[(v != v.round()) | (v < 0) | (v >= node.cardinality)] if node.discrete else v[:0]
        if node.kind == "binary" and bad.numel():
            raise ValueError(f"'{iv}': binary node '{iv.node}' takes 0 or 1, got {bad.flatten()[0].item():g}")
        if node.kind == "categorical" and bad.numel():
            raise ValueError(
                f"'{iv}': categorical node '{iv.node}' takes an integer class in [0, {node.num_classes - 1}], "
                f"got {bad.flatten()[0].item():g}"
            )
    return do


def resolve(do, graph: CausalGraph) -> list[Intervention]:
    """Parse and validate in one call (the form every public entry point accepts)."""
    return validate(parse_interventions(do), graph)
