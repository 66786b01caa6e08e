"""Inference: the counterfactual pipeline, its inputs, batched runs over many images, and intervention grids.

Below evaluation, augmentation and the commands. The pipeline and the batch loop never import Lightning (only
``inputs`` rebuilds a checkpoint's DataModule to find its test split).
"""
