"""CausalGraph: the user's causal DAG over labelled attributes, declared in config."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

KINDS = ("continuous", "binary", "categorical")


@dataclass(frozen=True)
class Node:
    """One causal variable: its kind, parents, (optionally) its value range, whether it is ``local``: a binary
    finding drawn at a site of its own (a lesion; see :mod:`causaldiff.inference.sites`), and whether it is
    ``shown``: a parent of the image, drawn in it directly (false: the image shows it only through its descendants,
    as a patient's age shows through atrophy, and the decoder does not read its block)."""

    name: str
    kind: str
    parents: tuple[str, ...] = ()
    num_classes: int | None = None
    range: tuple[float, float] | None = None
    local: bool = False
    shown: bool = True

    @property
    def discrete(self) -> bool:
        return self.kind != "continuous"

    @property
    def cardinality(self) -> int:
        """Number of classes for discrete nodes (binary → 2), 1 for continuous ones."""
        if self.kind == "binary":
            return 2
        return self.num_classes if self.kind == "categorical" else 1

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.parents:
            out["parents"] = list(self.parents)
        if self.num_classes is not None:
            out["num_classes"] = self.num_classes
        if self.range is not None:
            out["range"] = list(self.range)
        if self.local:
            out["local"] = True
        if not self.shown:
            out["shown"] = False
        return out


@dataclass
class CausalGraph:
    """A validated DAG of :class:`Node` s, kept in topological order.

    Build it with :meth:`from_dict` from a mapping ``name -> {kind, parents, num_classes, range}``.
    """

    nodes: dict[str, Node] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, node in self.nodes.items():
            for p in node.parents:
                if p not in self.nodes:
                    raise ValueError(f"node '{name}' has unknown parent '{p}' (nodes: {sorted(self.nodes)})")
                if p == name:
                    raise ValueError(f"node '{name}' lists itself as a parent (cycle: {name} -> {name})")
        self.order: list[str] = self._toposort()
        self.nodes = {n: self.nodes[n] for n in self.order}
        if not any(node.shown for node in self.nodes.values()):
            raise ValueError("no node is shown: the image must show at least one node directly (shown: false on all)")

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_dict(cls, spec: dict[str, Any] | CausalGraph) -> CausalGraph:
        """Parse ``{name: {kind, parents, num_classes, range, local, shown}}``; raises ValueError naming the
        problem."""
        if isinstance(spec, CausalGraph):
            return spec
        if isinstance(spec, (list, tuple)):
            names = [item.get("name") if isinstance(item, dict) else None for item in spec]
            dup = {n for n in names if names.count(n) > 1}
            if dup:
                raise ValueError(f"duplicate node {sorted(map(str, dup))[0]!r} in graph")
            spec = {item["name"]: {k: v for k, v in item.items() if k != "name"} for item in spec}
        if not isinstance(spec, dict) or not spec:
            raise ValueError("graph must be a non-empty mapping of node name -> {kind, parents, ...}")
        nodes = {}
        for name, body in spec.items():
            nodes[str(name)] = _parse_node(str(name), body or {})
        return cls(nodes)

    @classmethod
    def from_yaml(cls, text: str) -> CausalGraph:
        data = load_yaml(text)
        if isinstance(data, dict) and "graph" in data:
            data = data["graph"]
        return cls.from_dict(data)

    def to_dict(self) -> dict[str, dict[str, Any]]:
        return {n: node.to_dict() for n, node in self.nodes.items()}

    def to_yaml(self) -> str:
        import yaml

        return yaml.safe_dump({"graph": self.to_dict()}, sort_keys=False)

    # ------------------------------------------------------------------ queries
    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self):
        return iter(self.order)

    def __contains__(self, name: object) -> bool:
        return name in self.nodes

    def __getitem__(self, name: str) -> Node:
        if name not in self.nodes:
            raise KeyError(f"unknown node '{name}' (nodes: {', '.join(self.order)})")
        return self.nodes[name]

    def index(self, name: str) -> int:
        """Position of ``name`` in topological order (the block index of its latent)."""
        return self.order.index(self[name].name)

    def parents(self, name: str) -> list[str]:
        return list(self[name].parents)

    def children(self, name: str) -> list[str]:
        self[name]
        return [n for n in self.order if name in self.nodes[n].parents]

    def descendants(self, name: str) -> list[str]:
        """All nodes reachable from ``name`` (excluding it), in topological order."""
        self[name]
        found: set[str] = set()
        for n in self.order:
            if any(p == name or p in found for p in self.nodes[n].parents):
                found.add(n)
        return [n for n in self.order if n in found]

    def ancestors(self, name: str) -> list[str]:
        """All nodes with a directed path into ``name``, in topological order."""
        stack, found = list(self[name].parents), set()
        while stack:
            p = stack.pop()
            if p not in found:
                found.add(p)
                stack.extend(self.nodes[p].parents)
        return [n for n in self.order if n in found]

    def roots(self) -> list[str]:
        return [n for n in self.order if not self.nodes[n].parents]

    def adjacency(self) -> list[list[int]]:
        """``A[i][j] = 1`` iff node i (topological index) is a parent of node j."""
        idx = {n: i for i, n in enumerate(self.order)}
        a = [[0] * len(self.order) for _ in self.order]
        for n in self.order:
            for p in self.nodes[n].parents:
                a[idx[p]][idx[n]] = 1
        return a

    # ------------------------------------------------------------------ internals
    def _toposort(self) -> list[str]:
        """Kahn's algorithm, stable in declaration order; a cycle is named in the error."""
        remaining = {n: set(node.parents) for n, node in self.nodes.items()}
        order: list[str] = []
        while remaining:
            ready = [n for n, ps in remaining.items() if not ps]
            if not ready:
                raise ValueError(f"graph has a cycle: {' -> '.join(self._find_cycle(remaining))}")
            for n in ready:
                order.append(n)
                del remaining[n]
            for ps in remaining.values():
                ps.difference_update(ready)
        return order

    def _find_cycle(self, remaining: dict[str, set[str]]) -> list[str]:
        node = next(iter(remaining))
        path: list[str] = []
        while node not in path:
            path.append(node)
            node = next(iter(sorted(remaining[node])))
        cycle = path[path.index(node):] + [node]
        return list(reversed(cycle))


def load_yaml(text: str) -> Any:
    """``yaml.safe_load`` that rejects duplicate mapping keys (a duplicate node must not vanish silently)."""
    import yaml

    class UniqueKeyLoader(yaml.SafeLoader):
        pass

    def construct_mapping(loader, node, deep=False):
        keys = [loader.construct_object(k, deep=deep) for k, _ in node.value]
        dup = sorted({str(k) for k in keys if keys.count(k) > 1})
        if dup:
            raise ValueError(f"duplicate key {dup[0]!r} in YAML (a node or option is declared twice)")
        return yaml.SafeLoader.construct_mapping(loader, node, deep=deep)

    UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, construct_mapping)
    return yaml.load(text, Loader=UniqueKeyLoader)


def _parse_node(name: str, body: dict[str, Any]) -> Node:
    if not isinstance(body, dict):
        raise ValueError(f"node '{name}': expected a mapping {{kind, parents, ...}}, got {body!r}")
    unknown = set(body) - {"kind", "parents", "num_classes", "range", "local", "shown"}
    if unknown:
        raise ValueError(f"node '{name}': unknown keys {sorted(unknown)}")
    kind = body.get("kind", "continuous")
    if kind not in KINDS:
        raise ValueError(f"node '{name}': kind must be one of {KINDS}, got {kind!r}")
    parents = body.get("parents") or []
    if isinstance(parents, str):
        parents = [parents]
    if len(set(parents)) != len(parents):
        raise ValueError(f"node '{name}': duplicate parent in {list(parents)}")
    num_classes = body.get("num_classes")
    if kind == "categorical":
        if num_classes is None:
            raise ValueError(f"node '{name}': categorical node needs num_classes")
        if int(num_classes) != num_classes or num_classes < 2:
            raise ValueError(f"node '{name}': num_classes must be an integer >= 2, got {num_classes!r}")
        num_classes = int(num_classes)
    elif num_classes is not None and not (kind == "binary" and num_classes == 2):
        raise ValueError(f"node '{name}': num_classes only applies to categorical nodes")
    else:
        num_classes = None
    rng = body.get("range")
    if rng is not None:
        if len(rng) != 2 or not float(rng[0]) < float(rng[1]):
            raise ValueError(f"node '{name}': range must be [low, high] with low < high, got {rng!r}")
        rng = (float(rng[0]), float(rng[1]))
    local = body.get("local", False)
    if local not in (True, False) or (local and kind != "binary"):
        raise ValueError(f"node '{name}': local must be true or false, and only a binary node can be local "
                         f"(a finding switched on at a site), got local={local!r} on a {kind} node")
    shown = body.get("shown", True)
    if shown not in (True, False) or (local and not shown):
        raise ValueError(f"node '{name}': shown must be true or false, and a local node is shown (a finding drawn "
                         f"in the image), got shown={shown!r}")
    return Node(name, kind, tuple(str(p) for p in parents), num_classes, rng, bool(local), bool(shown))
