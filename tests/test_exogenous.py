"""Exogenous codes of discrete nodes (drawn when do() switches a class) and guidance against the factual condition."""

import warnings

import pytest
import torch

from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.models.exogenous import ClassMoments
from causaldiff.training.module import CausalDiffAEModule
from tests.helpers import TINY, tiny_model


def test_class_moments_are_the_empirical_mean_and_covariance():
    torch.manual_seed(0)
    r = torch.randn(500, 3) @ torch.tensor([[1.0, 0.5, 0.0], [0.0, 0.3, 0.0], [0.0, 0.0, 2.0]]) + 4.0
    y = torch.randint(0, 2, (500,))
    m = ClassMoments(2, 3)
    m.update(r[:200], y[:200], 1.0)
    m.update(r[200:], y[200:], 1.0)  # two batches, no decay: the moments of all 500
    mean, chol = m.gaussian(torch.tensor([0, 1]))
    for c in (0, 1):
        rc = r[y == c]
        torch.testing.assert_close(mean[c], rc.mean(0), atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(chol[c] @ chol[c].T, torch.cov(rc.T, correction=0), atol=1e-3, rtol=1e-3)
    assert m.count.tolist() == [float((y == 0).sum()), float((y == 1).sum())]


@pytest.fixture(scope="module")
def brain():
    """A tiny brain model whose lesion=1 prior is N(5, 0.01 I), and lesion-free / lesion images of its world."""
    model, _ = tiny_model("brain", n=256)
    d = model.latent_dim
    moments = model.exogenous.moments["lesion"]
    moments.count.fill_(100.0)
    moments.total[1] = 100 * 5.0
    moments.outer[1] = 100 * (0.01 * torch.eye(d) + 25.0)
    from causaldiff.data.worlds import get_world
    from causaldiff.pixels import to_unit

    world = get_world("brain", 16)
    exo, labels = world.sample(400, seed=3)
    x = to_unit(world.render(exo, labels))
    neg, pos = (torch.nonzero(labels["lesion"] == c).flatten()[:3] for c in (0, 1))
    take = lambda idx: (x[idx], {k: v[idx] for k, v in labels.items()})  # noqa: E731
    return model, take(neg), take(pos)


def test_switching_a_class_draws_the_code_from_its_prior_seeded(brain):
    model, (x0, y0), _ = brain
    pipe = CounterfactualPipeline(model)
    ab = pipe.abduct(x0, y0, steps=2)
    k, g = model.graph.index("lesion"), model.alignment.prior_block
    draws = [pipe.intervene(ab, "lesion=1", torch.Generator().manual_seed(s))[0][:, k] - g(k, torch.ones(3))
             for s in (1, 1, 2)]
    assert torch.equal(draws[0], draws[1])  # same seed, same lesion
    assert not torch.allclose(draws[0], draws[2])  # another seed, another one
    assert (draws[0] - 5.0).abs().max() < 0.5  # from N(5, 0.01 I): nothing of the lesion-free residual is left
    kept = CounterfactualPipeline(model, exogenous="keep").intervene(ab, "lesion=1")[0][:, k]
    torch.testing.assert_close(kept - g(k, torch.ones(3)), ab.z[:, k] - g(k, torch.zeros(3)))  # the old shift


def test_a_kept_class_keeps_its_abducted_code(brain):
    model, _, (x1, y1) = brain
    pipe = CounterfactualPipeline(model)
    ab = pipe.abduct(x1, y1, steps=2)
    cf_z, _ = pipe.intervene(ab, "lesion=1", torch.Generator().manual_seed(1))
    torch.testing.assert_close(cf_z, ab.z, atol=1e-6, rtol=0)  # do(lesion=1) on lesion images: nothing drawn


def test_an_unfitted_prior_warns_once_and_shifts():
    model, batch = tiny_model("brain", n=256)
    pipe = CounterfactualPipeline(model)
    labels = {k: v[:2] for k, v in batch["labels"].items()}
    labels["lesion"] = torch.zeros(2)
    ab = pipe.abduct(batch["x"][:2], labels, steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cf_z, _ = pipe.intervene(ab, "lesion=1")
        pipe.intervene(ab, "lesion=1")
    assert len([w for w in caught if "no fitted exogenous prior" in str(w.message)]) == 1
    keep, _ = CounterfactualPipeline(model, exogenous="keep").intervene(ab, "lesion=1")
    assert torch.equal(cf_z, keep)


def test_training_fits_the_priors_from_the_ema_encoder():
    model, batch = tiny_model("brain", n=256)
    module = CausalDiffAEModule(model.graph.to_dict(), image_size=16, channels=1, **TINY)
    module._update_exogenous(batch)
    moments = module.ema_model.exogenous.moments["lesion"]
    y = batch["labels"]["lesion"]
    assert moments.count.tolist() == [float((y == 0).sum()), float((y == 1).sum())]
    ema = module.ema_model
    with torch.no_grad():
        r = ema.residuals(ema.mechanisms(ema.encode(batch["x"])[0]), batch["labels"])[:, model.graph.index("lesion")]
    torch.testing.assert_close(moments.total[0], r[y == 0].sum(0))
    assert torch.equal(module.model.exogenous.moments["lesion"].count, moments.count)  # both models carry them


def test_checkpoints_without_priors_load_empty(tmp_path):
    model, _ = tiny_model("brain", n=256)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("exogenous.")}
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()},
                "hyper_parameters": {**model.config, "graph": model.graph.to_dict()}}, path)
    loaded = CausalDiffAE.from_checkpoint(path, ema=False)
    assert float(loaded.exogenous.moments["lesion"].count.sum()) == 0.0


def test_guidance_against_the_factual_condition_leaves_a_no_op_alone(brain):
    """eps_f + w (eps_cf - eps_f) = eps_f when nothing is intervened: only the change is amplified."""
    model, (x0, y0), _ = brain
    plain = CounterfactualPipeline(model)(x0, y0, {}, steps=3)
    factual = CounterfactualPipeline(model)(x0, y0, {}, steps=3, guidance=4.0)
    null = CounterfactualPipeline(model, guide_against="null")(x0, y0, {}, steps=3, guidance=4.0)
    torch.testing.assert_close(factual.cf_x, plain.cf_x, atol=1e-5, rtol=0)
    assert (null.cf_x - plain.cf_x).abs().mean() > 1e-3
    moved = CounterfactualPipeline(model)(x0, y0, "age=70", steps=3, guidance=4.0)
    assert (moved.cf_x - plain.cf_x).abs().mean() > 1e-3


def test_cli_flags_reach_the_pipeline(tmp_path):
    """--guide-against / --exogenous become the pipeline's switches; a wrong value stops argparse with its name."""
    import argparse

    from causaldiff.commands.common import add_inference_args, options

    p = argparse.ArgumentParser()
    add_inference_args(p)
    opts = options(p.parse_args(["--checkpoint", "x", "--guide-against", "null", "--exogenous", "keep", "--seed", "3"]))
    assert (opts.guide_against, opts.exogenous, opts.seed) == ("null", "keep", 3)
    assert options(p.parse_args(["--checkpoint", "x"])).guide_against == "factual"
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "x", "--exogenous", "never"])
    with pytest.raises(ValueError, match="guide_against must be one of"):
        CounterfactualPipeline(tiny_model("brain", n=256)[0], guide_against="sideways")
