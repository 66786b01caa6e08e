import json
import math
import time

import pytest
import torch

from causaldiff.cli import main
from causaldiff.evaluation.evaluate import VARIANTS, draw_interventions, eval_data
from causaldiff.evaluation.predictor import AntiCausalPredictor
from causaldiff.graph import CausalGraph


def test_predictor_checkpoint_learns(tiny_predictor, tiny_ckpt):
    pred = AntiCausalPredictor.from_checkpoint(tiny_predictor)
    data = eval_data(tiny_ckpt, 24)
    out = pred.predict(data.x)
    err = (out["light_angle"] - data.labels["light_angle"]).abs().mean() / data.labels["light_angle"].std()
    assert err < 0.9  # better than predicting the mean (~0.8 of a std); a few epochs only
    with pytest.raises(ValueError, match="not a predictor checkpoint"):
        AntiCausalPredictor.from_checkpoint(tiny_ckpt)


def test_interventions_cover_every_node_from_the_data(tiny_ckpt):
    data = eval_data(tiny_ckpt, 24)
    graph = CausalGraph.from_dict({n: {} for n in data.labels})
    groups = draw_interventions(data, graph, seed=0)
    idx = torch.cat([g[1] for g in groups])
    assert sorted(idx.tolist()) == list(range(24))
    for node, _, vals in groups:
        assert set(vals.tolist()) <= set(data.labels[node].tolist())


def test_evaluate_cli_writes_every_metric(tiny_ckpt, tiny_predictor, tmp_path):
    out = tmp_path / "report.json"
    t0 = time.perf_counter()
    main(["evaluate", "--checkpoint", str(tiny_ckpt), "--predictor", str(tiny_predictor), "--n", "16",
          "--steps", "4", "--cycles", "2", "--out", str(out)])
    assert time.perf_counter() - t0 < 60
    report = json.loads(out.read_text())
    assert set(report["variants"]) == set(VARIANTS)
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
    assert "| causaldiff |" in (tmp_path / "report.md").read_text()
