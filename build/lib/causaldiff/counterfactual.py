"""Old import path of the counterfactual pipeline; it lives in :mod:`causaldiff.inference.pipeline`."""

from causaldiff.inference.pipeline import Abduction, CounterfactualOutput, CounterfactualPipeline

__all__ = ["Abduction", "CounterfactualOutput", "CounterfactualPipeline"]
