"""Attribute-level SCM over labels: learned mechanisms with exact (continuous) or Gumbel-max (discrete) abduction.

Continuous nodes follow an additive-noise model ``y = f(pa) + sigma * eps`` (abduction ``eps = (y - f(pa)) / sigma``
is exact). Discrete nodes take ``argmax(logits(pa) + g)`` with Gumbel noise ``g``; abduction samples ``g`` from
its posterior given the observed class (top-down truncated Gumbel, Oberst & Sontag 2019, "Counterfactual off-policy
evaluation with Gumbel-max structural causal models"). Roots have fitted marginals: a 257-point quantile table
(continuous) or class frequencies (discrete).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from causaldiff.graph import CausalGraph
from causaldiff.interventions import Intervention, resolve

Labels = dict[str, Tensor]
N_QUANTILES = 257


class AttributeSCM(nn.Module):
    """Learned SCM over the graph's labels (raw units in, raw units out; ``labels[node]`` has shape (B,))."""

    def __init__(self, graph: CausalGraph | dict, hidden: int = 32):
        super().__init__()
        self.graph = CausalGraph.from_dict(graph)
        self.mechanisms = nn.ModuleDict()
        for name in self.graph:
            node = self.graph[name]
            if node.parents:
                in_dim = sum(self.graph[p].cardinality for p in node.parents)
                self.mechanisms[name] = nn.Sequential(
                    nn.Linear(in_dim, hidden), nn.SiLU(), nn.Linear(hidden, hidden), nn.SiLU(),
                    nn.Linear(hidden, node.cardinality),
                )
        n = len(self.graph)
        self.register_buffer("loc", torch.zeros(n))  # per-node mean (continuous), for input scaling
        self.register_buffer("scale", torch.ones(n))
        self.register_buffer("sigma", torch.ones(n))  # additive-noise std of continuous non-roots (normalised units)
        self.register_buffer("quantiles", torch.zeros(n, N_QUANTILES))  # continuous roots' marginals
        kmax = max(self.graph[m].cardinality for m in self.graph)
        self.register_buffer("log_probs", torch.zeros(n, kmax))  # discrete roots' marginals
        self.register_buffer("fitted", torch.tensor(False))
        self.requires_grad_(False)  # fitted by `fit` alone, never by an outer optimiser

    # ------------------------------------------------------------------ fitting
    @torch.no_grad()
    def _fit_marginals(self, labels: Labels) -> None:
        for i, name in enumerate(self.graph):
            node, y = self.graph[name], _observed(labels, name)
            if y.numel() == 0:
                raise ValueError(f"cannot fit the SCM: node '{name}' has no observed labels")
            if node.discrete:
                counts = torch.bincount(y.long(), minlength=node.cardinality)[: node.cardinality].float() + 1.0
                self.log_probs[i] = -torch.inf
                self.log_probs[i, : node.cardinality] = (counts / counts.sum()).log()
            else:
                self.loc[i], self.scale[i] = y.mean(), y.std(unbiased=False).clamp_min(1e-6)
                self.quantiles[i] = torch.quantile(y.double(), torch.linspace(0, 1, N_QUANTILES).double()).float()

    def fit(self, labels: Labels, steps: int = 400, lr: float = 1e-2, seed: int = 0) -> AttributeSCM:
        """Fit marginals and every mechanism by maximum likelihood on the observed rows (NaN = missing)."""
        labels = {k: torch.as_tensor(v, dtype=torch.float32) for k, v in labels.items()}
        missing = [n for n in self.graph if n not in labels]
        if missing:
            raise ValueError(f"cannot fit the SCM: no labels for node(s) {missing}")
        self._fit_marginals(labels)
        gen = torch.Generator().manual_seed(seed)
        for m in self.mechanisms.values():
            for p in m.parameters():  # deterministic init, independent of global RNG state
                nn.init.normal_(p, std=(1.0 / max(p.shape[-1], 1)) ** 0.5 if p.ndim > 1 else 0.0, generator=gen)
        for name, mech in self.mechanisms.items():
            node, i = self.graph[name], self.graph.index(name)
            mech.requires_grad_(True)
            rows = torch.stack([labels[c].isfinite() for c in (name, *node.parents)]).all(0)
            if rows.sum() < 2:
                raise ValueError(f"cannot fit mechanism of '{name}': < 2 rows with it and its parents observed")
            sub = {k: v[rows] for k, v in labels.items()}
            x, y = self._parent_features(sub, name), sub[name]
            opt = torch.optim.Adam(mech.parameters(), lr=lr)
            for _ in range(steps):
                opt.zero_grad()
                out = mech(x)
                if node.discrete:
                    loss = nn.functional.cross_entropy(out, y.long())
                else:
                    loss = nn.functional.mse_loss(out[:, 0], (y - self.loc[i]) / self.scale[i])
                loss.backward()
                opt.step()
            mech.requires_grad_(False)
            if not node.discrete:
                with torch.no_grad():
                    self.sigma[i] = (mech(x)[:, 0] - (y - self.loc[i]) / self.scale[i]).std().clamp_min(1e-4)
        self.fitted.fill_(True)
        return self

    # ------------------------------------------------------------------ the three steps
    def abduct(self, labels: Labels, generator: torch.Generator | None = None) -> Labels:
        """Exogenous noise per node: (B,) standardised residual (continuous) or (B, K) Gumbel noise (discrete)."""
        self._check_fitted()
        noise = {}
        with torch.no_grad():
            for i, name in enumerate(self.graph):
                node, y = self.graph[name], labels[name].float()
                if not y.isfinite().all():
                    raise ValueError(f"cannot abduct: label '{name}' has missing or non-finite values")
                if node.discrete:
                    noise[name] = _gumbel_posterior(self._logits(labels, name), y.long(), generator)
                elif node.parents:
                    mean = self.mechanisms[name](self._parent_features(labels, name))[:, 0]
                    noise[name] = ((y - self.loc[i]) / self.scale[i] - mean) / self.sigma[i]
                else:
                    noise[name] = y.clone()  # a root's exogenous noise is its own value
        return noise

    def predict(self, noise: Labels, do: list[Intervention] = (), factual: Labels | None = None) -> Labels:
        """Push ``noise`` through the mechanisms in topological order, with ``do`` applied (shift needs ``factual``)."""
        self._check_fitted()
        targets = {iv.node: iv for iv in do}
        out: Labels = {}
        changed: set[str] = set()
        with torch.no_grad():
            for i, name in enumerate(self.graph):
                node, n_i = self.graph[name], noise[name]
                if factual is not None and name not in targets and not changed & set(node.parents):
                    out[name] = factual[name].float().clone()  # non-descendants of `do` keep their exact value
                    continue
                changed.add(name)
                if name in targets:
                    iv = targets[name]
                    if iv.mode == "shift" and factual is None:
                        raise ValueError(f"shift intervention '{iv}' needs the factual labels")
                    base = factual[name].float() if factual is not None else torch.zeros(n_i.shape[0])
                    out[name] = iv.values(base.to(n_i.device))
                elif node.discrete:
                    out[name] = (self._logits(out, name) + n_i).argmax(-1).float()
                elif node.parents:
                    mean = self.mechanisms[name](self._parent_features(out, name))[:, 0]
                    out[name] = (mean + self.sigma[i] * n_i) * self.scale[i] + self.loc[i]
                else:
                    out[name] = n_i.clone()
        return out

    def counterfactual(self, labels: Labels, do, generator: torch.Generator | None = None) -> Labels:
        """``predict(abduct(labels), do)``: cf labels; non-descendants of ``do`` keep their factual values."""
        do = resolve(do, self.graph)
        return self.predict(self.abduct(labels, generator), do, factual=labels)

    def sample(self, n: int, generator: torch.Generator | None = None) -> Labels:
        """Draw ``n`` label sets from the fitted SCM (roots from their marginals)."""
        self._check_fitted()
        noise = {}
        for i, name in enumerate(self.graph):
            node = self.graph[name]
            if node.discrete:
                noise[name] = _gumbel((n, node.cardinality), generator, self.loc.device)
                if not node.parents:
                    noise[name] = noise[name] + self.log_probs[i, : node.cardinality]
            elif node.parents:
                noise[name] = torch.randn(n, generator=generator).to(self.loc.device)
            else:
                u = torch.rand(n, generator=generator).to(self.loc.device) * (N_QUANTILES - 1)
                lo = u.floor().long().clamp_max(N_QUANTILES - 2)
                q = self.quantiles[i]
                noise[name] = q[lo] + (u - lo) * (q[lo + 1] - q[lo])
        return self.predict(noise)

    # ------------------------------------------------------------------ helpers
    def _logits(self, labels: Labels, name: str) -> Tensor:
        i, node = self.graph.index(name), self.graph[name]
        if node.parents:
            return self.mechanisms[name](self._parent_features(labels, name))
        b = next(iter(labels.values())).shape[0] if labels else 1
        return self.log_probs[i, : node.cardinality].expand(b, -1)

    def _parent_features(self, labels: Labels, name: str) -> Tensor:
        """(B, sum of parent cardinalities): standardised continuous parents, one-hot discrete ones."""
        feats = []
        for p in self.graph[name].parents:
            pn, j, v = self.graph[p], self.graph.index(p), labels[p].float()
            if pn.discrete:
                feats.append(nn.functional.one_hot(v.long().clamp(0, pn.cardinality - 1), pn.cardinality).float())
            else:
                feats.append(((v - self.loc[j]) / self.scale[j])[:, None])
        return torch.cat(feats, dim=1)

    def _check_fitted(self) -> None:
        if not bool(self.fitted):
            raise RuntimeError("AttributeSCM is not fitted: call fit(labels) first")


def _observed(labels: Labels, name: str) -> Tensor:
    y = labels[name]
    return y[y.isfinite()]


def _gumbel(shape, generator, device=None) -> Tensor:
    """Standard Gumbel noise, drawn on the CPU (so a CPU generator seeds it on any device), then moved."""
    u = torch.rand(shape, generator=generator).clamp(1e-10, 1 - 1e-7)
    return (-torch.log(-torch.log(u))).to(device)


def _gumbel_posterior(logits: Tensor, k: Tensor, generator) -> Tensor:
    """Sample Gumbel noise ``g`` (B, K) given ``argmax(logits + g) == k`` (top-down truncated Gumbel)."""
    logits = logits.float()
    top = torch.logsumexp(logits, dim=-1, keepdim=True) + _gumbel(logits.shape[:1] + (1,), generator, logits.device)
    free = logits + _gumbel(logits.shape, generator, logits.device)
    trunc = -torch.log(torch.exp(-top) + torch.exp(-free))  # Gumbel(logits) truncated below `top`
    g = torch.where(nn.functional.one_hot(k, logits.shape[-1]).bool(), top.expand_as(logits), trunc)
    return g - logits
