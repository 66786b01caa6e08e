"""CounterfactualPipeline: abduct → intervene → predict, batched; inference only (no Lightning import).

1. Abduction: encoder posterior means give u, z = mechanisms(u) and s; the decoder's noise x_T comes from
   deterministic DDIM inversion of x under its factual condition (``residual``: with the per-step residuals that make
   decoding under the factual condition return x exactly), to T or, with ``depth`` < 1, to x_t0 at t0 = depth T.
2. Action: ``do(k = c)`` moves block z_k by ``g_k(c) - g_k(y_k)`` (keeping the individual's deviation); a discrete
   node whose class the intervention switches draws its deviation from the target class's exogenous prior instead
   (seeded: what a lesion-free image cannot say, e.g. where the lesion is); descendants' blocks move the same way to
   their counterfactual labels from the attribute SCM; non-descendant blocks and s are untouched.
3. Prediction: DDIM decoding of x_T under the counterfactual condition, with guidance weight w against the factual
   condition (``eps_f + w (eps_cf - eps_f)``: only the intervened change is amplified); with ``keep_unchanged``,
   every pixel the change does not reach stays as reconstructed (:func:`masked_loop`); a node marked ``local``
   that do() switches on is transplanted from the checkpoint's site bank (:mod:`causaldiff.inference.sites`); one
   switched off is decoded afresh in a disk around its site (:func:`~causaldiff.inference.sites.removal_disks`).

The keyword-only switches (``propagation``, ``findings``, ``inversion`` fixed-point / none) are the ablation path:
only :mod:`causaldiff.evaluation.evaluate`'s named variants set them.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from causaldiff.checkpoint import as_checkpoint
from causaldiff.diffusion.masked import MaskSettings, masked_loop
from causaldiff.diffusion.sampler import LoopRunner, Trace, retrace
from causaldiff.diffusion.schedule import DDIMTables, add_noise, invert_tables, sample_tables
from causaldiff.diffusion.transplant import TransplantSettings, transplant_loop
from causaldiff.inference.config import PRECISIONS, CounterfactualConfig
from causaldiff.inference.sites import SiteBank, Sites, load_site_banks, removal_disks
from causaldiff.interventions import Intervention, resolve
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.precision import native_bf16

Labels = dict[str, Tensor]


@dataclass
class Abduction:
    """What abduction recovers for a batch: labels (given or read out), z (B, n, d), s (B, style), noise x_t0 at
    t0 = ``depth`` T (x_T at depth 1), and with ``inversion='residual'`` the :class:`Trace` of the factual decoding
    (per-step residuals that make it exact, its path and predictions; each (S, B, C, H, W))."""

    labels: Labels
    z: Tensor
    s: Tensor
    noise: Tensor
    trace: Trace | None = None
    depth: float = 1.0


@dataclass
class CounterfactualOutput:
    cf_x: Tensor  # (B, C, H, W) in [-1, 1]
    cf_labels: Labels
    noise: Tensor  # abducted x_T (B, C, H, W)
    z: Tensor  # factual causal latents (B, n, d)
    cf_z: Tensor  # counterfactual causal latents (B, n, d)


INVERSIONS = ("ddim", "residual", "fixed-point", "none")  # the user's two, then the ablations' (see the class)
FIXED_POINT_ITERS = 3  # fixed-point inversion: 1 + 3 network calls a step


class CounterfactualPipeline:
    """Counterfactual images from a trained :class:`CausalDiffAE`.

    ``pipeline(x, labels, do="age+=10", steps=50, guidance=1.0)`` → :class:`CounterfactualOutput`.

    Args:
        inversion: ``ddim`` (plain) or ``residual`` (plain, plus the residuals that make the factual decoding retrace
            the inversion's path: a null intervention returns x exactly; see :func:`retrace`). Ablations:
            ``fixed-point`` (a nearer inverse, 4 calls a step) and ``none`` (x_T by forward-noising x, as the
            published CausalDiffAE code does).
        keep_unchanged: decode the counterfactual step only where the predicted image changes and keep every other
            pixel the factual decoding's (:func:`masked_loop`; with residual abduction, exactly as it was).
        depth: how far the inversion goes, as a fraction of the training timesteps: the noise is abducted to
            t0 = depth T and counterfactuals are decoded from there (Diff-SCM, Sanchez & Tsaftaris 2022, inverts
            to 0.75 T).
        capture: on CUDA, capture each sampling loop once as a CUDA graph and replay it.
        propagation: (ablation) how descendants follow: ``labels`` (their blocks move to the attribute SCM's
            counterfactual labels), ``mechanisms`` (the learned latent SCM) or ``none``.
        findings: (ablation) a switched-on ``local`` node is ``transplant``-ed from its site bank, or ``decode``-d
            from its latent block like any other node.
        site_banks: {node: SiteBank} for the local nodes (a checkpoint stores them; see :func:`fit_site_banks`).
        transplant, mask: the transplant's and the masked decoding's settings (documented on their classes).
    """

    def __init__(self, model: CausalDiffAE, inversion: str = "ddim", keep_unchanged: bool = False,
                 depth: float = 1.0, capture: bool = False, precision: str = "float32", *,
                 propagation: str = "labels",
                 findings: str = "transplant", site_banks: dict[str, SiteBank] | None = None,
                 transplant: TransplantSettings | None = None, mask: MaskSettings | None = None):
        for name, value, options in (("inversion", inversion, INVERSIONS),
                                     ("propagation", propagation, ("labels", "mechanisms", "none")),
                                     ("findings", findings, ("transplant", "decode")),
                                     ("precision", precision, PRECISIONS)):
            if value not in options:
                raise ValueError(f"{name} must be one of {options}, got {value!r}")
        self.model = model.eval()
        self.graph = model.graph
        self.inversion, self.keep_unchanged, self.depth = inversion, bool(keep_unchanged), _checked_depth(depth)
        self.propagation, self.findings = propagation, findings
        self.transplant, self.mask = transplant or TransplantSettings(), mask or MaskSettings()
        self.site_banks = dict(site_banks or {})
        self.inversion_iters = FIXED_POINT_ITERS if inversion == "fixed-point" else 0
        self.run_loop = LoopRunner(capture)
        self.precision = resolved_precision(precision, self.device)
        self.eps_fn = self._eps  # one bound method: captured loops are keyed by it
        self._tables: dict[tuple, DDIMTables] = {}
        self._warned: set[str] = set()

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path | dict, config: CounterfactualConfig | None = None,
                        capture: bool = False, **overrides) -> CounterfactualPipeline:
        """The pipeline of a checkpoint (path, shipped name or loaded dict) under ``config`` (default: the
        checkpoint's recommendation), with its site banks; ``overrides``: constructor arguments over the config's
        (e.g. ``inversion="fixed-point"``; None counts as not given)."""
        ckpt = as_checkpoint(checkpoint)
        config = config or CounterfactualConfig.for_checkpoint(ckpt)
        device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = CausalDiffAE.from_checkpoint(ckpt).to(device)
        if torch.device(device).type == "cpu":  # oneDNN's convolutions run ~7 % faster on NHWC weights here
            model = model.to(memory_format=torch.channels_last)
        given = {k: v for k, v in overrides.items() if v is not None}
        return cls(model, capture=capture, site_banks=load_site_banks(ckpt), **{**switches(config), **given})

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    def _eps(self, x: Tensor, t: Tensor, cond: Tensor) -> Tensor:
        """The network's eps (B, C, H, W) in float32, computed under bf16 autocast at ``precision="bfloat16"``: the
        sampler's updates and the residuals stay in float32."""
        with torch.autocast(x.device.type, torch.bfloat16, enabled=self.precision == "bfloat16"):
            eps = self.model.eps(x, t, cond)
        return eps.float()

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
        tables, cond, trace = self._schedule("invert", steps), m.condition(z, mu_s), None
        if self.inversion == "none":  # a sample of q(x_T | x)
            noise = add_noise(x, torch.randn(x.shape, generator=generator).to(x.device), tables.a_to[-1])
        elif self.inversion == "residual":
            noise, trace = self.run_loop.run(retrace, self.eps_fn, {"x": x, "cond": cond}, invert=tables,
                                             sample=self._schedule("sample", steps))
        else:
            noise = self.run_loop(self.eps_fn, x, cond, tables, fixed_point_iters=self.inversion_iters)
        return Abduction(labels, z, mu_s, noise, trace, self.depth)

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
        """g_k(target) plus the abducted deviation z_k - g_k(y_k), drawn from the target class's prior where a
        discrete class switches, (B, d)."""
        i, g, prior = self.graph.index(node), self.model.alignment.prior_block, self.model.exogenous
        g_new = g(i, target)
        deviation = ab.z[:, i] - g(i, ab.labels[node].float())
        if prior.has_code(node):
            switched = target.long() != ab.labels[node].long()
            if bool(switched.any()) and self._prior_fitted(node, target[switched]):
                deviation = torch.where(switched[:, None], prior.sample(node, target, generator), deviation)
        return g_new + deviation

    @torch.no_grad()
    def predict(self, noise: Tensor, cf_z: Tensor, s: Tensor, steps: int = 50, guidance: float = 1.0,
                z: Tensor | None = None, sites: Sites | None = None, trace: Trace | None = None,
                depth: float | None = None, base_z: Tensor | None = None, redraw: Tensor | None = None) -> Tensor:
        """Decode x_t0 (B, C, H, W) under the counterfactual condition [cf_z, s]; returns cf_x clamped to [-1, 1].

        ``noise`` is at the pipeline's ``depth`` (an abduction's); fresh Gaussian noise is x_T: pass ``depth=1``.

        ``z`` (B, n, d), the factual latents: what guidance pushes away from, and what ``keep_unchanged`` keeps.
        ``sites``: where and what to transplant for a switched-on finding (see
        :class:`~causaldiff.inference.sites.Sites`); images with a NaN row are decoded by :meth:`decode`.
        ``trace``: an exact abduction's (``inversion='residual'``): its residuals are added after each step, and the
        factual decoding beside a counterfactual one is read from it.
        ``base_z`` (B, n, d): what a transplant builds on, ``cf_z`` without the transplanted finding's block (default
        ``z``). Where it differs from ``z`` (the intervention changed other nodes too, e.g. a parent that switched the
        finding on), the decoding under it replaces the factual one, so those changes are kept around the finding.
        ``redraw`` (B, 1, H, W) bool: pixels decoded afresh, without the trace's residuals (:func:`removal_disks`).
        """
        tables = self._schedule("sample", steps, depth)
        if trace is not None and trace.residuals.shape[0] != len(tables):
            raise ValueError(f"this abduction's trace is for {trace.residuals.shape[0]} steps; decode it with the "
                             f"steps and depth it was abducted with, not {len(tables)} ({steps} at depth "
                             f"{depth or self.depth})")
        drawn = None if sites is None else sites.drawn
        if drawn is None or not bool(drawn.any()):
            return self.decode(noise, cf_z, s, steps, guidance, z, trace, depth=depth, redraw=redraw)
        if z is None:
            raise ValueError("a transplant keeps the factual decoding around it: it needs the factual latents z")
        m, dev = self.model, noise.device
        moved = torch.zeros(len(z), dtype=torch.bool) if base_z is None else \
            (base_z != z).flatten(1).any(1).cpu()  # other nodes changed too: their decoding is the base
        cf_x = torch.empty_like(noise)
        bump_at = self.transplant.step(tables, m.scheduler_config["num_train_timesteps"])
        for rows, base in ((drawn & ~moved, z), (drawn & moved, base_z)):
            on = rows.nonzero().flatten()  # CPU row indices: no device sync
            if not len(on):
                continue
            d = on.to(dev)
            part = None if trace is None else trace.rows(d)
            factual = _trace_inputs(part) if base is z else \
                {"residuals": None if part is None else part.residuals, "path": None, "eps_f": None}
            inputs = {"noise": noise[d], "c_cf": m.condition(cf_z[d], s[d]), "c_f": m.condition(base[d], s[d]),
                      "where": sites.where[on].to(dev), "patches": sites.patches[on].to(dev, noise.dtype),
                      "hwhm": sites.hwhm[on].to(dev), **factual}
            cf_x[d] = self.run_loop.run(transplant_loop, self.eps_fn, inputs, tables=tables, settings=self.transplant,
                                        bump_at=bump_at)
        rest = (~drawn).nonzero().flatten()
        if len(rest):
            r = rest.to(dev)
            rest_trace = None if trace is None else trace.rows(r)
            cf_x[r] = self.decode(noise[r], cf_z[r], s[r], steps, guidance, z[r], rest_trace, depth=depth,
                                  redraw=None if redraw is None else redraw[r])
        return cf_x.clamp(-1, 1)

    def decode(self, noise: Tensor, cf_z: Tensor, s: Tensor, steps: int, guidance: float, z: Tensor | None,
               trace: Trace | None = None, keep_unchanged: bool | None = None,
               depth: float | None = None, redraw: Tensor | None = None) -> Tensor:
        """:meth:`predict` without transplants: x_t0 (B, C, H, W) decoded under [cf_z, s] with guidance ``guidance``
        against the factual condition [z, s], keeping unchanged pixels if ``keep_unchanged`` (default: the
        pipeline's), ``redraw`` (B, 1, H, W) decoded without the trace's residuals; cf_x (B, C, H, W) clamped to
        [-1, 1]."""
        m = self.model
        keep = self.keep_unchanged if keep_unchanged is None else keep_unchanged
        tables, cond = self._schedule("sample", steps, depth), m.condition(cf_z, s)
        if z is None and (keep or guidance != 1.0):
            raise ValueError("guidance and keep_unchanged act against the factual condition: they need its latents z")
        redraw = None if trace is None else redraw
        if keep:
            inputs = {"noise": noise, "c_cf": cond, "c_f": m.condition(z, s), **_trace_inputs(trace), "redraw": redraw,
                      "confined": None if redraw is None else self._confined(z, cf_z, redraw)}
            return self.run_loop.run(masked_loop, self.eps_fn, inputs, tables=tables, guidance=guidance,
                                     mask=self.mask, removal_guidance=self.transplant.removal_guidance).clamp(-1, 1)
        null = None if guidance == 1.0 else m.condition(z, s)
        residuals = None if trace is None else trace.residuals if redraw is None else trace.residuals * ~redraw
        return self.run_loop(self.eps_fn, noise, cond, tables, guidance=guidance, null=null,
                             residuals=residuals).clamp(-1, 1)

    def _confined(self, z: Tensor, cf_z: Tensor, redraw: Tensor) -> Tensor:
        """(B,) bool: rows with a ``redraw`` disk whose latents ``cf_z`` differ from ``z`` (B, n, d) only in local
        nodes' blocks: a finding switched off and nothing else, which changes its disk alone."""
        local = torch.tensor([self.graph[n].local for n in self.graph.order], device=z.device)
        return ~((cf_z != z).any(-1) & ~local).any(1) & redraw.flatten(1).any(1)

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
        sites = Sites.cat([self.draw_sites(ab.labels, c[1], generator) for c in cf]) \
            if self.findings == "transplant" else None
        trace = None if ab.trace is None else ab.trace.repeat(k)
        z = ab.z.repeat(k, 1, 1)
        base_z = None if sites is None else self._transplant_base(z, cf_z, ab.labels, [c[1] for c in cf])
        noise = ab.noise.repeat(k, 1, 1, 1)
        redraw = None if sites is None else removal_disks(self, ab, cf_z, [c[1] for c in cf], steps, generator)
        if redraw is not None:  # a removed finding's disk starts from fresh noise
            redraw, start = redraw
            noise = torch.where(redraw, start, noise)
        cf_x = self.predict(noise, cf_z, ab.s.repeat(k, 1), steps, guidance, z, sites, trace, ab.depth, base_z, redraw)
        return [CounterfactualOutput(cf_x[j * b:(j + 1) * b], cf[j][1], ab.noise, ab.z, cf[j][0]) for j in range(k)]

    def _transplant_base(self, z: Tensor, cf_z: Tensor, labels: Labels, cf_labels: list[Labels]) -> Tensor:
        """(B*K, n, d): ``cf_z`` with the block of each local node switched on set back to ``z``'s: the latents a
        transplant builds on, ``z`` itself where nothing else changed."""
        base = cf_z.clone()
        for i, node in enumerate(self.graph.order):
            if self.graph[node].local:
                was = labels[node].repeat(len(cf_labels))
                on = ((was == 0) & (torch.cat([c[node] for c in cf_labels]) == 1)).to(base.device)
                base[on, i] = z[on, i]
        return base

    # ------------------------------------------------------------------ site codes
    def draw_sites(self, labels: Labels, cf_labels: Labels, generator: torch.Generator | None = None) -> Sites:
        """Site codes for the local nodes switched from 0 to 1 (the first such node per image; NaN rows: none, as
        for a node without a site bank, which is then decoded from its latent); patches padded to the widest bank's."""
        b, m = len(next(iter(labels.values()))), self.model
        p = max([bank.patches.shape[-1] for bank in self.site_banks.values()], default=1)
        sites = Sites(torch.full((b, 3), float("nan")), torch.zeros(b, m.channels, p, p), torch.ones(b))
        for node in self.graph.order:
            if not self.graph[node].local:
                continue
            on = (labels[node].cpu() == 0) & (cf_labels[node].cpu() == 1) & ~sites.drawn
            if not bool(on.any()) or not self._has_bank(node):
                continue
            drawn = self.site_banks[node].sample(int(on.sum()), generator, side=p)
            if drawn.patches.shape[1] != m.channels:
                raise ValueError(f"{node}'s site bank holds patches of {drawn.patches.shape[1]} channel(s); this "
                                 f"model has {m.channels} (refit it with fit_site_banks)")
            sites.where[on], sites.patches[on], sites.hwhm[on] = drawn.where, drawn.patches, drawn.hwhm
        return sites

    def _has_bank(self, node: str) -> bool:
        if node in self.site_banks:
            return True
        if f"bank:{node}" not in self._warned:
            self._warned.add(f"bank:{node}")
            warnings.warn(f"'{node}' is local but this checkpoint has no site bank for it: a switched-on {node} is "
                          "decoded from its latent (export the checkpoint with site banks to transplant it: "
                          "causaldiff.training.export.export_checkpoint(..., site_images=...))", stacklevel=4)
        return False

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


def _trace_inputs(trace: Trace | None) -> dict[str, Tensor | None]:
    """A trace as the masked and transplant loops' tensor inputs."""
    return {"residuals": None, "path": None, "eps_f": None} if trace is None else \
        {"residuals": trace.residuals, "path": trace.path, "eps_f": trace.eps}


def switches(config: CounterfactualConfig) -> dict:
    """The :class:`CounterfactualPipeline` arguments a config sets (steps, guidance and seed act per call)."""
    return {"inversion": config.inversion, "keep_unchanged": config.keep_unchanged, "depth": config.depth,
            "precision": config.precision}


def resolved_precision(precision: str, device: torch.device) -> str:
    """``auto``: bfloat16 where it is native (:func:`~causaldiff.precision.native_bf16`), float32 elsewhere."""
    if precision != "auto":
        return precision
    return "bfloat16" if native_bf16(device) else "float32"
