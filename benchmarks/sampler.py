"""Sampler speed, side by side in one run: causaldiff vs the diffusers DDIM loops a user would write.

1. loop overhead: per-step time with a stand-in network that costs nothing (it returns its input), so the loop's
   own cost is timed directly, never as a difference of two noisy timings (which once came out negative);
2. end to end: an 8 x 5 counterfactual grid with the pendulum32 UNet: causaldiff (one shared inversion, all cells
   decoded in one batch) vs diffusers' DDIMInverseScheduler + DDIMScheduler loops run per grid column;
3. the limit: causaldiff's wall time / (its network calls x one UNet forward at the same batch size);
Every CPU timing is repeated, the contenders interleaved round by round, and reported as minimum, median and
spread ((max - min) / median); ratios use the medians.
4. on a GPU: eager vs CUDA-graph-captured loop, images/s at 32 and 64 px, batch 64, fp32 and bf16.
Run: ``python benchmarks/sampler.py [--steps 50] [--checkpoint CKPT]``; writes benchmarks/results/sampler.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import yaml
from diffusers import DDIMInverseScheduler, DDIMScheduler

from causaldiff.data.worlds import get_world
from causaldiff.diffusion.sampler import CapturedLoop, ddim_loop
from causaldiff.diffusion.schedule import invert_tables, sample_tables, scheduler_config
from causaldiff.hparams import kwargs_for
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.io import atomic_write_text
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.pixels import to_unit

ROOT = Path(__file__).parent.parent


def sync(device) -> None:
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


def interleaved(runs: dict, repeats: int) -> dict[str, dict[str, float]]:
    """Time each of ``runs`` (name -> fn) once per round for ``repeats`` rounds after a warm-up round, so slow
    phases of a shared machine hit every contender alike; {name: {min, median, spread}} in seconds."""
    times = {k: [] for k in runs}
    for r in range(repeats + 1):
        for k, fn in runs.items():
            t0 = time.perf_counter()
            fn()
            if r:
                times[k].append(time.perf_counter() - t0)
    return {k: summary(v) for k, v in times.items()}


def summary(times: list[float]) -> dict[str, float]:
    med = statistics.median(times)
    return {"min": min(times), "median": med, "spread": (max(times) - min(times)) / med}


def best_of(fn, repeats: int, device="cpu") -> float:
    """Minimum wall time of ``repeats`` runs (after one warm-up): the least noisy estimate on a shared machine."""
    fn()
    times = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        times.append(time.perf_counter() - t0)
    return min(times)


def diffusers_cell_loop(eps_fn, x, cond_f, cond_cf, config, steps):
    """What a user writes with diffusers: invert under the factual condition, then sample under the new one."""
    inv, fwd = DDIMInverseScheduler(**config), DDIMScheduler(**config)
    inv.set_timesteps(steps)
    fwd.set_timesteps(steps)
    b = x.shape[0]
    for t in inv.timesteps:
        x = inv.step(eps_fn(x, t.expand(b).to(x.device), cond_f), t, x).prev_sample
    for t in fwd.timesteps:
        x = fwd.step(eps_fn(x, t.expand(b).to(x.device), cond_cf), t, x, eta=0.0).prev_sample
    return x


def loop_overhead(steps: int, repeats: int) -> dict:
    """Per-step cost of the loops alone, on one thread: the stand-in network returns its input at no cost."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    config = scheduler_config()
    x, cond = torch.randn(8, 3, 32, 32), torch.zeros(8, 1)

    def eps_fn(x_, t, c):
        return x_

    st, it = sample_tables(config, steps), invert_tables(config, steps)
    runs = {"causaldiff": lambda: ddim_loop(eps_fn, ddim_loop(eps_fn, x, cond, it), cond, st),
            "diffusers": lambda: diffusers_cell_loop(eps_fn, x, cond, cond, config, steps)}
    with torch.no_grad():
        t = interleaved(runs, repeats)
    torch.set_num_threads(threads)
    per = {k: {q: round(v / (2 * steps) * 1e6, 1) if q != "spread" else round(v, 3) for q, v in t[k].items()}
           for k in runs}
    return {"steps": 2 * steps, "repeats": repeats, "causaldiff_us_per_step": per["causaldiff"],
            "diffusers_us_per_step": per["diffusers"],
            "ratio_median": round(t["causaldiff"]["median"] / t["diffusers"]["median"], 3)}


def pendulum_model(checkpoint: str | None) -> CausalDiffAE:
    """The trained checkpoint, or the pendulum32 config's architecture untrained (speed does not need weights)."""
    if checkpoint:
        return CausalDiffAE.from_checkpoint(checkpoint)
    cfg = yaml.safe_load((ROOT / "configs" / "pendulum32.yaml").read_text())
    world = get_world("pendulum", 32)
    torch.manual_seed(0)
    model = CausalDiffAE(world.graph.to_dict(), None, 32, 3, **kwargs_for(CausalDiffAE, cfg["model"]))
    model.scm.fit(world.sample(1000, seed=0)[1], steps=50)
    return model.eval()


def grid_end_to_end(model: CausalDiffAE, steps: int, repeats: int) -> dict:
    world = get_world("pendulum", 32)
    exo, labels = world.sample(8, seed=0)
    x = to_unit(world.render(exo, labels))
    pipe = CounterfactualPipeline(model)
    dos = [[], *[f"light_angle={v}" for v in (60, 80, 100, 120)]]
    calls = []
    eps = model.eps

    def counting(x_, t, c):
        calls.append(x_.shape[0])
        return eps(x_, t, c)

    with torch.no_grad():
        model.eps = counting
        pipe.counterfactuals(pipe.abduct(x, labels, steps), dos, steps)
        model.eps = eps
        ours_calls, ours_evals = len(calls), sum(calls)
        mu_u, _, mu_s, _ = model.encode(x)
        ab = pipe.abduct(x, labels, 1)
        conds = [model.condition(pipe.intervene(ab, do)[0], mu_s) for do in dos]
        cond_f = model.condition(model.mechanisms(mu_u), mu_s)
        theirs_evals = 2 * steps * 8 * len(dos)
        t8, t40 = torch.full((8,), 500), torch.full((40,), 500)
        # the limit: causaldiff's own network calls (steps at batch 8, steps at batch 40) and nothing else
        runs = {"causaldiff": lambda: pipe.counterfactuals(pipe.abduct(x, labels, steps), dos, steps),
                "diffusers": lambda: [diffusers_cell_loop(eps, x, cond_f, c, model.scheduler_config, steps)
                                      for c in conds],
                "limit": lambda: ([eps(x, t8, cond_f) for _ in range(steps)],
                                  [eps(x.repeat(5, 1, 1, 1), t40, cond_f.repeat(5, 1)) for _ in range(steps)])}
        t = interleaved(runs, repeats)
    med = {k: v["median"] for k, v in t.items()}
    return {"grid": "8 x 5", "steps": steps, "repeats": repeats,
            **{f"{k}_s": {q: round(v, 3) for q, v in t[k].items()} for k in runs},
            "speedup_median": round(med["diffusers"] / med["causaldiff"], 2), "causaldiff_network_calls": ours_calls,
            "causaldiff_image_evaluations": ours_evals, "diffusers_image_evaluations": theirs_evals,
            "causaldiff_over_limit_median": round(med["causaldiff"] / med["limit"], 3)}


def capture_row(model: CausalDiffAE, size: int, steps: int) -> dict:
    """Eager vs captured sampling loop for one model at batch 64 (model already on CUDA in its dtype)."""
    dtype = model.condition_proj.null.dtype
    x = torch.randn(64, 3, size, size, device="cuda", dtype=dtype)
    cond = torch.randn(64, model.condition_proj.null.shape[0], device="cuda", dtype=dtype)
    tables = sample_tables(model.scheduler_config, steps, "cuda")
    with torch.no_grad():
        eager = best_of(lambda: ddim_loop(model.eps, x, cond, tables), 3, "cuda")
        inputs = {"x": x, "cond": cond, "null": None, "residuals": None}
        loop = CapturedLoop(ddim_loop, model.eps, inputs, {"tables": tables})
        captured = best_of(lambda: loop(inputs), 3, "cuda")
        err = (loop(inputs).float() - ddim_loop(model.eps, x, cond, tables).float()).abs().max().item()
    return {"size": size, "dtype": str(dtype).replace("torch.", ""), "batch": 64, "steps": steps,
            "eager_images_per_s": round(64 / eager, 1), "captured_images_per_s": round(64 / captured, 1),
            "speedup": round(eager / captured, 2), "max_abs_diff": err}


def gpu_capture(model_cfg: dict, steps: int) -> list[dict]:
    rows = []
    world = get_world("pendulum", 32)
    for size in (32, 64):
        for dtype in (torch.float32, torch.bfloat16):
            torch.manual_seed(0)
            model = CausalDiffAE(world.graph.to_dict(), None, size, 3,
                                 **kwargs_for(CausalDiffAE, model_cfg)).cuda().to(dtype).eval()
            rows.append(capture_row(model, size, steps))
            print(rows[-1], flush=True)
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--repeats", type=int, default=5, help="interleaved timing rounds (loop overhead: at least 20)")
    ap.add_argument("--checkpoint", help="a trained pendulum32 checkpoint (default: the config's UNet, untrained)")
    ap.add_argument("--gpu-only", action="store_true", help="skip the CPU sections (for a GPU host)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sampler.json"))
    args = ap.parse_args()
    result = {"meta": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                       "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}}
    if not args.gpu_only:
        cpu_sections(result, args)
    if torch.cuda.is_available():
        cfg = yaml.safe_load((ROOT / "configs" / "pendulum32.yaml").read_text())["model"]
        result["gpu_capture"] = gpu_capture(cfg, args.steps)
    atomic_write_text(args.out, json.dumps(result, indent=2))
    print(f"wrote {args.out}")


def cpu_sections(result: dict, args) -> None:
    result["loop_overhead"] = lo = loop_overhead(args.steps, max(args.repeats, 20))
    c, d = lo["causaldiff_us_per_step"], lo["diffusers_us_per_step"]
    print(f"loop overhead per step (zero-cost stand-in network, {lo['repeats']} interleaved rounds; min / median / "
          f"spread): causaldiff {c['min']} / {c['median']} us / {c['spread']}, diffusers {d['min']} / {d['median']} "
          f"us / {d['spread']}; median ratio {lo['ratio_median']} (target <= 0.333)", flush=True)
    result["grid"] = g = grid_end_to_end(pendulum_model(args.checkpoint), args.steps, args.repeats)
    print(f"8 x 5 grid, {args.steps} steps, {g['repeats']} interleaved rounds (min / median s, spread):", flush=True)
    for k in ("causaldiff", "diffusers", "limit"):
        r = g[f"{k}_s"]
        print(f"  {k:<10} {r['min']:.3f} / {r['median']:.3f}  spread {r['spread']:.2f}")
    print(f"causaldiff: {g['causaldiff_image_evaluations']} image evals in {g['causaldiff_network_calls']} calls, "
          f"diffusers {g['diffusers_image_evaluations']}; median speed-up {g['speedup_median']}x (target >= 1.5); "
          f"causaldiff / limit (medians) {g['causaldiff_over_limit_median']} (target <= 1.05)", flush=True)


if __name__ == "__main__":
    main()
