"""Which binary nodes' pixels the diffusion loss weighs more (``CausalDataModule(focus=...)``, the model's
``focus_weight``): a small finding, such as a lesion, whose few pixels the mean loss barely charges."""

from __future__ import annotations

from collections.abc import Callable

from causaldiff.graph import CausalGraph

AUTO = "auto"  # every local node whose pixels the data marks (a folder's ``<node>_mask`` column, a world's twins)


def focus_nodes(graph: CausalGraph, focus: str | None, marked: Callable[[str], bool], source: str) -> tuple[str, ...]:
    """The nodes ``focus`` names: None → none; ``"auto"`` → every local node of ``graph`` for which ``marked(node)``
    (the data has its pixels); a node's name → that node, which must be binary (``source`` names the data in the
    error)."""
    if focus is None:
        return ()
    if focus == AUTO:
        return tuple(n for n in graph.order if graph[n].local and marked(n))
    if focus not in graph.order or graph[focus].cardinality != 2:
        raise ValueError(f"focus: {focus!r} is not a binary node of {source}")
    return (focus,)
