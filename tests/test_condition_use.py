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
    the pipeline's depth); the decoding is plain even where the pipeline keeps unchanged pixels (it has no factual
    image to keep)."""
    from causaldiff.evaluation.predictor import AntiCausalPredictor

    pipe, depths = CounterfactualPipeline.from_checkpoint(tiny_ckpt, depth=0.5, keep_unchanged=True), []
    decode = pipe.decode

    def recorded(*args, **kwargs):
        depths.append(kwargs.get("depth"))
        assert kwargs.get("keep_unchanged") is False  # plain decoding: nothing kept from a factual image
        return decode(*args, **kwargs)

    pipe.decode = recorded
    data = eval_data(tiny_ckpt, 8)
    predictor = AntiCausalPredictor.from_checkpoint(tiny_predictor)
    for fresh_depth in (1.0, 0.75):
        rep = condition_use(pipe, predictor, data.x, data.labels, steps=4, fresh_depth=fresh_depth)
        assert set(rep["swap"]) == {"fresh", "inverted"}
    assert depths == [1.0, None, 0.75, None]  # None: the pipeline's own (0.5)


class ShrunkReader(torch.nn.Module):
    """A stand-in predictor that reads each image's true labels (looked up by its pixels), shrunk towards their mean
    by ``slope``: what an anti-causal predictor does with a label the image shows only through its descendants."""

    def __init__(self, images, labels, slope):
        super().__init__()
        self.anchor = torch.nn.Parameter(torch.zeros(1))
        self.table = {img.numpy().tobytes(): {k: v[i] for k, v in labels.items()} for i, img in enumerate(images)}
        self.mean = {k: v.float().mean() for k, v in labels.items()}
        self.slope = slope

    def predict(self, x):
        rows = [self.table[img.numpy().tobytes()] for img in x]
        return {k: torch.stack([self.mean[k] + self.slope * (r[k] - self.mean[k]) for r in rows]) for k in self.mean}


def test_the_reference_is_what_the_predictor_reads_off_the_true_swap(tiny_ckpt):
    """The true swap renders A's exogenous noise under B's labels; a predictor reading labels at slope 0.7 moves
    every continuous label 0.7 of the gap on it, the ceiling a decoder's z swap is read against."""
    from causaldiff.evaluation.condition_use import reference_swap, true_swap
    from causaldiff.pixels import to_unit

    data = eval_data(tiny_ckpt, 16)
    perm = pair_permutation(16)
    truth = true_swap(data.world, data.exogenous, data.labels, perm)
    assert truth.shape == data.x.shape and truth.min() >= -1 and truth.max() <= 1
    b_labels = {k: v[perm] for k, v in data.labels.items()}
    assert torch.equal(truth, to_unit(data.world.render(data.exogenous, b_labels)))  # every node B's, A's noise
    images = torch.cat([data.x, truth])
    labels = {k: torch.cat([v, v[perm]]) for k, v in data.labels.items()}
    graph = CounterfactualPipeline.from_checkpoint(tiny_ckpt).graph
    for slope in (1.0, 0.7):
        moved = reference_swap(graph, ShrunkReader(images, labels, slope), data.x, data.labels, perm, truth)
        assert moved == {n: pytest.approx(slope, abs=1e-5) for n in graph.order}
    unknown = {k: torch.where(torch.arange(16) < 8, v, torch.tensor(float("nan"))) for k, v in data.labels.items()}
    moved = reference_swap(graph, ShrunkReader(images, labels, 1.0), data.x, unknown, perm, truth)
    assert moved == {n: pytest.approx(1.0, abs=1e-5) for n in graph.order}  # pairs with a NaN label left out
