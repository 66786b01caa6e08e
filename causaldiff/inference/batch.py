"""Running a pipeline over many images: one seeded, chunked loop, and the options every inference command takes.

Random draws (label-noise abduction of discrete nodes, forward noising) come from one generator per chunk, seeded by
:func:`seed_for` from the run's seed, a named stream (e.g. ``("reversibility", cycle, group)``) and the chunk's
first index: the same options give the same images, whatever else ran before.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from causaldiff.checkpoint import recommended_switches
from causaldiff.inference.pipeline import CounterfactualPipeline

Labels = dict[str, Tensor]


@dataclass
class InferenceOptions:
    """How to run counterfactual inference (the flags of grid, counterfactual, evaluate and augment)."""

    steps: int = 50  # DDIM steps, for the inversion and for the decoding
    guidance: float = 1.0  # guidance weight w; > 1 strengthens the change
    mode: str = "shift"  # shift: z_k += g_k(new) - g_k(old); replace: z_k = g_k(new)
    propagation: str = "labels"  # descendants follow: labels (attribute SCM) | mechanisms (latent) | none
    inversion: str = "ddim"  # ddim | fixed-point (nearer) | residual (exact reconstruction) | none (forward noising)
    guide_against: str = "factual"  # what w > 1 pushes away from: factual | local | masked | null
    exogenous: str = "sample"  # a switched class's deviation: sample (from its prior, seeded) | keep (shifted)
    findings: str = "decode"  # a local finding do() switches on: decode (its latent) | transplant (a site code)
    finding_guidance: float = 3.0  # the transplant's guidance weight inside its disk
    depth: float = 1.0  # the inversion's depth, a fraction of the training timesteps (Diff-SCM: 0.75)
    seed: int = 0
    batch_size: int = 32  # images per pipeline call
    device: str | None = None  # default: cuda when available

    @classmethod
    def for_checkpoint(cls, checkpoint: str | Path, **given) -> InferenceOptions:
        """Options for ``checkpoint``: ``given`` (a value of None counts as not given) over the switches the
        checkpoint recommends (``recommended_switches``) over this class's defaults."""
        return cls(**{**recommended_switches(checkpoint), **{k: v for k, v in given.items() if v is not None}})

    @classmethod
    def fields(cls) -> list[str]:
        """The option names (each one a flag of :func:`causaldiff.commands.common.add_inference_args`)."""
        return [f.name for f in dataclasses.fields(cls)]

    def switches(self) -> dict:
        """The :class:`CounterfactualPipeline` switches these options set (one list, so none is left behind)."""
        return {"mode": self.mode, "propagation": self.propagation, "inversion": self.inversion,
                "guide_against": self.guide_against, "exogenous": self.exogenous, "findings": self.findings,
                "finding_guidance": self.finding_guidance, "depth": self.depth}

    def pipeline(self, checkpoint: str | Path, **kwargs) -> CounterfactualPipeline:
        """The pipeline of a checkpoint (path or shipped name) with these options' switches."""
        device = self.device or ("cuda" if torch.cuda.is_available() else "cpu")
        return CounterfactualPipeline.from_checkpoint(checkpoint, device=device, **{**self.switches(), **kwargs})


def seed_for(seed: int, *stream) -> int:
    """A 63-bit seed for one named stream of draws; stable across runs, processes and machines."""
    digest = hashlib.sha256(repr((seed, *stream)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def chunks(n: int, opts: InferenceOptions, stream: tuple = ()) -> Iterator[tuple[slice, torch.Generator]]:
    """(slice, generator) per chunk of ``opts.batch_size`` items out of ``n``."""
    for a in range(0, n, opts.batch_size):
        yield slice(a, a + opts.batch_size), torch.Generator().manual_seed(seed_for(opts.seed, *stream, a))


def _take(values: dict, sl: slice) -> dict:
    return {k: v[sl] if isinstance(v, Tensor) and v.ndim else v for k, v in values.items()}


def counterfactuals(pipe: CounterfactualPipeline, x: Tensor, labels: Labels | None, do, opts: InferenceOptions,
                    stream: tuple = ()) -> tuple[Tensor, Labels]:
    """cf_x (N, C, H, W) on the CPU and cf_labels (N,) each, for one intervention ``do`` on every image of x.

    ``do`` is anything :func:`~causaldiff.interventions.resolve` takes; a dict may hold per-image (N,) tensors.
    """
    xs, ls = [], []
    for sl, gen in chunks(x.shape[0], opts, stream):
        sub_do = _take(do, sl) if isinstance(do, dict) else do
        out = pipe(x[sl], None if labels is None else _take(labels, sl), sub_do, opts.steps, opts.guidance, gen)
        xs.append(out.cf_x.cpu())
        ls.append(out.cf_labels)
    return torch.cat(xs), {k: torch.cat([d[k] for d in ls]) for k in ls[0]}


def intervention_columns(pipe: CounterfactualPipeline, x: Tensor, labels: Labels | None, dos: list,
                         opts: InferenceOptions, stream: tuple = ()) -> list[tuple[Tensor, Labels]]:
    """[(cf_x (N, C, H, W), cf_labels)] per intervention of ``dos``: one abduction per chunk, shared by all."""
    cols: list[list] = [[] for _ in dos]
    for sl, gen in chunks(x.shape[0], opts, stream):
        ab = pipe.abduct(x[sl], None if labels is None else _take(labels, sl), opts.steps, gen)
        for col, out in zip(cols, pipe.counterfactuals(ab, dos, opts.steps, opts.guidance, gen)):
            col.append((out.cf_x.cpu(), out.cf_labels))
    return [(torch.cat([c[0] for c in col]), {k: torch.cat([c[1][k] for c in col]) for k in col[0][1]})
            for col in cols]
