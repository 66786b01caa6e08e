import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from causaldiff.graph import CausalGraph

YAML = """
graph:
  pendulum_angle: {kind: continuous}
  light_angle: {kind: continuous}
  shadow_length: {kind: continuous, parents: [pendulum_angle, light_angle]}
  shadow_position: {kind: continuous, parents: [pendulum_angle, light_angle]}
"""


def test_yaml_topology_and_queries():
    g = CausalGraph.from_yaml(YAML)
    assert g.order == ["pendulum_angle", "light_angle", "shadow_length", "shadow_position"]
    assert g.parents("shadow_length") == ["pendulum_angle", "light_angle"]
    assert g.children("light_angle") == ["shadow_length", "shadow_position"]
    assert g.descendants("pendulum_angle") == ["shadow_length", "shadow_position"]
    assert g.ancestors("shadow_position") == ["pendulum_angle", "light_angle"]
    assert g.descendants("shadow_length") == []
    assert g.roots() == ["pendulum_angle", "light_angle"]
    assert g.adjacency() == [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 0, 0], [0, 0, 0, 0]]


def test_order_respects_declaration_independent_parents():
    g = CausalGraph.from_dict({"c": {"parents": ["b"]}, "b": {"parents": ["a"]}, "a": {}})
    assert g.order == ["a", "b", "c"]
    assert g.descendants("a") == ["b", "c"]
    assert g.ancestors("c") == ["a", "b"]


def test_round_trip_dict_and_yaml():
    spec = {"sex": {"kind": "binary"}, "digit": {"kind": "categorical", "num_classes": 10},
            "age": {"kind": "continuous", "range": [40.0, 80.0], "parents": ["sex"]}}
    g = CausalGraph.from_dict(spec)
    assert CausalGraph.from_dict(g.to_dict()).to_dict() == g.to_dict()
    assert CausalGraph.from_yaml(g.to_yaml()).to_dict() == g.to_dict()
    assert g["digit"].cardinality == 10 and g["sex"].cardinality == 2 and g["age"].cardinality == 1
    hidden = CausalGraph.from_dict({**spec, "sex": {"kind": "binary", "shown": False}})
    assert CausalGraph.from_yaml(hidden.to_yaml())["sex"].shown is False and hidden["age"].shown is True
    assert "shown" not in g.to_dict()["sex"]  # the default (shown) is left out, as graphs written before it


@pytest.mark.parametrize("spec, message", [
    ({"a": {"parents": ["b"]}, "b": {"parents": ["a"]}}, "cycle: "),
    ({"a": {"parents": ["a"]}}, "cycle: a -> a"),
    ({"a": {"parents": ["zzz"]}}, "unknown parent 'zzz'"),
    ({"d": {"kind": "categorical"}}, "'d': categorical node needs num_classes"),
    ({"d": {"kind": "ordinal"}}, "kind must be one of"),
    ({"d": {"kind": "continuous", "colour": 1}}, "unknown keys"),
    ({}, "non-empty"),
    ({"a": {"range": [3, 1]}}, "low < high"),
    ({"a": {"shown": "no"}}, "'a': shown must be true or false"),
    ({"a": {"kind": "binary", "local": True, "shown": False}}, "a local node is shown"),
    ({"a": {"shown": False}, "b": {"parents": ["a"], "shown": False}}, "no node is shown"),
])
def test_bad_graphs_name_the_problem(spec, message):
    with pytest.raises(ValueError, match=message):
        CausalGraph.from_dict(spec)


def test_cycle_is_named():
    with pytest.raises(ValueError) as e:
        CausalGraph.from_dict({"r": {}, "a": {"parents": ["c", "r"]}, "b": {"parents": ["a"]}, "c": {"parents": ["b"]}})
    msg = str(e.value)
    for name in ("a", "b", "c"):
        assert name in msg.split("cycle: ")[1]
    assert "r" not in msg.split("cycle: ")[1]


def test_duplicate_node_in_yaml_and_list():
    with pytest.raises(ValueError, match="duplicate key 'a'"):
        CausalGraph.from_yaml("graph:\n  a: {kind: continuous}\n  a: {kind: binary}\n")
    with pytest.raises(ValueError, match="duplicate node 'a'"):
        CausalGraph.from_dict([{"name": "a"}, {"name": "a"}])


def test_unknown_node_lookup():
    g = CausalGraph.from_yaml(YAML)
    with pytest.raises(KeyError, match="unknown node 'nope'"):
        g.descendants("nope")


@st.composite
def dags(draw):
    n = draw(st.integers(1, 8))
    names = [f"n{i}" for i in range(n)]
    spec = {}
    for i, name in enumerate(names):
        parents = draw(st.lists(st.sampled_from(names[:i]), unique=True)) if i else []
        spec[name] = {"kind": "continuous", "parents": parents}
    order = draw(st.permutations(names))
    return {k: spec[k] for k in order}


@settings(max_examples=60, deadline=None)
@given(dags())
def test_random_dags_are_topologically_sorted(spec):
    g = CausalGraph.from_dict(spec)
    pos = {n: i for i, n in enumerate(g.order)}
    for n in g:
        assert all(pos[p] < pos[n] for p in g.parents(n))
        for d in g.descendants(n):
            assert n in g.ancestors(d)
    assert CausalGraph.from_dict(g.to_dict()).order == g.order


@settings(max_examples=40, deadline=None)
@given(dags(), st.data())
def test_adding_a_back_edge_is_a_cycle(spec, data):
    g = CausalGraph.from_dict(spec)
    edges = [(p, n) for n in g for p in g.parents(n)]
    if not edges:
        return
    p, n = data.draw(st.sampled_from(edges))
    bad = g.to_dict()
    bad[p]["parents"] = [*bad[p].get("parents", []), n]
    with pytest.raises(ValueError, match="cycle"):
        CausalGraph.from_dict(bad)
