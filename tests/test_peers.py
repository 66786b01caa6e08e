"""The peers of benchmarks/peers/ (a few steps each, so they cannot rot): they train, abduct, and run through the
Evaluator as counterfactual models."""

import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))

from peers.base import PeerPipeline  # noqa: E402
from peers.train import load_peer, train_peer  # noqa: E402

from causaldiff.data.datamodule import CausalDataModule  # noqa: E402
from causaldiff.scm import AttributeSCM  # noqa: E402


@pytest.fixture(scope="module")
def brain32():
    """The brain world at 32 px (the hierarchical VAE's layout), with its lesion-balanced batches."""
    return CausalDataModule(world="brain", n=64, size=32, batch_size=8, balance="lesion")


@pytest.mark.parametrize("kind", ["vae", "hvae"])
def test_a_peer_trains_saves_and_abducts_its_image_noise_exactly(kind, brain32, tmp_path):
    path = train_peer(kind, brain32, images=24, out=tmp_path / f"{kind}.pt", batch_size=8)
    model, record = load_peer(path)
    assert record["images"] == 24 and record["skipped"] == 0 and len(record["log"]) == 2
    scm = AttributeSCM(brain32.graph).fit(brain32.train_labels(), steps=20)
    idx = brain32.splits["test"][:4]
    x = torch.stack([brain32.dataset[int(i)]["x"] for i in idx])
    labels = {k: v[idx] for k, v in brain32.dataset.labels.items()}

    with_noise = PeerPipeline(model, scm, pixel_noise=True)
    same = with_noise(x, labels, {}, generator=torch.Generator().manual_seed(0))
    assert (same.cf_x - x).abs().max() < 1e-4  # x = loc + scale u: a null intervention returns x
    out = with_noise(x, labels, "age+=20", generator=torch.Generator().manual_seed(1))
    expected = scm.counterfactual(labels, "age+=20", torch.Generator().manual_seed(1))
    assert all(torch.equal(out.cf_labels[k], expected[k]) for k in expected)  # the SCM's labels, same draws
    assert out.cf_x.shape == x.shape and out.cf_x.abs().max() <= 1
    assert (out.cf_x - x).abs().mean() > 0  # the age moved the decoding

    plain = PeerPipeline(model, scm, pixel_noise=False)(x, labels, {})
    assert 0 < (plain.cf_x - x).abs().mean() < 1  # a reconstruction: close to x, not x


def test_a_peer_learns(brain32, tmp_path):
    """Its loss falls on the training images (per-pixel negative ELBO, first logged step against the last)."""
    _, record = load_peer(train_peer("vae", brain32, images=480, out=tmp_path / "v.pt", batch_size=8, log_every=20))
    first, last = record["log"][0], record["log"][-1]
    assert last["nll_per_dim"] + last["kl_per_dim"] < first["nll_per_dim"] + first["kl_per_dim"] - 0.2


def test_the_evaluator_scores_peers_beside_the_variants(tiny_ckpt, tmp_path):
    from causaldiff.evaluation.evaluate import Evaluator, eval_data
    from causaldiff.inference.config import CounterfactualConfig
    from causaldiff.inference.inputs import checkpoint_datamodule
    from causaldiff.models.causal_diffae import CausalDiffAE

    model = CausalDiffAE.from_checkpoint(tiny_ckpt)
    vae, _ = load_peer(train_peer("vae", checkpoint_datamodule(tiny_ckpt), 16, tmp_path / "vae.pt", batch_size=8))
    peers = {"vae": PeerPipeline(vae, model.scm, False), "vae+u": PeerPipeline(vae, model.scm, True)}
    report = Evaluator(model, None, eval_data(tiny_ckpt, 8), CounterfactualConfig(steps=2), cycles=2,
                       variants=["causaldiff"], progress=False, peers=peers, reversibility_cycles=1).run()
    assert list(report["variants"]) == ["causaldiff", "vae", "vae+u"]
    assert report["meta"]["reversibility_cycles"] == 1
    u = report["variants"]["vae+u"]
    assert u["composition"]["2"] < 0.05 and set(u["reversibility"]) == {"1"}
    assert report["variants"]["vae"]["composition"]["1"] > 0.5  # the plain decoding is a lossy reconstruction
    assert report["gains"]["vae"]["true_cf_l1_ratio"] > 0
