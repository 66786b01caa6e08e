"""Training a peer on a :class:`CausalDataModule`'s training split (for the benchmark: the one a causaldiff checkpoint
was trained with, so the same world, split and batch balancing) for a given number of images; the file it writes
holds what :func:`load_peer` needs to rebuild it."""

from __future__ import annotations

import io
import math
import time
from pathlib import Path

import torch

from causaldiff.io import atomic_write_bytes
from peers.hvae import HierarchicalVAE
from peers.vae import ConditionalVAE

PEERS = {"vae": ConditionalVAE, "hvae": HierarchicalVAE}
KL_WARMUP = 0.1  # share of the run over which the KL weight rises 0 → 1 (as VDVAE and causal-gen warm it up)
WARMUP = 0.01  # share of the run over which the learning rate rises, then a cosine decay to 0
GRAD_CLIP = 10.0  # on the per-pixel loss; a step with a non-finite loss or gradient is skipped


def _batches(dm, batch_size: int, steps: int, gen: torch.Generator):
    """``steps`` batches (x (B, C, H, W) dequantised to [-1, 1], labels) of the training split, drawn with the
    datamodule's class balancing where it has one, else as shuffled epochs."""
    train = dm.splits["train"]
    images, labels = dm.dataset.images, dm.dataset.labels
    weights = dm.balance_weights().float() if dm.balance else None
    order = torch.empty(0, dtype=torch.long)
    for _ in range(steps):
        if weights is not None:
            pick = torch.multinomial(weights, batch_size, replacement=True, generator=gen)
        else:
            if len(order) < batch_size:
                order = torch.cat([order, torch.randperm(len(train), generator=gen)])
            pick, order = order[:batch_size], order[batch_size:]
        idx = train[pick]
        x = (images[idx].float() + torch.rand(images[idx].shape, generator=gen)) / 128.0 - 1.0
        yield x, {k: v[idx] for k, v in labels.items()}


def train_peer(kind: str, dm, images: int, out: Path, batch_size: int = 64, lr: float = 1e-3, seed: int = 0,
               log_every: int = 200) -> Path:
    """Train peer ``kind`` on ``images`` images of datamodule ``dm``'s training split and save it to ``out``."""
    if kind not in PEERS:
        raise ValueError(f"unknown peer {kind!r} (choose from {list(PEERS)})")
    torch.manual_seed(seed)
    spec = {"graph": dm.graph_spec, "label_stats": dm.label_stats, "channels": dm.channels, "size": dm.size}
    model = PEERS[kind](**spec)
    opt = torch.optim.Adam(model.parameters(), lr)
    steps = max(1, images // batch_size)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / max(1, WARMUP * steps))
                                              * 0.5 * (1 + math.cos(math.pi * s / steps)))
    log, skipped, t0 = [], 0, time.perf_counter()
    model.train()
    for step, (x, labels) in enumerate(_batches(dm, batch_size, steps, torch.Generator().manual_seed(seed))):
        nll, kl = model.elbo_terms(x, labels)
        beta = min(1.0, (step + 1) / max(1, KL_WARMUP * steps))
        loss = (nll + beta * kl).mean() / x[0].numel()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        if torch.isfinite(loss) and torch.isfinite(norm):
            opt.step()
        else:
            skipped += 1
        sched.step()
        if step % log_every == 0 or step == steps - 1:
            dims = x[0].numel()
            log.append({"step": step, "images": (step + 1) * batch_size, "nll_per_dim": nll.mean().item() / dims,
                        "kl_per_dim": kl.mean().item() / dims, "seconds": round(time.perf_counter() - t0, 1)})
    state = {"kind": kind, "spec": spec, "state_dict": model.state_dict(), "images": steps * batch_size,
             "batch_size": batch_size, "seconds": round(time.perf_counter() - t0, 1), "skipped": skipped, "log": log}
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(out, buf.getvalue())
    return out


def load_peer(path: Path) -> tuple[torch.nn.Module, dict]:
    """(model in eval mode, the saved record without the weights)."""
    state = torch.load(path, map_location="cpu", weights_only=False)
    model = PEERS[state["kind"]](**state["spec"])
    model.load_state_dict(state.pop("state_dict"))
    return model.eval(), state
