import json
import math
import time

import pytest
import torch

from causaldiff.cli import main
from causaldiff.evaluation.evaluate import DEFAULT_VARIANTS, draw_interventions, eval_data
from causaldiff.evaluation.predictor import AntiCausalPredictor
from causaldiff.evaluation.report import first_crossing, gains
from causaldiff.graph import CausalGraph


def test_predictor_checkpoint_learns(tiny_predictor, tiny_ckpt):
    pred = AntiCausalPredictor.from_checkpoint(tiny_predictor)
    data = eval_data(tiny_ckpt, 24)
    out = pred.predict(data.x)
    err = (out["light_angle"] - data.labels["light_angle"]).abs().mean() / data.labels["light_angle"].std()
    assert err < 0.9  # better than predicting the mean (~0.8 of a std); a few epochs only
    with pytest.raises(ValueError, match="not a predictor checkpoint"):
        AntiCausalPredictor.from_checkpoint(tiny_ckpt)


def test_a_part_of_the_test_items_is_what_eval_data_loads_for_it(tiny_ckpt):
    every = eval_data(tiny_ckpt, None)
    for n, start in ((8, 0), (8, 8), (None, 4)):
        part, loaded = every.part(n, start=start), eval_data(tiny_ckpt, n, start=start)
        assert torch.equal(part.x, loaded.x) and part.labels.keys() == loaded.labels.keys()
        assert all(torch.equal(part.labels[k], loaded.labels[k]) for k in loaded.labels)
        assert all(torch.equal(part.exogenous[k], loaded.exogenous[k]) for k in loaded.exogenous)
    with pytest.raises(ValueError, match="needs at least 8 test items, the test split has 3"):
        every.part(3, nodes=4)


def test_interventions_cover_every_node_from_the_data(tiny_ckpt):
    data = eval_data(tiny_ckpt, 24)
    graph = CausalGraph.from_dict({n: {} for n in data.labels})
    groups = draw_interventions(data, graph, seed=0)
    idx = torch.cat([g[1] for g in groups])
    assert sorted(idx.tolist()) == list(range(24))
    for node, _, vals in groups:
        assert set(vals.tolist()) <= set(data.labels[node].tolist())


def test_a_discrete_nodes_interventions_all_switch_its_class_even_when_it_is_rare():
    from causaldiff.evaluation.evaluate import EvalData

    n = 200
    rare = (torch.arange(n) % 20 == 0).float()  # a 5 % class
    labels = {"lesion": rare, "age": torch.linspace(20, 80, n)}
    graph = CausalGraph.from_dict({"lesion": {"kind": "binary"}, "age": {}})
    groups = dict((node, (idx, vals)) for node, idx, vals in draw_interventions(
        EvalData(torch.zeros(n, 1, 2, 2), labels, None, None), graph, seed=0))
    idx, vals = groups["lesion"]
    assert len(idx) == 100 and torch.equal(vals, 1 - rare[idx])  # every one switched, rare class or not
    idx, vals = groups["age"]  # a continuous node's values: other samples' own
    assert set(vals.tolist()) <= set(labels["age"].tolist()) and (vals != labels["age"][idx]).float().mean() > 0.9


def test_binned_interventions_land_in_another_bin_of_the_range():
    from causaldiff.evaluation.evaluate import EvalData

    n = 180
    labels = {"age": torch.linspace(20, 80, n), "lesion": (torch.arange(n) % 2).float()}
    graph = CausalGraph.from_dict({"age": {}, "lesion": {"kind": "binary"}})
    data = EvalData(torch.zeros(n, 1, 2, 2), labels, None, None)
    groups = {node: (idx, vals) for node, idx, vals in draw_interventions(data, graph, seed=0, bins=9)}
    idx, vals = groups["age"]
    own, new = ((labels["age"][idx] - 20) / (60 / 9)).floor().clamp_max(8), ((vals - 20) / (60 / 9)).floor()
    assert (vals >= 20).all() and (vals <= 80).all() and (own != new).all()  # in range, never the item's own bin
    assert len(set(new.tolist())) == 9  # every bin is a target
    idx, vals = groups["lesion"]
    assert torch.equal(vals, 1 - labels["lesion"][idx])  # classes as without bins


def test_every_setting_reaches_the_variants_pipelines(tiny_ckpt):
    from causaldiff.evaluation.evaluate import Evaluator
    from causaldiff.evaluation.variants import VARIANTS
    from causaldiff.inference.config import CounterfactualConfig
    from causaldiff.models.causal_diffae import CausalDiffAE

    opts = CounterfactualConfig(inversion="residual", keep_unchanged=True, depth=0.75)
    ev = Evaluator(CausalDiffAE.from_checkpoint(tiny_ckpt), None, eval_data(tiny_ckpt, 8), opts,
                   variants=["causaldiff", "latent-mechanisms"])
    pipe = ev.pipeline("causaldiff")
    assert (pipe.inversion, pipe.keep_unchanged, pipe.depth, pipe.propagation, pipe.findings) == \
        ("residual", True, 0.75, "labels", "transplant")
    for name, changes in VARIANTS.items():  # each ablation is the recommended path with its own switches changed
        variant = ev.pipeline(name)
        assert {k: getattr(variant, k) for k in changes} == changes
        assert variant.keep_unchanged  # and the rest as the config says
    with pytest.raises(ValueError, match=r"unknown variant\(s\) \['sideways'\]"):
        Evaluator(CausalDiffAE.from_checkpoint(tiny_ckpt), None, eval_data(tiny_ckpt, 8), opts, variants=["sideways"])


def test_evaluate_cli_writes_every_metric(tiny_ckpt, tiny_predictor, tmp_path):
    out = tmp_path / "report.json"
    t0 = time.perf_counter()
    main(["evaluate", "--checkpoint", str(tiny_ckpt), "--predictor", str(tiny_predictor), "--n", "16",
          "--steps", "4", "--cycles", "2", "--out", str(out)])
    assert time.perf_counter() - t0 < 60
    report = json.loads(out.read_text())
    assert set(report["variants"]) == set(DEFAULT_VARIANTS)
    for v in report["variants"].values():
        for key in ("effect_self", "effect_descendants", "realism_fd", "true_cf_image_l1", "true_cf_label_error"):
            assert math.isfinite(v[key]), key
        assert set(v["composition"]) == {"1", "2"} and set(v["reversibility"]) == {"1", "2"}
        assert all(math.isfinite(x) for x in [*v["composition"].values(), *v["reversibility"].values()])
        assert set(v["effectiveness"]) == set(report["meta"]["nodes"])
    for key in ("disentanglement", "completeness", "informativeness"):
        assert 0 <= report["disentanglement"][key] <= 1
    full, fwd = report["variants"]["causaldiff"], report["variants"]["no-abduction"]
    assert full["composition"]["1"] < fwd["composition"]["1"]  # inverted noise keeps the image; forward noise not
    ident, truth = report["references"]["identity"], report["references"]["truth"]
    assert ident["composition"] == {"1": 0.0, "2": 0.0} and ident["reversibility"] == {"1": 0.0, "2": 0.0}
    assert truth["true_cf_image_l1"] == 0.0 and ident["true_cf_image_l1"] > 0  # interventions change the truth
    assert set(ident["effect_per_node"]) == set(report["meta"]["nodes"])
    g = report["gains"]["causaldiff"]
    assert g["true_cf_l1_ratio"] == pytest.approx(full["true_cf_image_l1"] / ident["true_cf_image_l1"])
    md = (tmp_path / "report.md").read_text()
    assert md.index("gain mean") < md.index("| causaldiff | ") and "| *identity* |" in md and "| *truth* |" in md


def test_effect_gain_is_zero_for_doing_nothing_and_one_for_the_truth():
    refs = {"identity": {"effect_per_node": {"a": 1.0, "b": 0.8, "c": 0.5}, "effect_descendants": 0.9,
                         "true_cf_image_l1": 6.0},
            "truth": {"effect_per_node": {"a": 0.0, "b": 0.0, "c": 0.48}, "effect_descendants": 0.1}}
    row = {"effect_per_node": {"a": 1.0, "b": 0.0, "c": 0.1}, "effect_descendants": 1.3, "true_cf_image_l1": 3.0}
    g = gains(row, refs)
    assert g["effect_gain"] == {"a": 0.0, "b": 1.0, "c": None}  # c: identity and truth closer than MIN_GAP
    assert g["effect_gain_mean"] == 0.5
    assert g["effect_gain_descendants"] == pytest.approx(-0.5)  # worse than doing nothing is negative
    assert g["true_cf_l1_ratio"] == 0.5
    no_truth = gains(row, {"identity": refs["identity"]})
    assert no_truth["effect_gain"]["b"] == 1.0 and no_truth["effect_gain"]["a"] == 0.0
    assert no_truth["effect_gain"]["c"] == pytest.approx(0.8)  # (identity - method) / identity


def test_first_crossing_brackets_where_a_training_curve_first_reaches_the_threshold():
    curve = [(8000, 0.1), (16000, 0.65), (24000, 0.72), (32000, 0.6), (40000, 0.9)]
    assert first_crossing(curve, 0.7) == {"threshold": 0.7, "reached": 24000, "last_below": 16000}
    assert first_crossing(curve, 0.05) == {"threshold": 0.05, "reached": 8000, "last_below": None}
    assert first_crossing(curve, 0.95) == {"threshold": 0.95, "reached": None, "last_below": 40000}
    assert first_crossing([(8000, None), (16000, 0.8)], 0.7)["reached"] == 16000  # no gain measurable: not reached
