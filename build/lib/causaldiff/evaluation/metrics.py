"""Metric functions (pure, tensors in, numbers out).

Definitions follow Monteiro et al., "Measuring axiomatic soundness of counterfactual image models" (ICLR 2023):
effectiveness, composition, reversibility; and Melistas et al., "Benchmarking counterfactual image generation"
(NeurIPS 2024). DCI after Eastwood & Williams, "A framework for the quantitative evaluation of disentangled
representations" (ICLR 2018), with ridge-regression importances.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy import linalg
from torch import Tensor

from causaldiff.graph import CausalGraph


def l1_255(a: Tensor, b: Tensor) -> float:
    """Mean absolute difference of images in [-1, 1], on the [0, 255] scale."""
    return ((a.float() - b.float()).abs().mean() * 127.5).item()


def label_error(graph: CausalGraph, node: str, pred: Tensor, target: Tensor) -> float:
    """MAE (continuous) or accuracy (discrete) of ``pred`` against ``target``, both (B,)."""
    if graph[node].discrete:
        return (pred.round() == target.round()).float().mean().item()
    return (pred.float() - target.float()).abs().mean().item()


def frechet_distance(f1: Tensor, f2: Tensor) -> float:
    """Fréchet distance between Gaussians fitted to feature sets (N1, D) and (N2, D) (Heusel et al., 2017)."""
    a, b = f1.double().cpu().numpy(), f2.double().cpu().numpy()
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.atleast_2d(np.cov(a, rowvar=False)), np.atleast_2d(np.cov(b, rowvar=False))
    covmean = linalg.sqrtm(s1 @ s2)
    if not np.isfinite(covmean).all():  # near-singular product: regularise (as in the reference FID code)
        eye = np.eye(s1.shape[0]) * 1e-6
        covmean = linalg.sqrtm((s1 + eye) @ (s2 + eye))
    covmean = covmean.real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


def _entropy(p: np.ndarray, base: int) -> np.ndarray:
    p = np.clip(p, 1e-12, 1)
    return -(p * np.log(p)).sum(0) / np.log(max(base, 2))


def dci(z: Tensor, labels: dict[str, Tensor], graph: CausalGraph, ridge: float = 1e-2) -> dict:
    """Disentanglement, completeness, informativeness of codes z (N, F) for every node.

    Importance R[f, k] = |ridge weight| of standardised feature f for node k (summed over one-hot classes for
    discrete nodes). D = sum_f rho_f (1 - H_K(R[f, :])), C = mean_k (1 - H_F(R[:, k])), I = held-out R^2
    (continuous) or accuracy (discrete), fitted on the first half and scored on the second.
    """
    x = z.double().flatten(1)
    n = x.shape[0]
    if n < 4:
        raise ValueError(f"DCI needs at least 4 samples, got {n}")
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-8)
    half = n // 2
    importance, info = [], {}
    for name in graph.order:
        y = labels[name].double()
        if graph[name].discrete:
            target = torch.nn.functional.one_hot(y.long(), graph[name].cardinality).double()
        else:
            target = ((y - y.mean()) / y.std().clamp_min(1e-8))[:, None]
        w = _ridge(x[:half], target[:half], ridge)
        importance.append(w.abs().sum(1))
        pred = x[half:] @ w + target[:half].mean(0)
        if graph[name].discrete:
            info[name] = (pred.argmax(1) == y[half:].long()).double().mean().item()
        else:
            resid = ((pred - target[half:]) ** 2).sum()
            total = ((target[half:] - target[half:].mean()) ** 2).sum().clamp_min(1e-12)
            info[name] = max(0.0, (1 - resid / total).item())
    r = torch.stack(importance, 1).numpy() + 1e-12  # (F, K)
    k, f = r.shape[1], r.shape[0]
    d_per = 1 - _entropy((r / r.sum(1, keepdims=True)).T, k)
    rho = r.sum(1) / r.sum()
    c_per = 1 - _entropy(r / r.sum(0, keepdims=True), f)
    return {"disentanglement": float((rho * d_per).sum()), "completeness": float(c_per.mean()),
            "informativeness": float(np.mean(list(info.values()))),
            "completeness_per_node": dict(zip(graph.order, map(float, c_per))), "informativeness_per_node": info}


def _ridge(x: Tensor, y: Tensor, lam: float) -> Tensor:
    """Closed-form ridge regression weights (F, T) on centred data."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    a = xc.T @ xc + lam * xc.shape[0] * torch.eye(x.shape[1], dtype=x.dtype)
    return torch.linalg.solve(a, xc.T @ yc)
