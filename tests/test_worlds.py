import pytest
import torch

from causaldiff.data.worlds import WORLDS, get_world

INTERVENTIONS = {"pendulum": ["light_angle=70", "pendulum_angle=-20", "shadow_length=6"],
                 "morpho": ["thickness=4.5", "digit=3", "intensity=100"],
                 "brain": ["age=78", "sex=0", "brain_volume=1000", "lesion=1"],
                 "strokes": ["thickness=4.5", "digit=3", "swelling=1", "fracture=1"],
                 "bloom": ["soil_ph=8", "water=0.9", "hue=300", "height=12"]}


@pytest.mark.parametrize("name", WORLDS)
@pytest.mark.parametrize("size", [32, 64, 96])
def test_render_shape_and_determinism(name, size):
    w = get_world(name, size)
    exo, labels = w.sample(8, seed=5)
    img = w.render(exo, labels)
    assert img.shape == (8, w.channels, size, size) and img.dtype == torch.uint8
    assert img.float().std() > 10  # not blank
    exo2, labels2 = w.sample(8, seed=5)
    assert torch.equal(w.render(exo2, labels2), img)
    assert not torch.equal(w.render(*w.sample(8, seed=6)), img)


@pytest.mark.parametrize("name", WORLDS)
def test_null_intervention_reproduces_exactly(name):
    w = get_world(name)
    exo, labels = w.sample(16, seed=0)
    cf_labels, cf_img = w.counterfactual(exo, labels, [])
    assert torch.equal(cf_img, w.render(exo, labels))
    for k in labels:
        assert torch.equal(cf_labels[k], labels[k])


@pytest.mark.parametrize("name", WORLDS)
def test_do_moves_node_and_descendants_only(name):
    w = get_world(name)
    exo, labels = w.sample(64, seed=0)
    for expr in INTERVENTIONS[name]:
        node = expr.split("=")[0]
        value = float(expr.split("=")[1])
        cf_labels, cf_img = w.counterfactual(exo, labels, expr)
        assert torch.all(cf_labels[node] == value)
        desc = w.graph.descendants(node)
        for k in w.graph:
            if k != node and k not in desc:
                assert torch.equal(cf_labels[k], labels[k]), f"{expr}: non-descendant {k} changed"
        for k in desc:
            if not w.graph[k].discrete:
                assert not torch.equal(cf_labels[k], labels[k]), f"{expr}: descendant {k} did not follow"
        assert (cf_img.float() - w.render(exo, labels).float()).abs().mean() > 0.05
        # the exogenous style is untouched: a second call gives the same counterfactual
        assert torch.equal(w.counterfactual(exo, labels, expr)[1], cf_img)


@pytest.mark.parametrize("name", WORLDS)
def test_a_world_marks_unshown_exactly_the_nodes_its_renderer_does_not_draw(name):
    w = get_world(name)
    exo, labels = w.sample(32, seed=0)
    img = w.render(exo, labels)
    for node in w.graph.order:  # the node's label moved alone, every other label (its children's too) held
        moved = dict(labels)
        moved[node] = 1 - labels[node] if w.graph[node].kind == "binary" else labels[node].flip(0)
        assert torch.equal(w.render(exo, moved), img) != w.graph[node].shown, node


def test_morpho_scm_matches_deepscm():
    w = get_world("morpho")
    _, labels = w.sample(20000, seed=0)
    t = labels["thickness"]
    assert abs(t.mean().item() - 2.5) < 0.02  # 0.5 + Gamma(10, rate 5) has mean 2.5
    assert abs(t.var().item() - 0.4) < 0.03  # variance 10 / 25
    assert labels["intensity"].min() >= 64 and labels["intensity"].max() <= 255
    assert torch.corrcoef(torch.stack([t, labels["intensity"]]))[0, 1] > 0.6


def test_brain_is_plausible_and_lesion_rare():
    w = get_world("brain")
    _, labels = w.sample(20000, seed=0)
    assert 0.03 < labels["lesion"].mean() < 0.07
    assert 45 <= labels["age"].min() and labels["age"].max() <= 80
    assert 900 < labels["brain_volume"].mean() < 1400
    old = labels["age"] > 70
    assert labels["lesion"][old].mean() > labels["lesion"][~old].mean()
    assert labels["ventricle_volume"][old].mean() > labels["ventricle_volume"][~old].mean()


def test_randomised_trial_assigns_a_node_independent_of_its_parents():
    w = get_world("brain")
    exo, labels = w.sample(20000, seed=0, randomise=("lesion",))
    assert abs(labels["lesion"].mean().item() - 0.5) < 0.02
    old = labels["age"] > 70
    assert abs(labels["lesion"][old].mean().item() - labels["lesion"][~old].mean().item()) < 0.03
    # the world's own noise is unchanged: every other label equals the observational sample's
    _, observed = w.sample(20000, seed=0)
    for k in ("sex", "age", "brain_volume", "ventricle_volume"):
        assert torch.equal(labels[k], observed[k])
    # counterfactuals keep the assignment unless they intervene on it
    few = {k: v[:64] for k, v in exo.items()}
    cf, _ = w.counterfactual(few, {k: v[:64] for k, v in labels.items()}, "age=50")
    assert torch.equal(cf["lesion"], labels["lesion"][:64])
    assert torch.all(w.counterfactual(few, {k: v[:64] for k, v in labels.items()}, "lesion=0")[0]["lesion"] == 0)


def test_pendulum_shadow_geometry():
    w = get_world("pendulum")
    exo, labels = w.sample(4, seed=0)
    exo = {k: torch.zeros_like(v) for k, v in exo.items()}
    cf, _ = w.counterfactual(exo, labels, ["pendulum_angle=0", "light_angle=90"])
    # light straight above a vertical pendulum: the shadow sits below the pivot with the minimum length 3
    torch.testing.assert_close(cf["shadow_position"], torch.full((4,), 10.0), atol=1e-4, rtol=0)
    torch.testing.assert_close(cf["shadow_length"], torch.full((4,), 3.0), atol=1e-4, rtol=0)


def test_strokes_findings_are_local_follow_thickness_and_vary_in_size():
    w = get_world("strokes")
    exo, labels = w.sample(20000, seed=0)
    for finding, thick_more in (("swelling", True), ("fracture", False)):
        assert 0.12 < labels[finding].mean() < 0.28
        thick = labels["thickness"] > 2.5
        assert (labels[finding][thick].mean() > labels[finding][~thick].mean()) == thick_more
    few = {k: v[:64] for k, v in exo.items()}
    few_labels = {k: v[:64] for k, v in labels.items()}
    clean = w.counterfactual(few, few_labels, ["swelling=0", "fracture=0"])[1].int()
    for finding, sign in (("swelling", 1), ("fracture", -1)):
        other = "fracture" if finding == "swelling" else "swelling"
        drawn = w.counterfactual(few, few_labels, [f"{other}=0", f"{finding}=1"])[1].int()
        changed = ((drawn - clean) * sign > 8).flatten(1).sum(1).float()  # pixels brightened / darkened
        assert (changed > 0).float().mean() > 0.9  # drawn where the stroke is
        assert changed.mean() < 0.05 * 32 * 32  # local: a few per cent of the image
        small, large = few[f"{finding}_size"] < 0.9, few[f"{finding}_size"] > 1.6
        assert changed[large].mean() > 1.5 * changed[small].mean()  # findings of varied size


def test_bloom_colour_follows_the_soil():
    w = get_world("bloom")
    exo, labels = w.sample(64, seed=0)
    acid = w.counterfactual(exo, labels, "soil_ph=4.5")[1].float()
    alkaline = w.counterfactual(exo, labels, "soil_ph=8.5")[1].float()
    head = (acid - alkaline).abs().sum(1) > 60  # the flower head's pixels change colour
    assert head.flatten(1).any(1).all()
    blue_minus_red = (acid - alkaline)[:, 2] - (acid - alkaline)[:, 0]
    assert blue_minus_red[head].mean() > 50  # bluer on acid soil, pinker on alkaline


def test_data_make_offers_every_world():
    from causaldiff.commands.data import WORLD_NAMES

    assert WORLD_NAMES == list(WORLDS)


def test_bad_world_arguments():
    with pytest.raises(ValueError, match="unknown world 'mnist'"):
        get_world("mnist")
    with pytest.raises(ValueError, match="size must be"):
        get_world("brain", 4)
    with pytest.raises(ValueError, match="unknown node"):
        w = get_world("brain")
        w.counterfactual(*w.sample(2), "height=3")
    with pytest.raises(ValueError, match="randomise: 'age' is not a discrete node of brain; choose from"):
        w.sample(2, randomise=("age",))
