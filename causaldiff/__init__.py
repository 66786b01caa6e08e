"""causaldiff: counterfactual images from a causal encoder, learned mechanisms and a diffusion decoder.

Every name is imported on first use (all of them import torch), so ``import causaldiff`` and ``causaldiff --help``
stay fast.
"""

_LAZY = {
    "CausalGraph": "causaldiff.graph",
    "Node": "causaldiff.graph",
    "Intervention": "causaldiff.interventions",
    "parse_interventions": "causaldiff.interventions",
    "AttributeSCM": "causaldiff.scm",
    "CausalDiffAE": "causaldiff.models.causal_diffae",
    "CounterfactualPipeline": "causaldiff.inference.pipeline",
    "CounterfactualOutput": "causaldiff.inference.pipeline",
    "CausalDataModule": "causaldiff.data.datamodule",
    "get_world": "causaldiff.data.worlds",
    "Evaluator": "causaldiff.evaluation.evaluate",
}

__all__ = list(_LAZY)
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'causaldiff' has no attribute {name!r}")
