import math

import pytest
import torch

from causaldiff.evaluation.metrics import dci, frechet_distance, l1_255, label_error
from causaldiff.graph import CausalGraph

G = CausalGraph.from_dict({"a": {}, "b": {}, "c": {"kind": "binary"}})


def test_l1_identical_and_grey_level_shift():
    x = torch.rand(4, 3, 8, 8) * 1.5 - 0.75
    assert l1_255(x, x) == 0.0
    for k in (1, 7, 30):
        assert l1_255(x, x + k / 127.5) == pytest.approx(k, abs=1e-3)


def test_label_error_mae_and_accuracy():
    assert label_error(G, "a", torch.tensor([1.0, 2.0]), torch.tensor([2.0, 4.0])) == pytest.approx(1.5)
    assert label_error(G, "c", torch.tensor([1.0, 0.0, 1.0, 1.0]), torch.tensor([1.0, 1.0, 1.0, 0.0])) == 0.5


def test_frechet_distance_known_values():
    g = torch.Generator().manual_seed(0)
    f = torch.randn(4000, 3, generator=g)
    assert abs(frechet_distance(f, f)) < 1e-6
    shifted = frechet_distance(f, f + torch.tensor([2.0, 0.0, 1.0]))
    assert shifted == pytest.approx(5.0, rel=1e-3)  # ||mu1 - mu2||^2, same covariance
    scaled = frechet_distance(f, 2 * f)  # N(0, I) vs N(0, 4I): 3 * (1 + 4 - 2 * 2) = 3
    assert scaled == pytest.approx(3.0, rel=0.1)


def test_dci_perfect_and_entangled_codes():
    g = torch.Generator().manual_seed(0)
    n = 2000
    labels = {"a": torch.randn(n, generator=g), "b": torch.randn(n, generator=g),
              "c": (torch.rand(n, generator=g) < 0.5).float()}
    perfect = torch.stack([labels["a"], labels["b"], labels["c"] * 2 - 1], 1)
    d = dci(perfect, labels, G)
    assert d["disentanglement"] > 0.95 and d["completeness"] > 0.95 and d["informativeness"] > 0.95
    mix = torch.tensor([[1.0, 1.0, 1.0], [1.0, -1.0, 1.0], [1.0, 1.0, -1.0]])
    entangled = perfect @ mix
    e = dci(entangled, labels, G)
    assert e["disentanglement"] < 0.5 and e["completeness"] < 0.5
    assert e["informativeness"] > 0.95  # same information, spread over every feature
    noise = dci(torch.randn(n, 3, generator=g), labels, G)
    assert noise["informativeness"] < 0.6 and math.isfinite(noise["disentanglement"])
    with pytest.raises(ValueError, match="at least 4 samples"):
        dci(perfect[:3], {k: v[:3] for k, v in labels.items()}, G)
