"""Guidance against the factual condition, and masked decoding (``keep_unchanged``): what each changes, measured."""

import pytest
import torch

from causaldiff.inference.pipeline import CounterfactualPipeline
from tests.helpers import brain_with_banks


@pytest.fixture(scope="module")
def brain():
    return brain_with_banks()


def test_guidance_amplifies_only_the_intervened_change_and_leaves_a_no_op_alone(brain):
    """eps_f + w (eps_cf - eps_f): the change grows with w, and a null intervention stays the reconstruction."""
    model, (x0, y0), _ = brain
    pipe = CounterfactualPipeline(model, findings="decode")
    ab = pipe.abduct(x0, y0, steps=3)
    recon = pipe.predict(ab.noise, ab.z, ab.s, 3)
    for w in (1.0, 2.0, 4.0):  # nothing intervened: eps_cf = eps_f, nothing to amplify
        torch.testing.assert_close(pipe.counterfactuals(ab, [{}], 3, w)[0].cf_x, recon, atol=1e-5, rtol=0)
    assert (pipe.counterfactuals(ab, ["age=70"], 3, 4.0)[0].cf_x - recon).abs().mean() > 1e-3


def test_the_guided_change_grows_with_w_where_the_condition_acts_and_nowhere_else():
    from causaldiff.diffusion.sampler import ddim_loop
    from causaldiff.diffusion.schedule import sample_tables, scheduler_config

    def eps_fn(x, t, cond):  # the condition acts on a 3x3 corner only
        out = 0.5 * x
        out[:, :, :3, :3] += 0.1 * cond[:, 0, None, None, None]
        return out

    tables = sample_tables(scheduler_config(), 10)
    noise = torch.randn(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    c_cf, c_f = torch.ones(2, 3), torch.zeros(2, 3)
    factual = ddim_loop(eps_fn, noise, c_f, tables)
    change = [ddim_loop(eps_fn, noise, c_cf, tables, guidance=w, null=c_f) - factual for w in (1.0, 2.0, 4.0)]
    corner = (..., slice(0, 3), slice(0, 3))
    size = [c[corner].abs().mean().item() for c in change]
    assert 0.01 < size[0] < size[1] < size[2]  # the intervened change grows with w ...
    for c in change:  # ... and nothing outside it moves
        c[corner] = 0
        assert c.abs().max() < 1e-5


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


def test_keep_unchanged_in_the_pipeline_keeps_a_no_op_and_changes_fewer_pixels(brain):
    model, (x0, y0), _ = brain
    plain = CounterfactualPipeline(model, findings="decode")(x0, y0, {}, steps=3)
    masked = CounterfactualPipeline(model, keep_unchanged=True, findings="decode")
    torch.testing.assert_close(masked(x0, y0, {}, steps=3).cf_x, plain.cf_x, atol=1e-5, rtol=0)
    at_one = masked(x0, y0, "lesion=1", steps=3, generator=torch.Generator().manual_seed(0)).cf_x
    everywhere = CounterfactualPipeline(model, findings="decode")(x0, y0, "lesion=1", steps=3,
                                                                  generator=torch.Generator().manual_seed(0))
    moved = lambda cf: ((cf - plain.cf_x).abs() > 1e-4).float().mean()  # noqa: E731
    assert 0 < moved(at_one) < moved(everywhere.cf_x)  # masked acts at w = 1 too, on fewer pixels
