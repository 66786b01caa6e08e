"""The evaluation's named variants: the recommended path, and each ablation as the one pipeline switch it changes.

Every ablation lost in the project's own measurements (docs/results.md, "Decisions"), which is why no user flag sets
it; ``causaldiff evaluate --variants`` runs them beside the recommended path on the same items. No torch import:
the CLI lists them in its help.
"""

VARIANTS = {
    "causaldiff": {},  # the config's path
    "no-abduction": {"inversion": "none", "depth": 1.0},  # x_T by forward-noising x (the published CausalDiffAE code)
    "no-mechanisms": {"propagation": "none"},  # only the intervened block changes (DiffAE, a conditional model)
    "latent-mechanisms": {"propagation": "mechanisms"},  # descendants through the learned latent mechanisms
    "fixed-point-inversion": {"inversion": "fixed-point"},  # exact inversion, 4 network calls a step
    "decoded-findings": {"findings": "decode"},  # a switched-on local finding decoded from its latent block
}
DEFAULT_VARIANTS = ["causaldiff", "no-abduction", "no-mechanisms", "latent-mechanisms"]
