"""Training throughput (images/s) and peak memory for each config, on this machine's CPU (and GPU when present).

Run: ``python benchmarks/train_speed.py [--steps 10] [--configs tiny pendulum32 ...]``; prints a table and writes
benchmarks/results/train_speed.json. Each config's model and data are built from its YAML exactly as
``causaldiff fit`` builds them; timing covers forward, backward and the optimiser step after two warm-up steps.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

import torch
import yaml

from causaldiff.data.datamodule import CausalDataModule
from causaldiff.io import atomic_write_text
from causaldiff.training.losses import diffae_loss
from causaldiff.training.module import CausalDiffAEModule

LOSS_KEYS = ("beta_z", "beta_u", "beta_s", "beta_read", "p_uncond")


def measure(config: Path, steps: int, device: str) -> dict:
    cfg = yaml.safe_load(config.read_text())
    data = {**cfg["data"], "n": max(64, cfg["data"]["batch_size"] * 2), "num_workers": 0}
    dm = CausalDataModule(**data)
    module = CausalDiffAEModule(dm.graph_spec, dm.label_stats, dm.size, dm.channels, **cfg.get("model", {}))
    model = module.model.to(device)
    if module.hparams.channels_last:
        model = model.to(memory_format=torch.channels_last)
    precision = cfg.get("trainer", {}).get("precision", "32-true")
    dtype = torch.bfloat16 if precision.startswith("bf16") else None
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    batch = next(iter(dm.train_dataloader()))
    batch = {"x": batch["x"].to(device), "labels": {k: v.to(device) for k, v in batch["labels"].items()},
             "mask": {k: v.to(device) for k, v in batch["mask"].items()}}
    loss_kw = {k: module.hparams[k] for k in LOSS_KEYS}
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    for i in range(steps + 2):
        if i == 2:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            loss = diffae_loss(model, batch, **loss_kw)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"config": config.stem, "device": device, "batch": dm.batch_size, "size": dm.size,
            "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "precision": precision,
            "s_per_step": round(dt, 4), "images_per_s": round(dm.batch_size / dt, 1),
            "peak_memory_MB": round(peak / 2**20, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--configs", nargs="*", default=["tiny", "pendulum32", "morpho32", "brain32"])
    ap.add_argument("--devices", nargs="*", help="cpu and/or cuda (default: cpu, plus cuda when present)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_speed.json"))
    args = ap.parse_args()
    root = Path(__file__).parent.parent / "configs"
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    rows = []
    for name in args.configs:
        for device in devices:
            if device == "cpu" and name.endswith("96"):
                continue  # GPU-sized
            rows.append(measure(root / f"{name}.yaml", args.steps, device))
            r = rows[-1]
            print(f"{r['config']:<12}{r['device']:>6}{r['batch']:>6}{r['size']:>5}{r['params_M']:>8}"
                  f"{r['s_per_step']:>10.3f}{r['images_per_s']:>10.1f}{r['peak_memory_MB']:>10.0f}", flush=True)
    print("columns: config device batch size params_M s/step images/s peak_MB (CPU: process max RSS)")
    meta = {"torch": torch.__version__, "threads": torch.get_num_threads(),
            "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() else None}
    atomic_write_text(args.out, json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
