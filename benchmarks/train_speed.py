"""Training throughput (images/s) and peak memory for each config, on this machine's CPU (and GPU when present), and
the CPU levers one at a time.

Run: ``python benchmarks/train_speed.py [--steps 10] [--configs tiny pendulum32 ...]``; prints a table and writes
benchmarks/results/train_speed.json. Each config's model and data are built from its YAML exactly as
``causaldiff fit`` builds them; timing covers forward, backward and the optimiser step after two warm-up steps.

``--levers`` instead measures pendulum32's step under each lever against the shipped settings, interleaved over
``--repeats`` rounds (these machines drift): bf16 autocast, channels_last, the fused AdamW kernel, batch 64,
torch.compile (its compile time reported beside it), and bf16 with each of the others. Writes
benchmarks/results/train_levers.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

import torch
import yaml
from common import commit, rerun_command  # benchmarks/common.py

from causaldiff.data.datamodule import CausalDataModule
from causaldiff.io import atomic_write_text
from causaldiff.training.losses import diffae_loss
from causaldiff.training.module import CausalDiffAEModule

LOSS_KEYS = ("beta_z", "beta_u", "beta_s", "beta_read", "p_uncond")


def measure(config: Path, steps: int, device: str, lever: str | None = None) -> dict:
    """One config's training step timed; ``lever``: one of :data:`LEVERS`' names or several joined by ``+``."""
    levers = set((lever or "").split("+"))
    cfg = yaml.safe_load(config.read_text())
    data = {**cfg["data"], "n": max(64, cfg["data"]["batch_size"] * 2), "num_workers": 0}
    dm = CausalDataModule(**data)
    module = CausalDiffAEModule(dm.graph_spec, dm.label_stats, dm.size, dm.channels, **cfg.get("model", {}))
    model = module.model.to(device)
    if module.hparams.channels_last or "channels_last" in levers:
        model = model.to(memory_format=torch.channels_last)
    precision = "bf16-mixed" if "bf16" in levers else cfg.get("trainer", {}).get("precision", "32-true")
    dtype = torch.bfloat16 if precision.startswith("bf16") else None
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4,
                            **({"fused": True} if "fused_adamw" in levers else {}))
    batch = next(iter(dm.train_dataloader()))
    if "batch64" in levers:
        batch = {k: {n: torch.cat([v, v]) for n, v in val.items()} if isinstance(val, dict) else torch.cat([val, val])
                 for k, val in batch.items()}
    if "channels_last" in levers:
        batch["x"] = batch["x"].contiguous(memory_format=torch.channels_last)
    batch = {"x": batch["x"].to(device), "labels": {k: v.to(device) for k, v in batch["labels"].items()},
             "mask": {k: v.to(device) for k, v in batch["mask"].items()}}
    loss_kw = {k: module.hparams[k] for k in LOSS_KEYS}
    loss_fn = torch.compile(diffae_loss) if "compile" in levers else diffae_loss
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t_start = time.perf_counter()
    for i in range(steps + 2):
        if i == 2:
            if device == "cuda":
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            warm_up = t0 - t_start
        with torch.autocast(device, dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(model, batch, **loss_kw)["loss"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    if device == "cuda":
        torch.cuda.synchronize()
    dt = (time.perf_counter() - t0) / steps
    peak = (torch.cuda.max_memory_allocated() if device == "cuda"
            else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
    return {"config": config.stem, "device": device, "batch": batch["x"].shape[0], "size": dm.size,
            "warm_up_s": round(warm_up, 1),
            "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 2), "precision": precision,
            "s_per_step": round(dt, 4), "images_per_s": round(batch["x"].shape[0] / dt, 1),
            "peak_memory_MB": round(peak / 2**20, 1)}


LEVERS = (None, "bf16", "channels_last", "fused_adamw", "batch64", "compile", "bf16+fused_adamw", "bf16+batch64",
          "bf16+compile")


def levers(config: Path, steps: int, repeats: int) -> list[dict]:
    """Each lever's images/s beside the shipped settings' (None), interleaved ``repeats`` times; median and spread."""
    runs: dict = {lever: [] for lever in LEVERS}
    for _ in range(repeats):
        for lever in LEVERS:
            runs[lever].append(measure(config, steps, "cpu", lever))
    base = statistics.median(r["images_per_s"] for r in runs[None])
    rows = []
    for lever, rs in runs.items():
        speeds = [r["images_per_s"] for r in rs]
        rows.append({"lever": lever or "shipped", "batch": rs[0]["batch"],
                     "images_per_s_median": statistics.median(speeds),
                     "images_per_s_min": min(speeds), "spread": round(max(speeds) - min(speeds), 1),
                     "ratio": round(statistics.median(speeds) / base, 3), "warm_up_s": max(r["warm_up_s"] for r in rs)})
        r = rows[-1]
        print(f"{r['lever']:<18}{r['batch']:>6}{r['images_per_s_median']:>10.1f}{r['spread']:>8.1f}{r['ratio']:>8.2f}"
              f"{r['warm_up_s']:>9.1f}", flush=True)
    print("columns: lever batch images/s(median) spread ratio-to-shipped warm-up_s (compile time for compile)")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--levers", action="store_true", help="measure the CPU levers on pendulum32 (see above)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--configs", nargs="*", default=["tiny", "pendulum32", "morpho32", "brain32"])
    ap.add_argument("--devices", nargs="*", help="cpu and/or cuda (default: cpu, plus cuda when present)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_speed.json"))
    args = ap.parse_args()
    root = Path(__file__).parent.parent / "configs"
    if args.levers:
        out = {"meta": {"torch": torch.__version__, "threads": torch.get_num_threads(),
                        "bf16_native": torch.ops.mkldnn._is_mkldnn_bf16_supported(),
                        "cpu_capability": torch.backends.cpu.get_cpu_capability(), "command": rerun_command(),
                        "commit": commit(), "repeats": args.repeats, "steps": args.steps},
               "levers": levers(root / "pendulum32.yaml", args.steps, args.repeats)}
        atomic_write_text(Path(args.out).with_name("train_levers.json"), json.dumps(out, indent=2))
        return
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
