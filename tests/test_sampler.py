import pytest
import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler

from causaldiff.diffusion.kernels import ddim_update
from causaldiff.diffusion.sampler import ddim_invert, ddim_sample
from causaldiff.diffusion.schedule import invert_tables, sample_tables, scheduler_config
from tests.helpers import tiny_model


@pytest.fixture(scope="module")
def model_and_cond():
    model, batch = tiny_model()
    with torch.no_grad():
        mu_u, _, mu_s, _ = model.encode(batch["x"][:3])
        cond = model.condition(model.mechanisms(mu_u), mu_s)
    return model, batch["x"][:3], cond


@pytest.mark.parametrize("steps", [1, 7, 20])
def test_sample_matches_diffusers_ddim(model_and_cond, steps):
    model, x, cond = model_and_cond
    noise = torch.randn(x.shape, generator=torch.Generator().manual_seed(0))
    sched = DDIMScheduler(**model.scheduler_config)
    sched.set_timesteps(steps)
    ref = noise.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            ref = sched.step(model.eps(ref, t.expand(3), cond), t, ref, eta=0.0).prev_sample
        ours = ddim_sample(model.eps, noise, cond, sample_tables(model.scheduler_config, steps))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("steps", [1, 7, 20])
def test_invert_matches_diffusers_inverse_ddim(model_and_cond, steps):
    model, x, cond = model_and_cond
    sched = DDIMInverseScheduler(**model.scheduler_config)
    sched.set_timesteps(steps)
    ref = x.clone()
    with torch.no_grad():
        for t in sched.timesteps:
            ref = sched.step(model.eps(ref, t.expand(3), cond), t, ref).prev_sample
        ours = ddim_invert(model.eps, x, cond, invert_tables(model.scheduler_config, steps))
    torch.testing.assert_close(ours, ref, atol=1e-5, rtol=0)


def test_guidance_is_one_batched_call_and_matches_formula(model_and_cond):
    model, x, cond = model_and_cond
    calls = []

    def eps_fn(x_, t, c):
        calls.append(x_.shape[0])
        return model.eps(x_, t, c)

    null = model.null_condition(1)
    tables = sample_tables(model.scheduler_config, 4)
    with torch.no_grad():
        out = ddim_sample(eps_fn, x, cond, tables, guidance=3.0, null=null)
        # reference: the same four steps with separate calls
        ref = x.clone()
        for step in tables.steps(3):
            e_c, e_u = model.eps(ref, step.t, cond), model.eps(ref, step.t, null.expand_as(cond))
            ref = ddim_update(ref, e_c, e_u, step, 3.0)
    assert calls == [6] * 4
    torch.testing.assert_close(out, ref, atol=1e-5, rtol=0)


def test_bad_steps():
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        sample_tables(scheduler_config(), 0)
    with pytest.raises(ValueError, match="exceeds"):
        invert_tables(scheduler_config(num_train_timesteps=10), 11)
