"""GPU checks (skipped without CUDA): fused kernel on the device, CUDA-graph loop, bf16, pipeline capture."""

import pytest
import torch

from causaldiff.diffusion.kernels import ddim_update_fused, ddim_update_reference
from causaldiff.diffusion.sampler import CapturedLoop, ddim_loop
from causaldiff.diffusion.schedule import make_step, sample_tables
from causaldiff.inference.pipeline import CounterfactualPipeline
from tests.helpers import tiny_model

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_fused_kernel_on_cuda(dtype):
    g = torch.Generator(device="cuda").manual_seed(0)
    x, ec, eu = (torch.randn(64, 3, 32, 32, device="cuda", generator=g).to(dtype) for _ in range(3))
    step = make_step(0.3, 0.9)
    step = type(step)(*(v.cuda() for v in step))
    for w, clip, u in [(1.0, None, None), (3.0, None, eu), (2.0, 1.0, eu)]:
        ref = ddim_update_reference(x.float(), ec.float(), None if u is None else u.float(), step, w, clip)
        out = ddim_update_fused(x, ec, u, step, w, clip)
        tol = 1e-5 if dtype == torch.float32 else 2e-2
        assert out.dtype == dtype
        torch.testing.assert_close(out.float(), ref, atol=tol, rtol=tol)


def test_captured_loop_matches_eager():
    model, batch = tiny_model()
    model = model.cuda()
    x = batch["x"].cuda()
    with torch.no_grad():
        mu_u, _, mu_s, _ = model.encode(x)
        cond = model.condition(model.mechanisms(mu_u), mu_s)
        tables = sample_tables(model.scheduler_config, 10, "cuda")
        null = model.null_condition(1).expand_as(cond)
        eager = ddim_loop(model.eps, x, cond, tables, 2.0, null)
        inputs = lambda x, null: {"x": x, "cond": cond, "null": null, "residuals": None}  # noqa: E731
        loop = CapturedLoop(ddim_loop, model.eps, inputs(x, null), {"tables": tables, "guidance": 2.0})
        torch.testing.assert_close(loop(inputs(x, null)), eager, atol=1e-4, rtol=1e-4)
        x2 = torch.randn_like(x)  # replay on new inputs
        torch.testing.assert_close(loop(inputs(x2, null)), ddim_loop(model.eps, x2, cond, tables, 2.0, null),
                                   atol=1e-4, rtol=1e-4)
        factual = cond.flip(0)  # a per-image reference (guidance against the factual condition)
        torch.testing.assert_close(loop(inputs(x2, factual)), ddim_loop(model.eps, x2, cond, tables, 2.0, factual),
                                   atol=1e-4, rtol=1e-4)


def test_pipeline_capture_equals_eager():
    model, batch = tiny_model()
    model = model.cuda()
    eager = CounterfactualPipeline(model)(batch["x"][:4], None, "light_angle=90", steps=8)
    pipe = CounterfactualPipeline(model, capture=True)
    captured = pipe(batch["x"][:4], None, "light_angle=90", steps=8)
    again = pipe(batch["x"][:4], None, "light_angle=90", steps=8)  # replay
    assert pipe.run_loop.capture and len(pipe.run_loop._graphs) == 2
    torch.testing.assert_close(captured.cf_x, eager.cf_x, atol=1e-4, rtol=1e-4)
    assert torch.equal(again.cf_x, captured.cf_x)


def test_pipeline_capture_with_residual_inversion_returns_x():
    model, batch = tiny_model()
    model = model.cuda()
    x = batch["x"][:4].cuda()
    pipe = CounterfactualPipeline(model, inversion="residual", capture=True)
    ab = pipe.abduct(x, None, steps=8)
    null, moved = pipe.counterfactuals(ab, [[], "light_angle=90"], steps=8)
    eager = CounterfactualPipeline(model, inversion="residual").counterfactuals(ab, ["light_angle=90"], steps=8)[0]
    assert (null.cf_x - x).abs().max().item() < 1e-4  # replayed with the abduction's residuals
    torch.testing.assert_close(moved.cf_x, eager.cf_x, atol=1e-4, rtol=1e-4)


def test_every_recommended_loop_is_captured_and_matches_eager():
    """brain32's path: residual abduction (retrace), keeping unchanged pixels (masked loop) and a transplant, each
    captured once and replayed, equal to the eager run."""
    from causaldiff.inference.sites import SiteBank

    model, batch = tiny_model("brain", n=256)
    model = model.cuda()
    x, labels = batch["x"][:4], {k: v[:4] * 0 for k, v in batch["labels"].items()}  # lesion-free
    bank = {"lesion": SiteBank(torch.tensor([[0.4, 0.5, 0.5], [0.6, 0.4, 0.5]]), torch.ones(2, 1, 5, 5) * 0.3)}
    run = lambda pipe: pipe.counterfactuals(pipe.abduct(x, labels, 8), ["lesion=1", "age+=5"], 8, 2.0,  # noqa: E731
                                            torch.Generator().manual_seed(0))
    eager = run(CounterfactualPipeline(model, "residual", keep_unchanged=True, site_banks=bank))
    pipe = CounterfactualPipeline(model, "residual", keep_unchanged=True, capture=True, site_banks=bank)
    captured, again = run(pipe), run(pipe)
    loops = {key[0].__name__ for key in pipe.run_loop._graphs}
    assert pipe.run_loop.capture and loops == {"retrace", "masked_loop", "transplant_loop"}
    for a, b, c in zip(eager, captured, again):
        torch.testing.assert_close(b.cf_x, a.cf_x, atol=1e-4, rtol=1e-4)
        assert torch.equal(c.cf_x, b.cf_x)
