"""The package's layering: no import cycle (imports inside functions included), thin commands, old paths kept."""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).parent.parent / "causaldiff"


def import_graph(root: Path) -> dict[str, set[str]]:
    """{module: the package's modules it imports}, from every import statement, at top level or in a function."""
    pkg = root.name
    modules = {".".join(p.relative_to(root.parent).with_suffix("").parts).removesuffix(".__init__"): p
               for p in root.rglob("*.py")}
    graph = {}
    for name, path in modules.items():
        base = name if path.name == "__init__.py" else name.rpartition(".")[0]
        edges = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                src = node.module or ""
                if node.level:  # relative: from the package that holds this module
                    src = ".".join([*base.split(".")[: len(base.split(".")) - node.level + 1], *([src] if src else [])])
                targets = [f"{src}.{a.name}" if f"{src}.{a.name}" in modules else src for a in node.names]
            else:
                continue
            edges |= {t for t in targets if t in modules and t != name and t.split(".")[0] == pkg}
        graph[name] = edges
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as [a, b, ..., a], or None."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == "open":
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_cycle_in_the_package():
    graph = import_graph(PACKAGE)
    assert len(graph) > 40 and "causaldiff.inference.pipeline" in graph["causaldiff.inference.batch"]
    assert find_cycle(graph) is None


def test_a_cycle_hidden_inside_a_function_is_found(tmp_path):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "checkpoint.py").write_text("def export():\n    from pkg.model import Model\n")
    (pkg / "model.py").write_text("from pkg import checkpoint\n")
    assert find_cycle(import_graph(pkg)) == ["pkg.checkpoint", "pkg.model", "pkg.checkpoint"]


def test_commands_are_thin():
    assert len((PACKAGE / "cli.py").read_text().splitlines()) <= 120
    for path in (PACKAGE / "commands").glob("*.py"):
        assert len(path.read_text().splitlines()) <= 80, path.name


def test_old_import_paths_still_work():
    import causaldiff
    from causaldiff.counterfactual import CounterfactualPipeline
    from causaldiff.inference import pipeline

    assert CounterfactualPipeline is pipeline.CounterfactualPipeline is causaldiff.CounterfactualPipeline


@pytest.mark.parametrize("name", ["pendulum32", "tiny.yaml", "predictor"])
def test_configs_ship_with_the_package(name):
    from causaldiff.training.cli import packaged_config

    path = packaged_config(name)
    assert path.is_file() and path.parent == PACKAGE / "configs"
    with pytest.raises(FileNotFoundError, match="config not found: nope"):
        packaged_config("nope")
