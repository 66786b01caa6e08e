"""Site codes: a switched-on finding is drawn at a site sampled from where the model saw it (guide_against="site")."""

import pytest
import torch

from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.inference.sites import SiteBank, change_peaks, site_maps
from tests.helpers import tiny_model


def bumps(rows, cols, height=1.0, size=32):
    """(B, 1, size, size) unit-σ Gaussian bumps of ``height`` at pixel (rows, cols)."""
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    r, c = torch.tensor(rows, dtype=torch.float32), torch.tensor(cols, dtype=torch.float32)
    return height * torch.exp(-((yy - r.view(-1, 1, 1)) ** 2 + (xx - c.view(-1, 1, 1)) ** 2) / 2)[:, None]


def test_change_peaks_finds_the_site_and_height_of_a_removed_bump():
    x = bumps([10, 25], [20, 4], 0.8) - 0.3
    peaks = change_peaks(x, torch.full_like(x, -0.3))
    torch.testing.assert_close(peaks[:, :2], torch.tensor([[10.5, 20.5], [25.5, 4.5]]) / 32)
    torch.testing.assert_close(peaks[:, 2], torch.tensor([0.8, 0.8]), atol=1e-4, rtol=0)
    dark = change_peaks(-x, torch.full_like(x, 0.3))  # a darker finding: the same sites, a negative height
    torch.testing.assert_close(dark[:, :2], peaks[:, :2])
    torch.testing.assert_close(dark[:, 2], torch.tensor([-0.8, -0.8]), atol=1e-4, rtol=0)


def test_site_bank_draws_stored_sites_seeded_and_refuses_an_empty_one():
    bank = SiteBank(torch.arange(15.0).reshape(5, 3))
    draw = lambda seed: bank.sample(64, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))
    assert {tuple(r) for r in draw(3).tolist()} <= {tuple(r) for r in bank.sites.tolist()}
    with pytest.raises(ValueError, match=r"site bank needs \(M >= 1, 3\) sites"):
        SiteBank(torch.zeros(0, 3))


def test_site_maps_put_the_bump_and_disk_at_the_site_scaled_with_the_image():
    sites = torch.tensor([[16.5 / 64, 48.5 / 64, 0.5], [float("nan")] * 3])  # pixel (16, 48)'s centre
    bump, disk = site_maps(sites, 64, gain=2.0, disk_px=2.5)
    assert bump.shape == disk.shape == (2, 1, 64, 64)
    peak = bump[0, 0].flatten().argmax()
    assert (int(peak // 64), int(peak % 64)) == (16, 48)
    assert bump[0].max().item() == pytest.approx(1.0, abs=1e-6)  # gain 2 × height 0.5
    assert disk[0].sum().item() == pytest.approx(3.14159 * 5 ** 2, rel=0.15)  # radius 2.5 px at 32 px = 5 px at 64
    assert bump[1].abs().sum() == 0 and not disk[1].any()  # NaN row: nothing drawn


@pytest.fixture(scope="module")
def brain():
    model, _ = tiny_model("brain", n=256)
    from causaldiff.data.worlds import get_world
    from causaldiff.pixels import to_unit

    world = get_world("brain", 16)
    exo, labels = world.sample(400, seed=3)
    return model, to_unit(world.render(exo, labels)), labels


def test_site_guidance_draws_at_seeded_sites_from_the_bank_and_leaves_unswitched_images_masked(brain):
    model, x, labels = brain
    pipe = CounterfactualPipeline(model, guide_against="site")
    with pytest.raises(ValueError, match="needs lesion's site bank: call fit_sites"):
        pipe(x[:2], {k: v[:2] * 0 for k, v in labels.items()}, "lesion=1", steps=3, guidance=3.0)
    bank = pipe.fit_sites("lesion", x, labels, steps=3, n=8)
    assert bank.sites.shape == (8, 3)
    neg = torch.nonzero(labels["lesion"] == 0).flatten()[:6]
    x0, y0 = x[neg], {k: v[neg] for k, v in labels.items()}
    ab = pipe.abduct(x0, y0, steps=3)
    cf = lambda seed: pipe.counterfactuals(ab, ["lesion=1"], 3, 3.0, torch.Generator().manual_seed(seed))[0]  # noqa: E731
    a, b = cf(1), cf(1)
    assert torch.equal(a.cf_x, b.cf_x)  # same seed, same site, same image
    sites = pipe.draw_sites(ab.labels, a.cf_labels, 3, torch.Generator().manual_seed(1))
    assert sites[:, 0].isfinite().all()  # every lesion-free image is switched on
    factual = pipe.predict(ab.noise, ab.z, ab.s, 3)
    change = (a.cf_x - factual).abs().mean(1).flatten(1)
    where = torch.stack([change.argmax(1) // 16, change.argmax(1) % 16], 1).float() + 0.5
    assert (where - sites[:, :2] * 16).norm(dim=1).median() <= 2.0  # the largest change is at the drawn site
    pos = torch.nonzero(labels["lesion"] == 1).flatten()[:3]  # already lesioned: nothing switched on
    ab1 = pipe.abduct(x[pos], {k: v[pos] for k, v in labels.items()}, steps=3)
    kept = pipe.counterfactuals(ab1, ["lesion=1"], 3, 3.0, torch.Generator().manual_seed(1))[0].cf_x
    masked = CounterfactualPipeline(model, guide_against="masked").counterfactuals(ab1, ["lesion=1"], 3, 3.0)[0].cf_x
    torch.testing.assert_close(kept, masked)
    mixed = torch.cat([neg[:2], pos])  # in one batch with drawn images, the unswitched ones still decode as masked
    ab2 = pipe.abduct(x[mixed], {k: v[mixed] for k, v in labels.items()}, steps=3)
    out = pipe.counterfactuals(ab2, ["lesion=1"], 3, 3.0, torch.Generator().manual_seed(1))[0].cf_x
    ref = CounterfactualPipeline(model, guide_against="masked").counterfactuals(ab2, ["lesion=1"], 3, 3.0)[0].cf_x
    torch.testing.assert_close(out[2:], ref[2:], atol=1e-5, rtol=0)
    assert (out[:2] - ref[:2]).abs().amax() > 1e-3  # the switched ones do not
    exact = CounterfactualPipeline(model, guide_against="site", inversion="residual")
    exact.site_banks = pipe.site_banks  # with residual abduction the unswitched ones come back exactly
    ab3 = exact.abduct(x[mixed], {k: v[mixed] for k, v in labels.items()}, steps=3)
    out3 = exact.counterfactuals(ab3, ["lesion=1"], 3, 3.0, torch.Generator().manual_seed(1))[0].cf_x
    assert (out3[2:] - x[mixed][2:]).abs().amax() < 1e-5 < 1e-3 < (out3[:2] - x[mixed][:2]).abs().amax()


def test_fitting_sites_needs_an_image_that_shows_the_finding(brain):
    model, x, labels = brain
    with pytest.raises(ValueError, match="no image with lesion = 1"):
        CounterfactualPipeline(model, guide_against="site").fit_sites("lesion", x[:4], {k: v[:4] * 0 for k, v in
                                                                                        labels.items()})


def test_only_nodes_marked_local_get_sites_and_site_guidance_needs_one(brain):
    model, x, labels = brain
    assert [n for n, node in model.graph.nodes.items() if node.local] == ["lesion"]
    pipe = CounterfactualPipeline(model, guide_against="site")
    pipe.site_banks["lesion"] = SiteBank(torch.tensor([[0.5, 0.5, 1.0]]))
    zeros = {k: torch.zeros(4) for k in model.graph.order}
    ones = {k: torch.ones(4) for k in model.graph.order}
    assert pipe.draw_sites(zeros, {**zeros, "sex": torch.ones(4)})[:, 0].isnan().all()  # sex is not local
    assert torch.equal(pipe.draw_sites(zeros, ones), torch.tensor([[0.5, 0.5, 1.0]] * 4))
    assert pipe.draw_sites(ones, ones)[:, 0].isnan().all()  # already shown: nothing drawn
    pendulum, _ = tiny_model("pendulum")
    with pytest.raises(ValueError, match="needs a node marked local: true"):
        CounterfactualPipeline(pendulum, guide_against="site")


def test_local_is_a_binary_nodes_flag_in_the_graph_config():
    from causaldiff.graph import CausalGraph

    g = CausalGraph.from_dict({"a": {"kind": "binary", "local": True}, "b": {"kind": "continuous", "parents": "a"}})
    assert g["a"].local and not g["b"].local
    assert CausalGraph.from_dict(g.to_dict()).to_dict() == g.to_dict() == {
        "a": {"kind": "binary", "local": True}, "b": {"kind": "continuous", "parents": ["a"]}}
    with pytest.raises(ValueError, match="only a binary node can be local"):
        CausalGraph.from_dict({"a": {"kind": "continuous", "local": True}})


def test_the_bank_keeps_the_findings_polarity_and_drops_peaks_of_the_other_sign(brain, monkeypatch):
    model, x, labels = brain
    peaks = torch.tensor([[0.2, 0.2, 0.5], [0.3, 0.3, 0.6], [0.4, 0.4, -0.2], [0.5, 0.5, 0.4]])
    monkeypatch.setattr("causaldiff.inference.pipeline.abduct_sites", lambda *a: peaks)
    bank = CounterfactualPipeline(model, guide_against="site").fit_sites("lesion", x, labels)
    torch.testing.assert_close(bank.sites, peaks[[0, 1, 3]])
