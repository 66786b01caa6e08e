"""CounterfactualPipeline: abduct → intervene → predict, batched; inference only (no Lightning import).

1. Abduction: encoder posterior means give u, z = mechanisms(u) and s; the decoder's noise x_T comes from
   deterministic DDIM inversion of x under its factual condition (``residual``: with the per-step residuals that make
   decoding under the factual condition return x exactly), to T or, with ``depth`` < 1, to x_t0 at t0 = depth T.
2. Action: ``do(k = c)`` moves block z_k by ``g_k(c) - g_k(y_k)`` (keeping the individual's deviation; mode
   ``replace`` sets ``z_k = g_k(c)``); a discrete node whose class the intervention switches draws its deviation
   from the target class's exogenous prior instead (seeded: what a lesion-free image cannot say, e.g. where the
   lesion is); descendants' blocks move the same way to their counterfactual labels from the attribute SCM
   (``propagation="labels"``) or are recomputed through the latent mechanisms with their abducted u
   (``"mechanisms"``); non-descendant blocks and s are untouched.
3. Prediction: DDIM decoding of x_T under the counterfactual condition, with guidance weight w against the factual
   condition (``eps_f + w (eps_cf - eps_f)``: only the intervened change is amplified) or against the null one.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from causaldiff.checkpoint import recommended_switches
from causaldiff.diffusion.masked import masked_loop
from causaldiff.diffusion.sampler import EpsFn, LoopRunner, local_guidance, retrace
from causaldiff.diffusion.schedule import DDIMTables, add_noise, invert_tables, sample_tables
from causaldiff.inference.sites import BUMP_AT, SiteBank, Sites, abduct_sites, patch_side, site_loop
from causaldiff.interventions import Intervention, resolve
from causaldiff.models.causal_diffae import CausalDiffAE

Labels = dict[str, Tensor]


@dataclass
class Abduction:
    """What abduction recovers for a batch: labels (given or read out), z (B, n, d), s (B, style), noise x_t0 at
    t0 = ``depth`` T (x_T at depth 1), and with ``inversion='residual'`` the per-step residuals (S, B, C, H, W) that
    make the factual decoding exact."""

    labels: Labels
    z: Tensor
    s: Tensor
    noise: Tensor
    residuals: Tensor | None = None
    depth: float = 1.0


@dataclass
class CounterfactualOutput:
    cf_x: Tensor  # (B, C, H, W) in [-1, 1]
    cf_labels: Labels
    noise: Tensor  # abducted x_T (B, C, H, W)
    z: Tensor  # factual causal latents (B, n, d)
    cf_z: Tensor  # counterfactual causal latents (B, n, d)


GUIDE_AGAINST = ("factual", "local", "masked", "null")  # what guidance pushes away from (see the class)
FINDINGS = ("decode", "transplant")  # how a local finding that do() switches on is drawn (see the class)
INVERSIONS = ("ddim", "fixed-point", "residual")  # how the decoder's noise is abducted (see the class; the
# evaluation's no-abduction peer adds "none")


class CounterfactualPipeline:
    """Counterfactual images from a trained :class:`CausalDiffAE`.

    ``pipeline(x, labels, do="age+=10", steps=50, guidance=1.0)`` → :class:`CounterfactualOutput`.

    Args:
        mode: ``shift`` moves z_k by g_k(new) - g_k(old); ``replace`` sets z_k = g_k(new).
        propagation: how descendants follow: ``labels`` (their blocks move with the attribute SCM's counterfactual
            labels, as an intervened block moves with its own), ``mechanisms`` (through the learned latent SCM) or
            ``none`` (only the intervened blocks change). ``labels`` measures best (brain32: the effect gain of
            do(sex), do(age), read off the anatomy they act through, 0.00 / 0.12 with ``mechanisms``, 0.89 / 0.95).
        inversion: ``ddim`` (plain), ``fixed-point`` (a nearer inverse, ``1 + fixed_point_iters`` calls a step),
            ``residual`` (plain, plus the residuals that make the factual decoding retrace the inversion's path: a
            null intervention returns x exactly; see :func:`retrace`) or ``none`` (x_T drawn by forward-noising x to
            the last step, as the published CausalDiffAE code does).
        guide_against: what guidance ``w`` pushes away from: ``factual`` (the image's own condition, so only the
            intervened change is amplified and everything else stays as decoded), ``local`` (the same, amplified
            only on the pixels where the prediction changes most: see :func:`local_guidance`), ``masked`` (the
            counterfactual step, guided against the factual condition, only where the predicted image changes,
            and every other pixel the factual decoding's, so it stays as reconstructed; it applies at w = 1 too, and
            measures best on brain32: see :func:`masked_loop`) or ``null`` (classifier-free guidance, Ho & Salimans
            2022: the whole condition is amplified).
        findings: how a node marked ``local`` (a lesion) that do() switches on is drawn: ``decode`` (from its latent
            block, like any other node) or ``transplant`` (a site and appearance drawn, seeded, from those abducted
            where it was seen, added late in the decoding, with guidance ``finding_guidance`` only around it and
            every other pixel the factual decoding's; see :mod:`causaldiff.inference.sites`). Images without such a
            switch are decoded as ``guide_against`` says. Site banks come from :meth:`fit_sites`, or from
            ``site_source`` on first use.
        finding_guidance: the transplant's guidance weight inside its disk (3 measured best on brain32: at 1 the
            decoder erases half of the transplanted finding; guidance.md).
        exogenous: ``sample`` draws a switched discrete node's deviation from its class prior; ``keep`` shifts the
            abducted one (what models without fitted priors do).
        depth: how far the inversion goes, as a fraction of the training timesteps: the noise is abducted to
            t0 = depth T and counterfactuals are decoded from there, on the steps of the ``steps``-step schedule
            below t0 (Diff-SCM, Sanchez & Tsaftaris 2022, inverts to 0.75 T). Below 1 the steps nearest pure noise,
            where an inverted x_T under a far-off condition can send the decoding off the image manifold, are left
            out (brain32: ablation.md section 11).
        capture: on CUDA, capture each DDIM loop once as a CUDA graph and replay it.
    """

    def __init__(self, model: CausalDiffAE, mode: str = "shift", propagation: str = "labels",
                 inversion: str = "ddim", fixed_point_iters: int = 3, guide_against: str = "factual",
                 exogenous: str = "sample", findings: str = "decode", finding_guidance: float = 3.0,
                 depth: float = 1.0, capture: bool = False):
        for name, value, options in (("mode", mode, ("shift", "replace")),
                                     ("propagation", propagation, ("mechanisms", "labels", "none")),
                                     ("inversion", inversion, (*INVERSIONS, "none")),
                                     ("guide_against", guide_against, GUIDE_AGAINST),
                                     ("exogenous", exogenous, ("sample", "keep")),
                                     ("findings", findings, FINDINGS)):
            if value not in options:
                raise ValueError(f"{name} must be one of {options}, got {value!r}")
        self.model = model.eval()
        self.graph = model.graph
        if findings == "transplant" and not any(n.local for n in self.graph.nodes.values()):
            raise ValueError("findings='transplant' needs a node marked local: true in the graph (a binary finding "
                             "drawn at a site, e.g. a lesion); this model's graph has none")
        self.mode, self.propagation, self.inversion = mode, propagation, inversion
        self.guide_against, self.exogenous = guide_against, exogenous
        self.findings, self.finding_guidance, self.depth = findings, float(finding_guidance), _checked_depth(depth)
        self.inversion_iters = fixed_point_iters if inversion == "fixed-point" else 0
        self.run_loop = LoopRunner(capture)
        self._local_eps: dict[float, EpsFn] = {}  # one eps function per weight: captured loops reused
        self._tables: dict[tuple, DDIMTables] = {}
        self._warned: set[str] = set()
        self.site_banks: dict[str, SiteBank] = {}
        self.site_source: Callable[[], tuple[Tensor, Labels]] | None = None  # images + labels to fit banks from
        self.site_options: dict = {}  # t_bump / gain / disk_px overrides of site_loop's (for ablations)

    @classmethod
    def from_checkpoint(cls, path: str | Path, device: str | torch.device = "cpu", **kwargs) -> CounterfactualPipeline:
        """The pipeline of a checkpoint, with the switches it recommends (``recommended_switches``) under ``kwargs``
        (a value of None counts as not given); its site banks, if needed, come from the training split it records."""
        kwargs = {**recommended_switches(path), **{k: v for k, v in kwargs.items() if v is not None}}
        pipe = cls(CausalDiffAE.from_checkpoint(path, map_location="cpu").to(device), **kwargs)
        pipe.site_source = functools.partial(training_images, path)
        return pipe

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # ------------------------------------------------------------------ the three steps
    @torch.no_grad()
    def abduct(self, x: Tensor, labels: Labels | None = None, steps: int = 50,
               generator: torch.Generator | None = None) -> Abduction:
        """Encode x (B, C, H, W) in [-1, 1]; invert the decoder to its noise at ``depth`` under the factual
        condition."""
        m = self.model
        m.check_images(x)
        x = x.to(self.device, torch.float32)
        mu_u, _, mu_s, _ = m.encode(x)
        z = m.mechanisms(mu_u)
        labels = self._labels(labels, z)
        tables, cond, residuals = self._schedule("invert", steps), m.condition(z, mu_s), None
        if self.inversion == "none":  # a sample of q(x_T | x)
            noise = add_noise(x, torch.randn(x.shape, generator=generator).to(x.device), tables.a_to[-1])
        elif self.inversion == "residual":
            noise, residuals = retrace(m.eps, x, cond, tables, self._schedule("sample", steps))
        else:
            noise = self.run_loop(m.eps, x, cond, tables, fixed_point_iters=self.inversion_iters)
        return Abduction(labels, z, mu_s, noise, residuals, self.depth)

    @torch.no_grad()
    def intervene(self, ab: Abduction, do, generator: torch.Generator | None = None) -> tuple[Tensor, Labels]:
        """(cf_z (B, n, d), cf_labels) for interventions ``do`` (str, list of str, dict or Interventions)."""
        do = resolve(do, self.graph)
        cf_labels = self.model.scm.counterfactual(ab.labels, do, generator)
        targets = {iv.node: iv.values(ab.labels[iv.node].float()) for iv in do}
        for iv in do:
            self._warn_out_of_range(iv, targets[iv.node])
        if self.propagation == "labels":  # descendants' blocks follow the attribute SCM's labels
            moved = {d for iv in do for d in self.graph.descendants(iv.node)} - set(targets)
            targets.update({d: cf_labels[d].to(ab.z.device) for d in moved})
        new_blocks = {self.graph.index(n): self._moved_block(ab, n, v, generator) for n, v in targets.items()}
        cf_z = self.model.mechanisms.intervene(ab.z, new_blocks, propagate=self.propagation == "mechanisms")
        return cf_z, {k: v.cpu() for k, v in cf_labels.items()}

    def _moved_block(self, ab: Abduction, node: str, target: Tensor, generator: torch.Generator | None) -> Tensor:
        """g_k(target) plus the abducted deviation z_k - g_k(y_k) (``shift``; drawn from the target class's prior
        where a discrete class switches) or plus nothing (``replace``), (B, d)."""
        i, g, prior = self.graph.index(node), self.model.alignment.prior_block, self.model.exogenous
        g_new = g(i, target)
        if self.mode == "replace":
            return g_new
        deviation = ab.z[:, i] - g(i, ab.labels[node].float())
        if self.exogenous == "sample" and prior.has_code(node):
            switched = target.long() != ab.labels[node].long()
            if bool(switched.any()) and self._prior_fitted(node, target[switched]):
                deviation = torch.where(switched[:, None], prior.sample(node, target, generator), deviation)
        return g_new + deviation

    @torch.no_grad()
    def predict(self, noise: Tensor, cf_z: Tensor, s: Tensor, steps: int = 50, guidance: float = 1.0,
                z: Tensor | None = None, sites: Sites | None = None, residuals: Tensor | None = None,
                depth: float | None = None) -> Tensor:
        """Decode x_t0 (B, C, H, W) under the counterfactual condition [cf_z, s]; returns cf_x clamped to [-1, 1].

        ``noise`` is at the pipeline's ``depth`` (an abduction's); fresh Gaussian noise is x_T: pass ``depth=1``.

        ``z`` (B, n, d), the factual latents, is what guidance pushes away from when ``guide_against='factual'``.
        ``sites``, with ``findings='transplant'``: where and what to draw for a switched-on finding (see
        :class:`~causaldiff.inference.sites.Sites`); images with a NaN row are decoded as ``guide_against`` says.
        ``residuals`` (S, B, C, H, W): an exact abduction's (``inversion='residual'``), added after each step.
        """
        tables = self._schedule("sample", steps, depth)
        if residuals is not None and residuals.shape[0] != len(tables):
            raise ValueError(f"this abduction's residuals are for {residuals.shape[0]} steps; decode it with the "
                             f"steps and depth it was abducted with, not {len(tables)} ({steps} at depth "
                             f"{depth or self.depth})")
        drawn = None if sites is None else sites.drawn
        if drawn is None or not bool(drawn.any()):
            return self.decode(noise, cf_z, s, steps, guidance, z, residuals, depth=depth)
        if z is None:
            raise ValueError("a transplant keeps the factual decoding around it: it needs the factual latents z")
        m, dev = self.model, noise.device
        on, rest = drawn.nonzero().flatten(), (~drawn).nonzero().flatten()  # CPU row indices: no device sync
        part = lambda t, rows: None if t is None else t[:, rows]  # noqa: E731 (residuals are (S, B, ...))
        options = {"t_bump": round(BUMP_AT * m.scheduler_config["num_train_timesteps"]), **self.site_options}
        cf_x = torch.empty_like(noise)
        d = on.to(dev)
        cf_x[d] = site_loop(m.eps, noise[d], m.condition(cf_z[d], s[d]), m.condition(z[d], s[d]),
                            tables, self.finding_guidance,
                            Sites(sites.where[on], sites.patches[on]), residuals=part(residuals, d), **options)
        if len(rest):
            r = rest.to(dev)
            cf_x[r] = self.decode(noise[r], cf_z[r], s[r], steps, guidance, z[r], part(residuals, r), depth=depth)
        return cf_x.clamp(-1, 1)

    def decode(self, noise: Tensor, cf_z: Tensor, s: Tensor, steps: int, guidance: float, z: Tensor | None,
               residuals: Tensor | None = None, guide_against: str | None = None, depth: float | None = None) -> Tensor:
        """:meth:`predict` without transplants: x_t0 (B, C, H, W) decoded under [cf_z, s] with guidance ``guidance``
        against ``guide_against`` (default: the pipeline's); cf_x (B, C, H, W) clamped to [-1, 1]."""
        m, against = self.model, guide_against or self.guide_against
        tables, cond = self._schedule("sample", steps, depth), m.condition(cf_z, s)
        run = functools.partial(self.run_loop, tables=tables, residuals=residuals)
        if guidance == 1.0 and (against != "masked" or z is None):  # no factual decoding to keep
            return run(m.eps, noise, cond).clamp(-1, 1)
        if against == "null":
            return run(m.eps, noise, cond, guidance=guidance, null=m.null_condition(1)).clamp(-1, 1)
        if z is None:
            raise ValueError("guidance against the factual condition needs the factual latents z")
        if against == "factual":
            return run(m.eps, noise, cond, guidance=guidance, null=m.condition(z, s)).clamp(-1, 1)
        if against == "masked":
            return masked_loop(m.eps, noise, cond, m.condition(z, s), tables, guidance,
                               residuals=residuals).clamp(-1, 1)
        eps = self._local_eps.setdefault(guidance, local_guidance(m.eps, guidance))
        return run(eps, noise, torch.cat([cond, m.condition(z, s)], dim=1)).clamp(-1, 1)

    def __call__(self, x: Tensor, labels: Labels | None = None, do=(), steps: int = 50, guidance: float = 1.0,
                 generator: torch.Generator | None = None) -> CounterfactualOutput:
        ab = self.abduct(x, labels, steps, generator)
        return self.counterfactuals(ab, [do], steps, guidance, generator)[0]

    @torch.no_grad()
    def counterfactuals(self, ab: Abduction, dos: list, steps: int = 50, guidance: float = 1.0,
                        generator: torch.Generator | None = None) -> list[CounterfactualOutput]:
        """K interventions on the same abduction, decoded in one batch of B*K: one inversion for all of them."""
        cf = [self.intervene(ab, do, generator) for do in dos]
        k, b = len(dos), ab.z.shape[0]
        cf_z = torch.cat([c[0] for c in cf])
        sites = Sites.cat([self.draw_sites(ab.labels, c[1], steps, generator) for c in cf]) \
            if self.findings == "transplant" else None
        residuals = None if ab.residuals is None else ab.residuals.repeat(1, k, 1, 1, 1)
        cf_x = self.predict(ab.noise.repeat(k, 1, 1, 1), cf_z, ab.s.repeat(k, 1), steps, guidance, ab.z.repeat(k, 1, 1),
                            sites, residuals, ab.depth)
        return [CounterfactualOutput(cf_x[j * b:(j + 1) * b], cf[j][1], ab.noise, ab.z, cf[j][0]) for j in range(k)]

    # ------------------------------------------------------------------ site codes (findings="transplant")
    def fit_sites(self, node: str, x: Tensor, labels: Labels, steps: int = 20, n: int = 64) -> SiteBank:
        """Fill ``node``'s site bank from up to ``n`` images of x (N, C, H, W) whose label shows the finding (1)."""
        show = torch.nonzero(torch.as_tensor(labels[node]) == 1).flatten()[:n]
        if len(show) == 0:
            raise ValueError(f"no image with {node} = 1 to abduct {node}'s sites from")
        where, patches = abduct_sites(self, x[show], {k: torch.as_tensor(v)[show] for k, v in labels.items()}, node,
                                      steps)
        polarity = where[:, 2].median().sign()  # the finding's own (brighter / darker); a peak of the other sign is
        kept = where[:, 2].sign() == polarity  # where the removal missed it and moved the rest
        bank = SiteBank(where[kept], patches[kept])
        self.site_banks[node] = bank
        return bank

    def draw_sites(self, labels: Labels, cf_labels: Labels, steps: int = 20,
                   generator: torch.Generator | None = None) -> Sites:
        """Site codes for the local nodes switched from 0 to 1 (the first such node per image; NaN rows: none)."""
        b, m = len(next(iter(labels.values()))), self.model
        p = patch_side(m.image_size)
        sites = Sites(torch.full((b, 3), float("nan")), torch.zeros(b, m.channels, p, p))
        for node in self.graph.order:
            if not self.graph[node].local:
                continue
            on = (labels[node].cpu() == 0) & (cf_labels[node].cpu() == 1) & ~sites.drawn
            if bool(on.any()):
                drawn = self._site_bank(node, steps).sample(int(on.sum()), generator)
                if drawn.patches.shape[1:] != sites.patches.shape[1:]:
                    raise ValueError(f"{node}'s site bank holds {tuple(drawn.patches.shape[1:])} patches; this model "
                                     f"needs {tuple(sites.patches.shape[1:])} (refit it with fit_sites)")
                sites.where[on], sites.patches[on] = drawn.where, drawn.patches
        return sites

    def _site_bank(self, node: str, steps: int) -> SiteBank:
        if node not in self.site_banks:
            if self.site_source is None:
                raise ValueError(f"findings='transplant' needs {node}'s site bank: call fit_sites('{node}', x, labels) "
                                 "with images that show it, or set site_source")
            self.fit_sites(node, *self.site_source(), steps=steps)
        return self.site_banks[node]

    # ------------------------------------------------------------------ helpers
    def _schedule(self, kind: str, steps: int, depth: float | None = None) -> DDIMTables:
        """Device tables for ``kind`` in (sample, invert) down from / up to ``depth`` (default: the pipeline's),
        built once per (kind, steps, depth, device)."""
        depth = self.depth if depth is None else _checked_depth(depth)
        key = (kind, steps, depth, self.device)
        if key not in self._tables:
            make = sample_tables if kind == "sample" else invert_tables
            config = self.model.scheduler_config
            self._tables[key] = make(config, steps, self.device).below(depth * config["num_train_timesteps"])
        return self._tables[key]

    def _labels(self, labels: Labels | None, z: Tensor) -> Labels:
        read = self.model.alignment.readout(z)
        if labels is None:
            return read
        missing = [n for n in self.graph.order if n not in labels]
        if missing:
            raise ValueError(f"labels missing node(s) {missing}; pass all of {self.graph.order} or labels=None")
        out = {}
        for n in self.graph.order:
            y = torch.as_tensor(labels[n], dtype=torch.float32, device=z.device)
            if y.shape != (z.shape[0],):
                raise ValueError(f"labels['{n}'] must have shape ({z.shape[0]},), got {tuple(y.shape)}")
            out[n] = torch.where(y.isfinite(), y, read[n])  # unknown labels are read back from the image
        return out

    def _prior_fitted(self, node: str, classes: Tensor) -> bool:
        if self.model.exogenous.fitted(node, classes):
            return True
        if f"exogenous:{node}" not in self._warned:
            self._warned.add(f"exogenous:{node}")
            warnings.warn(f"'{node}': this checkpoint has no fitted exogenous prior for the target class; the "
                          "abducted deviation is shifted instead (what a lesion-free image cannot say stays unsaid)",
                          stacklevel=4)
        return False

    def _warn_out_of_range(self, iv: Intervention, target: Tensor) -> None:
        i, node = self.graph.index(iv.node), self.graph[iv.node]
        if node.discrete or iv.node in self._warned or not bool(self.model.scm.fitted):
            return
        lo, hi = self.model.scm.quantiles[i, 0].item(), self.model.scm.quantiles[i, -1].item()
        if bool((target < lo).any() or (target > hi).any()):
            self._warned.add(iv.node)
            warnings.warn(f"{iv}: value outside the training range of '{iv.node}' [{lo:.4g}, {hi:.4g}]; "
                          "the counterfactual is an extrapolation", stacklevel=3)


def _checked_depth(depth: float) -> float:
    if not 0 < depth <= 1:
        raise ValueError(f"depth must be in (0, 1] (a fraction of the training timesteps), got {depth!r}")
    return float(depth)


def training_images(checkpoint: str | Path, n: int = 4000) -> tuple[Tensor, Labels]:
    """The first ``n`` training images and labels of the dataset a checkpoint records (site banks are fitted on
    them, never on the images being evaluated)."""
    from causaldiff.inference.inputs import checkpoint_inputs  # the data layer imports Lightning

    found = checkpoint_inputs(checkpoint, n, split="train")
    return found.x, found.labels
