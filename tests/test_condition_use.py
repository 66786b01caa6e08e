"""Condition-use diagnostics: a decoder that ignores its condition must fail them, one that obeys must pass."""

import os
from pathlib import Path

import pytest
import torch

from causaldiff.cli import main
from causaldiff.evaluation.condition_use import _moved, condition_use, pair_permutation, x0_sensitivity
from causaldiff.evaluation.evaluate import eval_data
from causaldiff.graph import CausalGraph
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.models.causal_diffae import CausalDiffAE
from tests.helpers import tiny_model

CONFIG = Path(__file__).parent.parent / "configs" / "tiny.yaml"
# mean |x0(cond_A) - x0(cond_B)| at t = 50 of 100 (mid noise), [-1, 1] units, after 300 tiny steps: measured 2.4e-3
# with the default recipe and 2e-5 with the shipped models' (stock projection, sampled latents): 120x apart
X0_SWAP_FLOOR = 5e-4


def mid_t_swap(checkpoint) -> float:
    model = CausalDiffAE.from_checkpoint(checkpoint)
    data = eval_data(checkpoint, 32)
    with torch.no_grad():
        mu_u, _, s, _ = model.encode(data.x)
        z = model.mechanisms(mu_u)
    t = model.alphas_cumprod.shape[0] // 2
    return x0_sensitivity(model, data.x, z, s, pair_permutation(data.x.shape[0]), at=[t])[t]["swap"]


@pytest.fixture(scope="module")
def stock_ckpt(tmp_path_factory):
    """The tiny model trained as the shipped models were: stock condition projection, sampled latents."""
    root = tmp_path_factory.mktemp("stock")
    cwd = os.getcwd()
    os.chdir(root)
    try:
        main(["fit", "--config", str(CONFIG), "--trainer.max_steps=300", "--model.condition_norm=false",
              "--model.latent_noise=1.0"])
    finally:
        os.chdir(cwd)
    return root / "runs" / "tiny" / "checkpoints" / "last.ckpt"


def test_permutation_pairs_every_image_with_another():
    perm = pair_permutation(17, seed=3)
    assert sorted(perm.tolist()) == list(range(17))
    assert (perm != torch.arange(17)).all()


def test_a_discrete_swap_counts_only_the_readings_it_moves():
    """The predictor's own misreads are not movement: a pair whose unswapped decoding already reads as B's class is
    left out, so a swap that changes no reading scores 0 and one that turns every other one to B's class 1."""
    graph = CausalGraph.from_dict({"sex": {"kind": "binary"}})
    y_a, y_b = torch.tensor([0.0, 0, 0, 0, 1]), torch.ones(5)  # the last pair shares its class: left out too
    ref = torch.tensor([0.0, 0, 0, 1, 1])  # the fourth reconstruction is misread as B's class
    assert _moved(graph, "sex", ref, ref, y_a, y_b, 0.0) == 0.0  # the old share-read-as-B gave 0.25
    assert _moved(graph, "sex", torch.ones(5), ref, y_a, y_b, 0.0) == 1.0
    assert _moved(graph, "sex", torch.tensor([1.0, 0, 0, 1, 1]), ref, y_a, y_b, 0.0) == pytest.approx(1 / 3)


def test_a_decoder_without_condition_scores_zero():
    model, batch = tiny_model()
    torch.nn.init.zeros_(model.condition_proj.proj[-1].weight)  # every condition is the same vector
    torch.nn.init.zeros_(model.condition_proj.proj[-1].bias)
    pipe = CounterfactualPipeline(model)
    rep = condition_use(pipe, None, batch["x"], batch["labels"], steps=2)
    assert all(v["swap"] == 0 for v in rep["x0"].values())
    assert all(v["error"] > 0 for v in rep["x0"].values())
    assert rep["collapse"]["cond_norm"] == pytest.approx(0, abs=1e-6)
    assert rep["collapse"]["temb_norm"] > 0 and rep["collapse"]["s_gap"] > 0


def test_condition_norm_sets_the_scale_of_every_condition():
    model, batch = tiny_model()
    mu_u, _, s, _ = model.encode(batch["x"])
    cond = model.condition(model.mechanisms(mu_u), s)
    e = cond.shape[1]
    assert torch.allclose(cond.norm(dim=1), torch.full((cond.shape[0],), 3.0 * e**0.5), rtol=1e-3)
    # the null vector starts tiny (0.02 randn), so LayerNorm's eps still shows: 1 - ||null|| / (3 sqrt(E)) ~ 1 %
    assert model.null_condition(1).norm().item() == pytest.approx(3.0 * e**0.5, rel=0.03)


@pytest.mark.slow
def test_swap_moves_x0_of_a_conditioned_decoder_not_of_a_stock_one(tiny_ckpt, stock_ckpt):
    """Same data, steps and seed: the default training (normalised condition, posterior-mean latents) clears the
    floor; the shipped models' recipe does not, so a decoder that ignores its condition is caught."""
    obeying, ignoring = mid_t_swap(tiny_ckpt), mid_t_swap(stock_ckpt)
    assert obeying > X0_SWAP_FLOOR > ignoring, (obeying, ignoring)


def test_the_swap_test_decodes_fresh_noise_from_its_depth(tiny_ckpt, tiny_predictor):
    """Fresh noise is x_T unless told otherwise; ``fresh_depth`` < 1 decodes it from there (the inverted rows keep
    the pipeline's depth)."""
    from causaldiff.evaluation.predictor import AntiCausalPredictor

    pipe, depths = CounterfactualPipeline.from_checkpoint(tiny_ckpt, depth=0.5), []
    predict = pipe.predict

    def recorded(*args, **kwargs):
        depths.append(kwargs.get("depth"))
        return predict(*args, **kwargs)

    pipe.predict = recorded
    data = eval_data(tiny_ckpt, 8)
    predictor = AntiCausalPredictor.from_checkpoint(tiny_predictor)
    for fresh_depth in (1.0, 0.75):
        rep = condition_use(pipe, predictor, data.x, data.labels, steps=4, fresh_depth=fresh_depth)
        assert set(rep["swap"]) == {"fresh", "inverted"}
    assert depths == [1.0, None, 0.75, None]  # None: the pipeline's own (0.5)
