"""causaldiff: counterfactual images from a causal encoder, learned mechanisms and a diffusion decoder.

The heavy classes (model, pipeline, evaluation) are imported lazily, so ``import causaldiff`` and the light
commands stay fast.
"""

from causaldiff.graph import CausalGraph, Node
from causaldiff.interventions import Intervention, parse_interventions
from causaldiff.scm import AttributeSCM

_LAZY = {
    "CausalDiffAE": "causaldiff.models.causal_diffae",
    "CounterfactualPipeline": "causaldiff.inference.pipeline",
    "CounterfactualOutput": "causaldiff.inference.pipeline",
    "CausalDataModule": "causaldiff.data.datamodule",
    "get_world": "causaldiff.data.worlds",
    "Evaluator": "causaldiff.evaluation.evaluate",
}

__all__ = ["CausalGraph", "Node", "Intervention", "parse_interventions", "AttributeSCM", *_LAZY]
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'causaldiff' has no attribute {name!r}")
