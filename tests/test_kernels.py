import os
import subprocess
import sys
import textwrap

import pytest
import torch

from causaldiff.diffusion.kernels import ddim_update, ddim_update_reference
from causaldiff.diffusion.sampler import ddim_step
from causaldiff.diffusion.schedule import make_step, sample_tables, scheduler_config

INTERPRET_CHECK = textwrap.dedent("""
    import torch
    from causaldiff.diffusion.kernels import ddim_update_fused, ddim_update_reference
    from causaldiff.diffusion.schedule import make_step
    g = torch.Generator().manual_seed(0)
    worst = 0.0
    for shape in [(3, 2, 5, 7), (2, 3, 32, 32), (1, 1, 1, 1)]:
        x, ec, eu = (torch.randn(shape, generator=g) for _ in range(3))
        for w, clip, u in [(1.0, None, None), (3.0, None, eu), (2.0, 1.0, eu), (1.0, 1.5, None), (0.0, None, eu)]:
            for a, b in [(0.3, 0.9), (0.9, 0.3), (0.0003, 1.0)]:
                step = make_step(a, b)
                r = ddim_update_reference(x, ec, u, step, w, clip)
                f = ddim_update_fused(x, ec, u, step, w, clip, block=128)
                worst = max(worst, ((r - f).abs() / (1 + r.abs())).max().item())
    print(worst)
""")


def test_fused_kernel_equals_reference_in_interpreter_mode():
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    proc = subprocess.run([sys.executable, "-c", INTERPRET_CHECK], env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 5e-5  # fp32 reordering; worst case a_from = 3e-4


def test_reference_maths_by_hand():
    x, eps = torch.full((1, 1, 1, 1), 0.5), torch.full((1, 1, 1, 1), 0.2)
    step = make_step(0.64, 0.36)
    x0 = (0.5 - 0.6 * 0.2) / 0.8
    assert ddim_update_reference(x, eps, None, step).item() == pytest.approx(0.6 * x0 + 0.8 * 0.2, abs=1e-6)
    eps_u = torch.zeros_like(eps)  # guidance w=2 doubles eps
    x0 = (0.5 - 0.6 * 0.4) / 0.8
    assert ddim_update_reference(x, eps, eps_u, step, 2.0).item() == pytest.approx(0.6 * x0 + 0.8 * 0.4, abs=1e-6)
    clipped = ddim_update_reference(x * 10, eps, None, step, clip=1.0).item()
    assert clipped == pytest.approx(0.6 * 1.0 + 0.8 * 0.2, abs=1e-6)
    assert torch.equal(ddim_update(x, eps, None, step), ddim_update_reference(x, eps, None, step))


@pytest.mark.slow
def test_compiled_step_has_no_graph_breaks():
    """The whole guided step (network call, guidance, update) with device coefficients compiles as one graph."""
    torch._dynamo.reset()
    net = torch.nn.Conv2d(3, 3, 1)
    cond_proj = torch.nn.Linear(8, 3)

    def eps_fn(x, t, cond):
        return net(x) + cond_proj(cond)[:, :, None, None] + t[:, None, None, None].float() * 1e-3

    tables = sample_tables(scheduler_config(num_train_timesteps=100), 10)
    null = torch.zeros(1, 8)

    steps = tables.steps(2)

    def step(x, cond, s):
        return ddim_step(eps_fn, x, cond, s, 2.0, null)

    compiled = torch.compile(step, fullgraph=True, dynamic=False)
    x, cond = torch.randn(2, 3, 8, 8), torch.randn(2, 8)
    with torch.no_grad():
        for s in steps[:3]:  # the coefficients are tensors: one graph serves every step
            torch.testing.assert_close(compiled(x, cond, s), step(x, cond, s), atol=1e-5, rtol=1e-5)
