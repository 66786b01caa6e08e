"""Site codes: a switched-on local finding is transplanted at a site drawn from the checkpoint's site bank."""

import pytest
import torch

from causaldiff.diffusion.transplant import TransplantSettings, place_patches, site_disk
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.inference.sites import SiteBank, change_peaks, fit_site_banks, load_site_banks, patches_at
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
    height = 0.8 * sum(torch.exp(torch.tensor(-(dy * dy + dx * dx) / 2.0)) for dy in (-1, 0, 1)
                       for dx in (-1, 0, 1)) / 9
    torch.testing.assert_close(peaks[:, 2], height.repeat(2), atol=1e-4, rtol=0)  # the 3×3 mean at the peak
    dark = change_peaks(-x, torch.full_like(x, 0.3))  # a darker finding: the same sites, a negative height
    torch.testing.assert_close(dark[:, :2], peaks[:, :2])
    torch.testing.assert_close(dark[:, 2], -peaks[:, 2])


def test_site_bank_draws_stored_codes_seeded_and_refuses_bad_shapes():
    bank = SiteBank(torch.arange(15.0).reshape(5, 3), torch.arange(5.0).view(5, 1, 1, 1).expand(5, 1, 3, 3))
    draw = lambda seed: bank.sample(64, torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(1).where, draw(1).where) and not torch.equal(draw(1).where, draw(2).where)
    d = draw(3)
    assert {tuple(r) for r in d.where.tolist()} <= {tuple(r) for r in bank.sites.tolist()}
    assert torch.equal(d.patches[:, 0, 1, 1], d.where[:, 0] / 3)  # each site keeps its own patch
    with pytest.raises(ValueError, match=r"site bank needs \(M >= 1, 3\) sites"):
        SiteBank(torch.zeros(0, 3), torch.zeros(0, 1, 3, 3))
    with pytest.raises(ValueError, match=r"needs \(M, C, P, P\) patches for its 5 sites, got \(4, 1, 3, 3\)"):
        SiteBank(torch.zeros(5, 3), torch.zeros(4, 1, 3, 3))


def test_a_patch_taken_at_a_site_is_put_back_there_and_the_disk_scales_with_the_image():
    change = bumps([16, 3], [48, 60], 0.7, size=64)  # one near the border: zero-padded
    where = torch.tensor([[16.5 / 64, 48.5 / 64, 0.7], [3.5 / 64, 60.5 / 64, 0.7]])
    patches = patches_at(change, where, TransplantSettings().patch_side(64))
    assert patches.shape == (2, 1, 13, 13)  # 7 px at 32 px, 13 at 64
    assert patches[0, 0, 6, 6].item() == pytest.approx(0.7) and patches[1, 0, 6, 6].item() == pytest.approx(0.7)
    placed = place_patches(where, patches, 64)
    assert (placed - change).abs().amax() < 1e-6  # what the windows held comes back in place
    nothing = place_patches(torch.full((1, 3), float("nan")), patches[:1], 64)
    assert nothing.abs().sum() == 0  # NaN row: nothing drawn
    disk = site_disk(torch.cat([where[:1], torch.full((1, 3), float("nan"))]), 64, disk_px=2.5)
    assert disk.shape == (2, 1, 64, 64) and disk[0, 0, 16, 48]
    assert disk[0].sum().item() == pytest.approx(3.14159 * 5 ** 2, rel=0.15)  # radius 2.5 px at 32 px = 5 px at 64
    assert not disk[1].any()


@pytest.fixture(scope="module")
def brain():
    model, _ = tiny_model("brain", n=256)
    from causaldiff.data.worlds import get_world
    from causaldiff.pixels import to_unit

    world = get_world("brain", 16)
    exo, labels = world.sample(400, seed=3)
    return model, to_unit(world.render(exo, labels)), labels


def test_a_transplant_draws_at_seeded_sites_from_the_bank_and_leaves_unswitched_images_to_the_decoder(brain):
    model, x, labels = brain
    pipe = CounterfactualPipeline(model)
    lesion_free = {k: v[:2] * 0 for k, v in labels.items()}
    decoded = CounterfactualPipeline(model, findings="decode")(x[:2], lesion_free, "lesion=1", steps=3)
    with pytest.warns(UserWarning, match="no site bank for it: a switched-on lesion is decoded from its latent"):
        no_bank = pipe(x[:2], lesion_free, "lesion=1", steps=3)
    torch.testing.assert_close(no_bank.cf_x, decoded.cf_x)  # without a bank: decoded, as the ablation does
    pipe.site_banks = fit_site_banks(pipe, x, labels, steps=3, n=8)
    assert pipe.site_banks["lesion"].sites.shape == (8, 3)
    neg = torch.nonzero(labels["lesion"] == 0).flatten()[:6]
    x0, y0 = x[neg], {k: v[neg] for k, v in labels.items()}
    ab = pipe.abduct(x0, y0, steps=3)
    cf = lambda seed, w=3.0: pipe.counterfactuals(ab, ["lesion=1"], 3, w, torch.Generator().manual_seed(seed))[0]  # noqa: E731
    a, b = cf(1), cf(1)
    assert torch.equal(a.cf_x, b.cf_x)  # same seed, same site, same image
    torch.testing.assert_close(cf(1, w=1.0).cf_x, a.cf_x)  # the transplant's weight is its own, not w
    sites = pipe.draw_sites(ab.labels, a.cf_labels, torch.Generator().manual_seed(1))
    assert sites.drawn.all()  # every lesion-free image is switched on
    factual = pipe.predict(ab.noise, ab.z, ab.s, 3)
    change = (a.cf_x - factual).abs().mean(1).flatten(1)
    where = torch.stack([change.argmax(1) // 16, change.argmax(1) % 16], 1).float() + 0.5
    assert (where - sites.where[:, :2] * 16).norm(dim=1).median() <= 2.0  # the largest change is at the drawn site
    pipe.transplant = TransplantSettings(guidance=1.0)
    assert (cf(1).cf_x - a.cf_x).abs().amax() > 1e-3  # ... which sets how strongly it is drawn
    pipe.transplant = TransplantSettings()
    pos = torch.nonzero(labels["lesion"] == 1).flatten()[:3]  # already lesioned: nothing switched on
    mixed = torch.cat([neg[:2], pos])  # in one batch with drawn images, the others decode as the pipeline says
    for keep in (False, True):
        pipe.keep_unchanged = keep
        ab2 = pipe.abduct(x[mixed], {k: v[mixed] for k, v in labels.items()}, steps=3)
        out = pipe.counterfactuals(ab2, ["lesion=1", "age+=20"], 3, 3.0, torch.Generator().manual_seed(1))
        plain = CounterfactualPipeline(model, keep_unchanged=keep, findings="decode")
        ref = plain.counterfactuals(ab2, ["lesion=1", "age+=20"], 3, 3.0)
        torch.testing.assert_close(out[0].cf_x[2:], ref[0].cf_x[2:], atol=1e-5, rtol=0)
        torch.testing.assert_close(out[1].cf_x, ref[1].cf_x, atol=1e-5, rtol=0)  # no finding switched on
        assert (out[0].cf_x[:2] - ref[0].cf_x[:2]).abs().amax() > 1e-3  # the switched ones are transplanted
    exact = CounterfactualPipeline(model, inversion="residual", site_banks=pipe.site_banks)
    ab3 = exact.abduct(x[mixed], {k: v[mixed] for k, v in labels.items()}, steps=3)
    out3 = exact.counterfactuals(ab3, ["lesion=1"], 3, 1.0, torch.Generator().manual_seed(1))[0].cf_x
    assert (out3[2:] - x[mixed][2:]).abs().amax() < 1e-5 < 1e-3 < (out3[:2] - x[mixed][:2]).abs().amax()
    changed = ((out3[:2] - x[mixed][:2]).abs() > 1e-5).sum((1, 2, 3))  # the drawn ones are the source outside the
    assert (changed <= 13).all()  # disk of 3.5 px at 32 px (1.75 px at 16: at most 13 pixels)


def test_a_finding_switched_on_by_its_parent_is_transplanted_onto_the_parents_own_change(brain):
    """do(age) that switches the lesion on changes the anatomy too: the transplant builds on the decoding without
    the lesion's change (its block factual), not on the factual image, so outside the lesion's disk the image is
    that decoding's, and the age change is kept."""
    model, x, labels = brain
    pipe = CounterfactualPipeline(model, inversion="residual")
    pipe.site_banks = fit_site_banks(pipe, x, labels, steps=3, n=8)
    neg = torch.nonzero(labels["lesion"] == 0).flatten()[:4]
    ab = pipe.abduct(x[neg], {k: v[neg] for k, v in labels.items()}, steps=3)
    gen = torch.Generator().manual_seed(0)
    cf_z, cf_labels = pipe.intervene(ab, ["age=80", "lesion=1"], gen)
    sites = pipe.draw_sites(ab.labels, cf_labels, torch.Generator().manual_seed(1))
    base = pipe._transplant_base(ab.z, cf_z, ab.labels, [cf_labels])
    i = model.graph.order.index("lesion")
    assert torch.equal(base[:, i], ab.z[:, i]) and not torch.equal(base, ab.z)  # only the lesion's block restored
    out = pipe.predict(ab.noise, cf_z, ab.s, 3, 1.0, ab.z, sites, ab.trace, ab.depth, base)
    aged = pipe.decode(ab.noise, base, ab.s, 3, 1.0, ab.z, ab.trace, depth=ab.depth)  # the age change alone
    outside = ~site_disk(sites.where, 16, TransplantSettings().disk_px)
    assert torch.equal(out.masked_select(outside), aged.masked_select(outside))  # built on the aged decoding
    assert (aged - x[neg]).abs().amax() > 1e-3  # which is not the factual image
    alone = pipe.predict(ab.noise, cf_z, ab.s, 3, 1.0, ab.z, sites, ab.trace, ab.depth)  # without a base: factual
    assert torch.allclose(alone.masked_select(outside), x[neg].masked_select(outside), atol=1e-5)


def test_fitting_sites_needs_an_image_that_shows_the_finding(brain):
    model, x, labels = brain
    with pytest.raises(ValueError, match="no image with lesion = 1"):
        fit_site_banks(CounterfactualPipeline(model), x[:4], {k: v[:4] * 0 for k, v in labels.items()})


def test_only_nodes_marked_local_get_sites(brain):
    model, x, labels = brain
    assert [n for n, node in model.graph.nodes.items() if node.local] == ["lesion"]
    pipe = CounterfactualPipeline(model, site_banks={"lesion": SiteBank(torch.tensor([[0.5, 0.5, 1.0]]),
                                                                        torch.ones(1, 1, 5, 5))})  # 16 px: 5 × 5
    zeros = {k: torch.zeros(4) for k in model.graph.order}
    ones = {k: torch.ones(4) for k in model.graph.order}
    assert not pipe.draw_sites(zeros, {**zeros, "sex": torch.ones(4)}).drawn.any()  # sex is not local
    drawn = pipe.draw_sites(zeros, ones)
    assert torch.equal(drawn.where, torch.tensor([[0.5, 0.5, 1.0]] * 4))
    assert torch.equal(drawn.patches, torch.ones(4, 1, 5, 5))
    assert not pipe.draw_sites(ones, ones).drawn.any()  # already shown: nothing drawn
    pipe.site_banks["lesion"] = SiteBank(torch.tensor([[0.5, 0.5, 1.0]]), torch.ones(1, 1, 7, 7))
    with pytest.raises(ValueError, match=r"holds \(1, 7, 7\) patches; this model needs \(1, 5, 5\)"):
        pipe.draw_sites(zeros, ones)
    pendulum, _ = tiny_model("pendulum")
    nothing = {k: torch.zeros(4) for k in pendulum.graph.order}
    assert not CounterfactualPipeline(pendulum).draw_sites(nothing, {k: v + 1 for k, v in nothing.items()}).drawn.any()


def test_export_stores_the_site_banks_and_inference_reads_them_from_the_checkpoint(brain, tmp_path):
    from causaldiff.training.export import export_checkpoint

    model, x, labels = brain
    src = tmp_path / "last.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
                "hyper_parameters": model.config}, src)
    out = export_checkpoint(src, tmp_path / "model.ckpt", {"inversion": "residual"}, site_images=(x, labels))
    ckpt = torch.load(out, weights_only=True)  # plain tensors
    banks = load_site_banks(ckpt)
    pipe = CounterfactualPipeline.from_checkpoint(out)
    assert pipe.inversion == "residual" and set(banks) == set(pipe.site_banks) == {"lesion"}
    fitted = fit_site_banks(CounterfactualPipeline(model, inversion="residual"), x, labels)["lesion"]
    torch.testing.assert_close(pipe.site_banks["lesion"].sites, fitted.sites)  # the export's own abduction
    torch.testing.assert_close(pipe.site_banks["lesion"].patches, fitted.patches)


def test_the_shipped_brain_model_carries_its_site_bank():
    from causaldiff.checkpoint import load_checkpoint

    banks = load_site_banks(load_checkpoint("brain32"))
    assert set(banks) == {"lesion"} and banks["lesion"].sites.shape[0] >= 32
    assert banks["lesion"].patches.shape[1:] == (1, 7, 7)
    assert (banks["lesion"].sites[:, 2] > 0).all()  # brighter lesions only: the polarity filter ran


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
    patches = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 5, 5)
    monkeypatch.setattr("causaldiff.inference.sites.abduct_sites", lambda *a: (peaks, patches))
    bank = fit_site_banks(CounterfactualPipeline(model), x, labels)["lesion"]
    torch.testing.assert_close(bank.sites, peaks[[0, 1, 3]])
    torch.testing.assert_close(bank.patches, patches[[0, 1, 3]])
