"""Noise schedule and per-step DDIM coefficient tables (device tensors; no host syncs in the loop)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler
from torch import Tensor


def scheduler_config(num_train_timesteps: int = 1000, beta_schedule: str = "linear", beta_start: float = 1e-4,
                     beta_end: float = 0.02) -> dict:
    """The diffusers ``DDIMScheduler`` config the model trains and samples with (eta = 0, no clipping)."""
    return {"num_train_timesteps": num_train_timesteps, "beta_schedule": beta_schedule, "beta_start": beta_start,
            "beta_end": beta_end, "clip_sample": False, "set_alpha_to_one": True, "steps_offset": 0,
            "prediction_type": "epsilon", "timestep_spacing": "leading"}


def add_noise(x: Tensor, noise: Tensor, a: Tensor) -> Tensor:
    """A sample of q(x_t | x_0): ``sqrt(a_t) x + sqrt(1 - a_t) noise`` (Ho et al., 2020, eq. 4).

    ``a`` is alpha_bar_t, broadcastable to x (a 0-d tensor, or (B, 1, 1, 1)).
    """
    return a.sqrt() * x + (1 - a).sqrt() * noise


def alphas_cumprod(config: dict) -> Tensor:
    """``alpha_bar_t`` (T,) of the training schedule, float32."""
    return DDIMScheduler(**config).alphas_cumprod.float()


class Step(NamedTuple):
    """One step's device values: timestep (B,), noise levels moved from/to (0-d), and the update's coefficients.

    Without clipping the DDIM update is linear: ``x' = c_x x + c_eps eps`` with
    ``c_x = sqrt(a_to / a_from)`` and ``c_eps = sqrt(1 - a_to) - sqrt(a_to (1 - a_from) / a_from)``.
    """

    t: Tensor
    a_from: Tensor
    a_to: Tensor
    c_x: Tensor
    c_eps: Tensor


@dataclass(frozen=True)
class DDIMTables:
    """Per-step tables in the order the steps run: timestep fed to the network, and the alpha_bar moved from/to.

    Each step maps ``x`` at noise level ``a_from[i]`` to level ``a_to[i]`` with ``eps = net(x, t[i])``.
    """

    t: Tensor  # (S,) long
    a_from: Tensor  # (S,) float
    a_to: Tensor  # (S,) float

    def to(self, device) -> DDIMTables:
        if device is None or self.t.device == torch.device(device):
            return self
        return DDIMTables(self.t.to(device), self.a_from.to(device), self.a_to.to(device))

    def __len__(self) -> int:
        return self.t.shape[0]

    def below(self, t_max: float) -> DDIMTables:
        """The steps whose timestep is below ``t_max``: a partial inversion's (x_0 → x_t0) or its decoding's."""
        keep = self.t < t_max
        return DDIMTables(self.t[keep], self.a_from[keep], self.a_to[keep])

    def steps(self, batch: int) -> list[Step]:
        """Per-step views, made once per loop (a handful of ops), so the steps themselves only index lists."""
        c_x = (self.a_to / self.a_from).sqrt()
        c_eps = (1 - self.a_to).sqrt() - (self.a_to * (1 - self.a_from) / self.a_from).sqrt()
        t = self.t[:, None].expand(-1, batch)
        return [Step(*row) for row in zip(t.unbind(), self.a_from.unbind(), self.a_to.unbind(), c_x.unbind(),
                                          c_eps.unbind())]


def make_step(a_from: float, a_to: float, t: int = 0, batch: int = 1) -> Step:
    """A single :class:`Step` from two noise levels (for tests and one-off updates)."""
    tables = DDIMTables(torch.tensor([t]), torch.tensor([float(a_from)]), torch.tensor([float(a_to)]))
    return tables.steps(batch)[0]


def _check_steps(config: dict, steps: int) -> int:
    if not isinstance(steps, int) or steps < 1:
        raise ValueError(f"steps must be an integer >= 1, got {steps!r}")
    if steps > config["num_train_timesteps"]:
        raise ValueError(f"steps ({steps}) exceeds the {config['num_train_timesteps']} training timesteps")
    return config["num_train_timesteps"] // steps


def sample_tables(config: dict, steps: int, device=None) -> DDIMTables:
    """Tables of ``DDIMScheduler.step`` for ``steps`` steps (x_T → x_0), exactly diffusers' sub-sequence."""
    ratio = _check_steps(config, steps)
    sched = DDIMScheduler(**config)
    sched.set_timesteps(steps)
    t = sched.timesteps.long()
    ac = sched.alphas_cumprod.float()
    prev = t - ratio
    a_to = torch.where(prev >= 0, ac[prev.clamp_min(0)], torch.tensor(float(sched.final_alpha_cumprod)))
    return DDIMTables(t, ac[t], a_to).to(device)


def invert_tables(config: dict, steps: int, device=None) -> DDIMTables:
    """Tables of ``DDIMInverseScheduler.step`` for ``steps`` steps (x_0 → x_T), exactly diffusers' convention."""
    ratio = _check_steps(config, steps)
    sched = DDIMInverseScheduler(**config)
    sched.set_timesteps(steps)
    t = sched.timesteps.long()
    ac = sched.alphas_cumprod.float()
    cur = (t - ratio).clamp_max(config["num_train_timesteps"] - 1)
    a_from = torch.where(cur >= 0, ac[cur.clamp_min(0)], torch.tensor(float(sched.initial_alpha_cumprod)))
    return DDIMTables(t, a_from, ac[t]).to(device)
