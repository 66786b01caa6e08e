import pytest
from hypothesis import given
from hypothesis import strategies as st

from causaldiff.graph import CausalGraph
from causaldiff.interventions import Intervention, parse_interventions, resolve

G = CausalGraph.from_dict({"age": {}, "sex": {"kind": "binary"}, "digit": {"kind": "categorical", "num_classes": 10},
                           "volume": {"parents": ["age", "sex"]}})


def test_parse_forms():
    assert parse_interventions("light_angle=30") == [Intervention("light_angle", 30.0, "set")]
    assert parse_interventions("age+=10") == [Intervention("age", 10.0, "shift")]
    assert parse_interventions("age-=5") == [Intervention("age", -5.0, "shift")]
    assert parse_interventions(["age=1", "sex=0"]) == [Intervention("age", 1.0), Intervention("sex", 0.0)]
    assert parse_interventions("age = 1.5, sex=1") == [Intervention("age", 1.5), Intervention("sex", 1.0)]
    assert parse_interventions({"age": 3}) == [Intervention("age", 3.0)]
    assert str(Intervention("age", -5.0, "shift")) == "age-=5"


@pytest.mark.parametrize("expr, message", [
    ("height=3", "unknown node 'height'"),
    ("age=old", "'old' is not a number"),
    ("sex=2", "binary node 'sex' takes 0 or 1"),
    ("digit=10", r"integer class in \[0, 9\]"),
    ("digit=2.5", "integer class"),
    ("sex+=1", "shift interventions apply to continuous nodes"),
    ("age=1,age=2", "intervened on twice"),
    ("age", "cannot parse"),
    ("age=inf", "finite"),
    ("", "empty intervention"),
])
def test_bad_interventions(expr, message):
    with pytest.raises(ValueError, match=message):
        resolve(expr, G)


@given(st.sampled_from(["age", "volume"]), st.floats(-1e6, 1e6, allow_nan=False), st.sampled_from(["=", "+=", "-="]))
def test_parse_round_trip(node, value, op):
    iv = parse_interventions(f"{node}{op}{value!r}")[0]
    sign = -1 if op == "-=" else 1
    assert iv.node == node and iv.value == sign * value and iv.mode == ("set" if op == "=" else "shift")
    assert resolve(str(iv), G)[0].mode == iv.mode


@given(st.text(max_size=20))
def test_parser_never_crashes_unexpectedly(text):
    try:
        resolve(text, G)
    except ValueError:
        pass
