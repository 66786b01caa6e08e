"""causaldiff: counterfactual images from a causal encoder, learned mechanisms and a diffusion decoder."""

from causaldiff.graph import CausalGraph, Node
from causaldiff.interventions import Intervention, parse_interventions
from causaldiff.scm import AttributeSCM

__all__ = ["CausalGraph", "Node", "Intervention", "parse_interventions", "AttributeSCM"]
__version__ = "0.1.0"
