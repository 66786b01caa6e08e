"""CounterfactualConfig: every user-facing inference setting, in one place.

The CLI flags of ``counterfactual``, ``grid``, ``augment`` and ``evaluate`` are generated from its fields (type,
default, help), a checkpoint recommends a subset of them (:meth:`CounterfactualConfig.recommendable`), ``augment``'s
plan and ``evaluate``'s report record it with :meth:`CounterfactualConfig.asdict`. Settings that lost in the project's
own measurements are not here: they are named evaluation variants (:mod:`causaldiff.evaluation.variants`).

No torch import: ``causaldiff --help`` builds its parsers from this module alone.
"""

from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field

INVERSIONS = ("ddim", "residual")  # the user's choice of abduction (ablations add fixed-point and none)
PRECISIONS = ("auto", "float32", "bfloat16")


def _option(default, help: str, recommendable: bool = False, choices: tuple | None = None):
    return field(default=default, metadata={"help": help, "recommendable": recommendable, "choices": choices})


@dataclass(frozen=True)
class CounterfactualConfig:
    """How counterfactuals are computed; a checkpoint's recommendation fills the fields a user does not give."""

    steps: int = _option(50, "DDIM steps for the inversion and the decoding", recommendable=True)
    guidance: float = _option(1.0, "guidance weight w against the factual condition: > 1 strengthens only the "
                              "intervened change", recommendable=True)
    depth: float = _option(1.0, "how far the inversion goes, as a fraction of the training timesteps (Diff-SCM's 0.75 "
                           "leaves out the steps nearest pure noise)", recommendable=True)
    inversion: str = _option("ddim", "abduction of the decoder's noise: plain DDIM inversion, or residual (2 network "
                             "calls a step; a null intervention returns the image exactly)", recommendable=True,
                             choices=INVERSIONS)
    keep_unchanged: bool = _option(False, "keep every pixel the intervention and its descendants do not change as "
                                   "reconstructed (masked decoding: 2-3 network calls a step)", recommendable=True)
    seed: int = _option(0, "seed of the random draws (label-noise abduction, exogenous codes, lesion sites)")
    batch_size: int = _option(32, "images per batch")
    device: str | None = _option(None, "cpu or cuda (default: cuda when available)")
    precision: str = _option("auto", "the network's arithmetic: bfloat16 (autocast; the sampler stays float32) runs "
                             "faster where the hardware has it, within 1 grey level of float32 on the shipped models; "
                             "auto takes it on CUDA and on CPUs with native bf16", choices=PRECISIONS)

    def __post_init__(self):
        if self.inversion not in INVERSIONS:
            raise ValueError(f"inversion must be one of {INVERSIONS}, got {self.inversion!r}")
        if self.precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if not 0 < self.depth <= 1:
            raise ValueError(f"depth must be in (0, 1] (a fraction of the training timesteps), got {self.depth!r}")
        if self.steps < 1 or self.batch_size < 1:
            raise ValueError(f"steps and batch_size must be >= 1, got {self.steps} and {self.batch_size}")

    @classmethod
    def names(cls) -> list[str]:
        return [f.name for f in dataclasses.fields(cls)]

    @classmethod
    def recommendable(cls) -> list[str]:
        """The fields a checkpoint may recommend (``inference`` entry, see :func:`check_recommendation`)."""
        return [f.name for f in dataclasses.fields(cls) if f.metadata["recommendable"]]

    @classmethod
    def resolved(cls, recommended: dict, where: str = "", **given) -> CounterfactualConfig:
        """``given`` (None: not given) over a checkpoint's ``recommended`` settings over the defaults; ``where``
        names the checkpoint in the error about an unknown recommended key."""
        return cls(**{**check_recommendation(recommended, where), **{k: v for k, v in given.items() if v is not None}})

    @classmethod
    def for_checkpoint(cls, checkpoint, **given) -> CounterfactualConfig:
        """:meth:`resolved` with the recommendation of ``checkpoint`` (a path, shipped name or loaded dict)."""
        from causaldiff.checkpoint import recommended_settings

        where = "" if isinstance(checkpoint, dict) else f"{checkpoint}: "
        return cls.resolved(recommended_settings(checkpoint), where, **given)

    def asdict(self) -> dict:
        return dataclasses.asdict(self)

    # ------------------------------------------------------------------ the CLI
    @classmethod
    def add_arguments(cls, parser: argparse.ArgumentParser, batch_size: int | None = None) -> None:
        """One flag per field (``--keep-unchanged/--no-keep-unchanged`` for a bool); every default is None, so a
        flag not given leaves the field to the checkpoint's recommendation, then to the default."""
        group = parser.add_argument_group("counterfactual settings (a checkpoint's recommendation fills those "
                                          "not given: causaldiff models lists them)")
        for f in dataclasses.fields(cls):
            default = batch_size if f.name == "batch_size" and batch_size else f.default
            text = f.metadata["help"] + ("" if default is None else f" (default {default})")
            flag = "--" + f.name.replace("_", "-")
            if f.type == "bool":
                group.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=text)
            else:
                kind = {"int": int, "float": float}.get(f.type, str)
                group.add_argument(flag, type=kind, default=None, choices=f.metadata["choices"], help=text)
        if batch_size:
            parser.set_defaults(batch_size=batch_size)

    @classmethod
    def from_args(cls, args: argparse.Namespace, recommended: dict) -> CounterfactualConfig:
        """The config the flags of :meth:`add_arguments` describe, over the checkpoint's ``recommended`` settings."""
        return cls.resolved(recommended, **{name: getattr(args, name) for name in cls.names()})


def check_recommendation(settings: dict, where: str = "") -> dict:
    """``settings`` as a new dict; a ValueError naming any key a checkpoint may not recommend."""
    unknown = sorted(set(settings) - set(CounterfactualConfig.recommendable()))
    if unknown:
        raise ValueError(f"{where}unknown inference setting(s) {unknown} "
                         f"(known: {CounterfactualConfig.recommendable()})")
    return dict(settings)


def first_difference(old: dict, new: dict) -> str | None:
    """The first key whose value differs between two records of a config (None: they agree)."""
    return next((k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)), None)
