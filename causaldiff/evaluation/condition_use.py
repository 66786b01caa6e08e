"""Does the decoder obey its condition? Three diagnostics on pairs of images (A, B = A[perm]).

- **swap test**: decode A's noise (fresh, or A's DDIM-inverted noise) under A's condition with B's z blocks, with B's
  style code s, or with both; per node, the median fraction of the label gap y_B - y_A that the anti-causal
  predictor's reading moves, measured from the decode under A's own condition. 0: the decoder ignored it; 1: it
  followed fully. Discrete nodes: of the pairs with y_A != y_B whose decode under A's own condition reads as A's
  class, the share read as B's class (a pair the predictor already misreads as B's is not movement: on brain32 that
  was 16 % of the sex pairs, as often as the predictor misreads the inputs themselves).
  Beside it, the **reference**: the same fraction read off the images a perfect z swap would give, the world's
  true counterfactual of each A with every node set to B's value (or, without a world, B itself), from A's own
  image. No decoder is asked to beat it: a label the image shows only through its descendants is read regressed
  to the mean (brain's age and sex, which the world does not draw: the truth moves them 0.68 and 0.88, n = 256).
- **x0 sensitivity**: mean |x̂0(x_t, cond_A) - x̂0(x_t, cond_B)| from the same x_t, beside the x0 error
  mean |x̂0(x_t, cond_A) - x_A|, at several t (:meth:`CausalDiffAE.x0`, DDIM eq. 9).
- **collapse check**: mean |s_A - s_B|, mean |z_A - z_B| per block, and the norms of the condition vector and of
  the time embedding it is added to.
"""

from __future__ import annotations

import torch
from torch import Tensor

from causaldiff.diffusion.schedule import add_noise
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.pixels import to_unit

NOISE_LEVELS = (0.1, 0.3, 0.5, 0.7, 0.9)  # t / T where x0 sensitivity is measured (t = 100 ... 900 at T = 1000)
SWAPS = ("z", "s", "both")


def pair_permutation(n: int, seed: int = 0) -> Tensor:
    """(n,) a permutation without fixed points: B = A[perm] is always another image."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(1)
    return perm


def timesteps(model: CausalDiffAE) -> list[int]:
    """The timesteps of :data:`NOISE_LEVELS` for this model's T."""
    return [int(f * model.alphas_cumprod.shape[0]) for f in NOISE_LEVELS]


@torch.no_grad()
def x0_sensitivity(model: CausalDiffAE, x: Tensor, z: Tensor, s: Tensor, perm: Tensor,
                   at: list[int] | None = None, seed: int = 0) -> dict[int, dict[str, float]]:
    """{t: {"swap": mean |x0(cond_A) - x0(cond_B)|, "error": mean |x0(cond_A) - x|}} in [-1, 1] units, at the
    timesteps ``at`` (default :func:`timesteps`)."""
    gen = torch.Generator().manual_seed(seed)
    cond_a, cond_b = model.condition(z, s), model.condition(z[perm], s[perm])
    out = {}
    for t in at or timesteps(model):
        a = model.alphas_cumprod[t]
        x_t = add_noise(x, torch.randn(x.shape, generator=gen).to(x.device), a)
        ts = torch.full((x.shape[0],), t, device=x.device)
        x0_a, x0_b = model.x0(x_t, ts, cond_a), model.x0(x_t, ts, cond_b)
        out[t] = {"swap": (x0_a - x0_b).abs().mean().item(), "error": (x0_a - x).abs().mean().item()}
    return out


@torch.no_grad()
def collapse(model: CausalDiffAE, z: Tensor, s: Tensor, perm: Tensor) -> dict:
    """Gaps between pairs' codes and the condition's size against the time embedding's (both (B, E) norms)."""
    unet = model.unet
    temb = [unet.time_embedding(unet.time_proj(torch.full((z.shape[0],), t, device=z.device)).to(z.dtype))
            for t in timesteps(model)]
    return {"s_gap": (s - s[perm]).abs().mean().item(),
            "z_gap": {n: (z[:, i] - z[perm, i]).abs().mean().item() for i, n in enumerate(model.graph.order)},
            "cond_norm": model.condition(z, s).norm(dim=1).mean().item(),
            "null_norm": model.null_condition(1).norm().item(),
            "temb_norm": torch.stack([e.norm(dim=1).mean() for e in temb]).mean().item()}


def _moved(graph, node: str, read: Tensor, read_ref: Tensor, y_a: Tensor, y_b: Tensor, min_gap: float) -> float:
    """Median fraction of the gap y_b - y_a moved by the reading from ``read_ref`` (continuous), or the share read as
    y_b of the pairs whose reference reading is y_a != y_b (discrete)."""
    if graph[node].discrete:
        keep = (y_a.round() != y_b.round()) & (read_ref.round() == y_a.round())
        return (read[keep].round() == y_b[keep].round()).float().mean().item() if keep.any() else float("nan")
    gap = y_b - y_a
    keep = gap.abs() >= min_gap
    return ((read - read_ref)[keep] / gap[keep]).median().item() if keep.any() else float("nan")


def true_swap(world, exogenous: dict[str, Tensor], labels: dict[str, Tensor], perm: Tensor) -> Tensor:
    """(B, C, H, W) in [-1, 1]: each A rendered from its own exogenous noise with every node set to B's value,
    what a perfect z swap would decode."""
    _, img = world.counterfactual(exogenous, labels, {n: v[perm] for n, v in labels.items()})
    return to_unit(img)


@torch.no_grad()
def reference_swap(graph, predictor, x: Tensor, labels: dict[str, Tensor], perm: Tensor,
                   reference: Tensor | None = None) -> dict[str, float]:
    """{node: fraction of the A→B gap moved} by the predictor's reading of ``reference`` (B, C, H, W) (default:
    B = x[perm]) from its reading of x, with the swap test's pair rules; pairs with an unknown (NaN) label are left
    out."""
    dev = next(predictor.parameters()).device
    read = {k: v.cpu() for k, v in predictor.predict(x.to(dev)).items()}
    moved = {k: v.cpu() for k, v in predictor.predict((x[perm] if reference is None else reference).to(dev)).items()}
    y = {n: v.float().cpu() for n, v in labels.items()}
    return {n: _moved(graph, n, moved[n], read[n], y[n], y[n][perm], 0.5 * y[n][y[n].isfinite()].std().item())
            for n in graph.order}


@torch.no_grad()
def swap_test(pipe: CounterfactualPipeline, predictor, x: Tensor, labels: dict[str, Tensor], perm: Tensor,
              steps: int = 20, seed: int = 0, fresh_depth: float = 1.0) -> dict[str, dict[str, dict[str, float]]]:
    """{noise kind: {swap: {node: fraction moved}}} for noise kinds ``fresh`` and ``inverted``.

    Fresh N(0, I) noise is decoded from ``fresh_depth`` T (1: x_T; below 1 it stands in for x_t0, a diagnostic of
    where a decoder's generation fails); inverted noise at the pipeline's depth.

    Pairs whose continuous labels differ by less than half the label's std are left out of that node's median.
    """
    ab = pipe.abduct(x, labels, steps)
    dev = ab.z.device
    p, perm = perm.to(dev), perm.cpu()
    fresh = torch.randn(x.shape, generator=torch.Generator().manual_seed(seed)).to(dev)
    y = {n: v.float().cpu() for n, v in ab.labels.items()}
    out = {}
    for kind, noise in (("fresh", fresh), ("inverted", ab.noise)):
        conds = [(ab.z, ab.s)] + [(ab.z[p] if w != "s" else ab.z, ab.s[p] if w != "z" else ab.s) for w in SWAPS]
        # plain decoding under each condition: what the decoder draws from z, nothing kept from a factual image
        decoded = pipe.decode(noise.repeat(len(conds), 1, 1, 1), torch.cat([c[0] for c in conds]),
                              torch.cat([c[1] for c in conds]), steps, 1.0, None, keep_unchanged=False,
                              depth=fresh_depth if kind == "fresh" else None)
        reads = [{k: v.cpu() for k, v in predictor.predict(d.to(next(predictor.parameters()).device)).items()}
                 for d in decoded.chunk(len(conds))]
        out[kind] = {w: {n: _moved(pipe.graph, n, reads[1 + j][n], reads[0][n], y[n], y[n][perm],
                                   0.5 * y[n].std().item()) for n in pipe.graph.order}
                     for j, w in enumerate(SWAPS)}
    return out


def condition_use(pipe: CounterfactualPipeline, predictor, x: Tensor, labels: dict[str, Tensor], steps: int = 20,
                  seed: int = 0, fresh_depth: float = 1.0, world=None, exogenous: dict | None = None) -> dict:
    """All three diagnostics on the images x (B, C, H, W) in [-1, 1]; ``predictor`` None skips the swap test.

    With the ``world`` and the images' ``exogenous`` noise, the swap test's reference is the true swap
    (:func:`true_swap`); without, the image B."""
    model = pipe.model
    perm = pair_permutation(x.shape[0], seed)
    x = x.to(pipe.device)
    with torch.no_grad():
        mu_u, _, s, _ = model.encode(x)
        z = model.mechanisms(mu_u)
    report = {"x0": x0_sensitivity(model, x, z, s, perm.to(x.device), seed=seed),
              "collapse": collapse(model, z, s, perm.to(x.device))}
    if predictor is not None:
        report["swap"] = swap_test(pipe, predictor, x, labels, perm, steps, seed, fresh_depth)
        truth = None if world is None else true_swap(world, exogenous, labels, perm)
        report["swap_reference"] = {"images": "truth" if world is not None else "B",
                                    "z": reference_swap(pipe.graph, predictor, x.cpu(), labels, perm, truth)}
    return report
