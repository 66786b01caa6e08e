"""Exogenous codes of discrete nodes (drawn when do() switches a class) and guidance against the factual condition."""

import warnings

import pytest
import torch

from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.models.exogenous import ClassBank
from causaldiff.training.module import CausalDiffAEModule
from tests.helpers import TINY, tiny_model


def test_class_bank_keeps_the_latest_deviations_per_class_and_samples_them_seeded():
    bank = ClassBank(2, 4, 3)
    r = torch.arange(18.0).reshape(6, 3)
    y = torch.tensor([0, 1, 0, 0, 0, 0])
    bank.update(r, y, torch.ones(6))  # five of class 0 into four slots: the first is overwritten
    assert bank.written.tolist() == [5, 1]
    assert {tuple(row) for row in bank.bank[0].tolist()} == {tuple(row) for row in r[[2, 3, 4, 5]].tolist()}
    torch.testing.assert_close(bank.bank[1, 0], r[1])
    draw = lambda seed: bank.sample(torch.tensor([0] * 8), torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(1), draw(1))
    stored = {tuple(row) for row in r[[2, 3, 4, 5]].tolist()}
    assert {tuple(row) for row in draw(2).tolist()} <= stored  # every draw is a stored deviation
    assert torch.equal(bank.sample(torch.tensor([1, 1])), r[[1, 1]])  # a class holding one deviation gives it
    torch.testing.assert_close(bank.bank[0], r[[5, 2, 3, 4]])  # slots in order of arrival, wrapped
    bank.update(r[:2] + 100, torch.tensor([0, 0]), torch.tensor([1, 0]))  # the second row is not seen
    assert bank.written.tolist() == [6, 1]
    torch.testing.assert_close(bank.bank[0], torch.stack([r[5], r[0] + 100, r[3], r[4]]))  # the oldest (r2) goes


@pytest.fixture(scope="module")
def brain():
    """A tiny brain model whose lesion=1 bank holds deviations near 5, and lesion-free / lesion images."""
    model, _ = tiny_model("brain", n=256)
    d = model.latent_dim
    torch.manual_seed(0)
    ones = {n: torch.ones(20) for n in model.graph.order}
    model.exogenous.update(5.0 + 0.1 * torch.randn(20, len(model.graph), d), ones, ones)
    model.exogenous.banks["lesion"].written[0] = 20  # class 0 too, so do(lesion=0) draws (zeros)
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
    assert (draws[0] - 5.0).abs().max() < 0.5  # from the bank near 5: nothing of the lesion-free deviation is left
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


def test_training_fills_the_banks_from_the_ema_encoder():
    model, batch = tiny_model("brain", n=256)
    module = CausalDiffAEModule(model.graph.to_dict(), image_size=16, channels=1, **TINY)
    module._update_exogenous(batch)
    bank = module.ema_model.exogenous.banks["lesion"]
    y = batch["labels"]["lesion"]
    assert bank.written.tolist() == [int((y == 0).sum()), int((y == 1).sum())]
    ema = module.ema_model
    with torch.no_grad():
        r = ema.deviations(ema.mechanisms(ema.encode(batch["x"])[0]), batch["labels"])[:, model.graph.index("lesion")]
    torch.testing.assert_close(bank.bank[0, :int((y == 0).sum())], r[y == 0])
    assert torch.equal(module.model.exogenous.banks["lesion"].bank, bank.bank)  # both models carry them


def test_checkpoints_without_priors_load_empty(tmp_path):
    model, _ = tiny_model("brain", n=256)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("exogenous.")}
    state["exogenous.moments.lesion.count"] = torch.ones(2)  # an older layout of the priors is dropped too
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()},
                "hyper_parameters": {**model.config, "graph": model.graph.to_dict()}}, path)
    loaded = CausalDiffAE.from_checkpoint(path, ema=False)
    assert int(loaded.exogenous.banks["lesion"].written.sum()) == 0


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
    """--guide-against / --exogenous / --propagation become the pipeline's switches; a wrong value stops argparse."""
    import argparse

    from causaldiff.commands.common import add_inference_args, options

    p = argparse.ArgumentParser()
    add_inference_args(p)
    opts = options(p.parse_args(["--checkpoint", "pendulum32", "--guide-against", "null", "--exogenous", "keep",
                                 "--seed", "3", "--findings", "transplant", "--finding-guidance", "4"]))
    assert (opts.guide_against, opts.exogenous, opts.seed) == ("null", "keep", 3)
    assert opts.switches()["findings"] == "transplant" and opts.switches()["finding_guidance"] == 4.0
    default = options(p.parse_args(["--checkpoint", "pendulum32"]))
    assert (default.guide_against, default.propagation, default.inversion) == ("factual", "labels", "ddim")
    assert (default.findings, default.finding_guidance) == ("decode", 3.0)
    assert options(p.parse_args(["--checkpoint", "brain32"])).inversion == "residual"  # brain32 recommends it
    model = tiny_model("brain", n=256)[0]
    chosen = options(p.parse_args(["--checkpoint", "pendulum32", "--propagation", "mechanisms"]))
    assert chosen.pipeline("pendulum32").propagation == "mechanisms"  # a shipped model, offline
    with pytest.raises(SystemExit):
        p.parse_args(["--checkpoint", "x", "--exogenous", "never"])
    with pytest.raises(ValueError, match="guide_against must be one of"):
        CounterfactualPipeline(model, guide_against="sideways")
    with pytest.raises(ValueError, match="findings must be one of"):
        CounterfactualPipeline(model, findings="painted")
    with pytest.raises(ValueError, match="propagation must be one of"):
        CounterfactualPipeline(model, propagation="sideways")


def test_local_guidance_amplifies_only_where_the_prediction_changes():
    from causaldiff.diffusion.sampler import local_guidance

    base = torch.randn(2, 1, 8, 8)

    def eps_fn(x, t, cond):  # the condition adds cond[:, 0] to a 2x2 corner only
        out = base.repeat(x.shape[0] // 2, 1, 1, 1).clone()
        out[:, :, :2, :2] += cond[:, 0, None, None, None]
        return out

    c_cf, c_f = torch.ones(2, 3), torch.zeros(2, 3)
    eps = local_guidance(eps_fn, 4.0)(torch.zeros(2, 1, 8, 8), torch.zeros(2), torch.cat([c_cf, c_f], 1))
    torch.testing.assert_close(eps[:, :, :2, :2], base[:, :, :2, :2] + 4.0)  # the change, amplified 4x
    torch.testing.assert_close(eps[:, :, 4:, 4:], base[:, :, 4:, 4:])  # far from it: plain decoding
    same = local_guidance(eps_fn, 4.0)(torch.zeros(2, 1, 8, 8), torch.zeros(2), torch.cat([c_f, c_f], 1))
    torch.testing.assert_close(same, base)  # nothing changed: nothing amplified


def test_masked_decoding_keeps_every_unchanged_pixel_as_the_factual_decoding():
    from causaldiff.diffusion.masked import masked_loop
    from causaldiff.diffusion.sampler import ddim_loop
    from causaldiff.diffusion.schedule import sample_tables, scheduler_config

    def eps_fn(x, t, cond):  # the condition moves a 3x3 corner by cond, everything else by 5e-4 of it (a change
        out = 0.5 * x + 5e-4 * cond[:, 0, None, None, None]  # below the mask's level even at t = T)
        out[:, :, :3, :3] += cond[:, 0, None, None, None]
        return out

    tables = sample_tables(scheduler_config(), 10)
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    c_cf, c_f = torch.ones(2, 3), torch.zeros(2, 3)
    factual, plain = ddim_loop(eps_fn, noise, c_f, tables), ddim_loop(eps_fn, noise, c_cf, tables)
    masked = masked_loop(eps_fn, noise, c_cf, c_f, tables)
    far, corner = (..., slice(5, None), slice(5, None)), (..., slice(0, 2), slice(0, 2))
    assert torch.equal(masked[far], factual[far])  # away from the change: the factual decoding, bit for bit
    assert (plain[far] - factual[far]).abs().min() > 1e-4  # which decoding under c_cf does not keep
    torch.testing.assert_close(masked[corner], plain[corner])  # where it changes: the counterfactual decoding
    assert (masked[corner] - factual[corner]).abs().min() > 0.5
    guided = masked_loop(eps_fn, noise, c_cf, c_f, tables, guidance=3.0)
    assert torch.equal(guided[far], factual[far])
    assert ((guided - factual)[corner].abs() > 2 * (masked - factual)[corner].abs()).all()  # w amplifies the change


def test_local_guidance_in_the_pipeline_keeps_a_no_op(brain):
    model, (x0, y0), _ = brain
    plain = CounterfactualPipeline(model)(x0, y0, {}, steps=3)
    local = CounterfactualPipeline(model, guide_against="local")(x0, y0, {}, steps=3, guidance=4.0)
    torch.testing.assert_close(local.cf_x, plain.cf_x, atol=1e-5, rtol=0)
    drawn = CounterfactualPipeline(model, guide_against="local")(x0, y0, "lesion=1", steps=3, guidance=4.0,
                                                                  generator=torch.Generator().manual_seed(0))
    factual = CounterfactualPipeline(model)(x0, y0, "lesion=1", steps=3, guidance=4.0,
                                            generator=torch.Generator().manual_seed(0))
    assert 0 < (drawn.cf_x - plain.cf_x).abs().mean() < (factual.cf_x - plain.cf_x).abs().mean()
    masked = CounterfactualPipeline(model, guide_against="masked")
    torch.testing.assert_close(masked(x0, y0, {}, steps=3).cf_x, plain.cf_x, atol=1e-5, rtol=0)
    at_one = masked(x0, y0, "lesion=1", steps=3, generator=torch.Generator().manual_seed(0)).cf_x
    everywhere = CounterfactualPipeline(model)(x0, y0, "lesion=1", steps=3, generator=torch.Generator().manual_seed(0))
    moved = lambda cf: ((cf - plain.cf_x).abs() > 1e-4).float().mean()  # noqa: E731
    assert 0 < moved(at_one) < moved(everywhere.cf_x)  # masked acts at w = 1 too, on fewer pixels
