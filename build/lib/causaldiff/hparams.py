"""Constructor arguments from saved hyper-parameters: checkpoints and configs hold more keys than one class takes."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping


def kwargs_for(fn: Callable, mapping: Mapping) -> dict:
    """The entries of ``mapping`` that name parameters of ``fn`` (a class or a function)."""
    params = inspect.signature(fn).parameters
    return {k: v for k, v in mapping.items() if k in params}
