"""Running a pipeline over many images: one seeded, chunked loop under a :class:`CounterfactualConfig`.

Random draws (label-noise abduction of discrete nodes, forward noising) come from one generator per chunk, seeded by
:func:`seed_for` from the run's seed, a named stream (e.g. ``("reversibility", cycle, group)``) and the chunk's
first index: the same options give the same images, whatever else ran before.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import torch
from torch import Tensor

from causaldiff.inference.config import CounterfactualConfig
from causaldiff.inference.pipeline import CounterfactualPipeline

Labels = dict[str, Tensor]


def seed_for(seed: int, *stream) -> int:
    """A 63-bit seed for one named stream of draws; stable across runs, processes and machines."""
    digest = hashlib.sha256(repr((seed, *stream)).encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def chunks(n: int, opts: CounterfactualConfig, stream: tuple = ()) -> Iterator[tuple[slice, torch.Generator]]:
    """(slice, generator) per chunk of ``opts.batch_size`` items out of ``n``."""
    for a in range(0, n, opts.batch_size):
        yield slice(a, a + opts.batch_size), torch.Generator().manual_seed(seed_for(opts.seed, *stream, a))


def _take(values: dict, sl: slice) -> dict:
    return {k: v[sl] if isinstance(v, Tensor) and v.ndim else v for k, v in values.items()}


def counterfactuals(pipe: CounterfactualPipeline, x: Tensor, labels: Labels | None, do, opts: CounterfactualConfig,
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
                         opts: CounterfactualConfig, stream: tuple = ()) -> list[tuple[Tensor, Labels]]:
    """[(cf_x (N, C, H, W), cf_labels)] per intervention of ``dos``: one abduction per chunk, shared by all."""
    cols: list[list] = [[] for _ in dos]
    for sl, gen in chunks(x.shape[0], opts, stream):
        ab = pipe.abduct(x[sl], None if labels is None else _take(labels, sl), opts.steps, gen)
        for col, out in zip(cols, pipe.counterfactuals(ab, dos, opts.steps, opts.guidance, gen)):
            col.append((out.cf_x.cpu(), out.cf_labels))
    return [(torch.cat([c[0] for c in col]), {k: torch.cat([c[1][k] for c in col]) for k in col[0][1]})
            for col in cols]
