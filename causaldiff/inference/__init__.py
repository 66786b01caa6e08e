"""Inference: the counterfactual pipeline, its inputs, batched runs over many images, and intervention grids.

Below evaluation, augmentation and the commands; never imports Lightning.
"""
