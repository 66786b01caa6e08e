"""A staged training schedule: consecutive stages of one run, each with its own prediction target, focus weight and
learning-rate cycle (linear warm-up, then cosine to 0 over the stage: a warm restart as in Loshchilov & Hutter,
*SGDR*, ICLR 2017). A fit without stages is one stage as long as the run."""

from __future__ import annotations

import math
from dataclasses import dataclass

SETTINGS = ("steps", "prediction", "focus_weight", "lr", "warmup_steps")


@dataclass(frozen=True)
class Stage:
    """Steps ``[start, start + steps)`` of a run and the settings they train with."""

    start: int
    steps: int
    prediction: str
    focus_weight: float
    lr: float
    warmup_steps: int


def parse_stages(stages: list[dict], defaults: dict) -> list[Stage]:
    """The stages of ``model.stages`` (each a dict of :data:`SETTINGS`; ``steps`` required, the rest default to the
    model's own settings in ``defaults``), laid end to end from step 0. Bad entries raise a one-line ValueError."""
    out, start = [], 0
    for i, spec in enumerate(stages, 1):
        if not isinstance(spec, dict):
            raise ValueError(f"stage {i}: expected a mapping of {', '.join(SETTINGS)}; got {spec!r}")
        unknown = sorted(set(spec) - set(SETTINGS))
        if unknown:
            raise ValueError(f"stage {i}: unknown setting {unknown[0]!r}; a stage sets {', '.join(SETTINGS)}")
        steps = spec.get("steps")
        if not isinstance(steps, int) or isinstance(steps, bool) or steps < 1:
            raise ValueError(f"stage {i}: steps must be an integer >= 1; got {steps!r}")
        stage = Stage(start, steps, **{k: spec.get(k, defaults[k]) for k in SETTINGS[1:]})
        if stage.prediction not in ("eps", "v"):
            raise ValueError(f"stage {i}: prediction must be 'eps' or 'v'; got {stage.prediction!r}")
        if stage.lr <= 0 or stage.warmup_steps < 0 or stage.focus_weight < 0:
            raise ValueError(f"stage {i}: lr must be > 0, warmup_steps and focus_weight >= 0")
        out.append(stage)
        start += steps
    return out


def stage_at(stages: list[Stage], step: int) -> Stage:
    """The stage that trains global step ``step`` (the last one beyond the schedule's end)."""
    for stage in stages:
        if step < stage.start + stage.steps:
            return stage
    return stages[-1]


def lr_at(stages: list[Stage], step: int) -> float:
    """The learning rate at ``step``: the stage's lr, warmed up linearly, then cosine-annealed to 0 at the stage's
    end (Loshchilov & Hutter 2017, eq. 5, one cycle per stage)."""
    stage = stage_at(stages, step)
    local, warm = step - stage.start, stage.warmup_steps
    if local < warm:
        return stage.lr * (local + 1) / warm
    return stage.lr * 0.5 * (1 + math.cos(math.pi * min(1.0, (local - warm) / max(1, stage.steps - warm))))
