"""Site codes: a switched-on local finding is transplanted at a site drawn from the checkpoint's site bank."""

import pytest
import torch

from causaldiff.diffusion.transplant import TransplantSettings, place_patches, site_disk
from causaldiff.inference import sites as site_codes
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.inference.sites import SiteBank, change_peaks, finding_hwhm, fit_site_banks, load_site_banks
from tests.helpers import tiny_model


def bumps(rows, cols, height=1.0, size=32, sigma=1.0):
    """(B, 1, size, size) Gaussian bumps of width ``sigma`` and ``height`` at pixel (rows, cols)."""
    yy, xx = torch.meshgrid(torch.arange(float(size)), torch.arange(float(size)), indexing="ij")
    r, c = torch.tensor(rows, dtype=torch.float32), torch.tensor(cols, dtype=torch.float32)
    d2 = (yy - r.view(-1, 1, 1)) ** 2 + (xx - c.view(-1, 1, 1)) ** 2
    return height * torch.exp(-d2 / (2 * sigma ** 2))[:, None]


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


def test_a_patch_taken_at_a_site_is_put_back_there_and_window_and_disk_scale_with_the_finding():
    change = bumps([16, 3], [48, 60], 0.7, size=64)  # one near the border: zero-padded
    where = torch.tensor([[16.5 / 64, 48.5 / 64, 0.7], [3.5 / 64, 60.5 / 64, 0.7]])
    settings = TransplantSettings()
    hwhm = finding_hwhm(site_codes.patches_at(change, where, 17))
    patches = site_codes.patches_at(change, where, settings.patch_side(hwhm))
    assert patches.shape == (2, 1, 7, 7)  # unit σ: HWHM 1.18 px, half side 2.4 × 1.18 ≈ 3
    wide = bumps([16], [48], 0.7, size=64, sigma=2.0)
    assert settings.patch_side(finding_hwhm(site_codes.patches_at(wide, where[:1], 17))) == 13  # twice as wide: 13
    assert patches[0, 0, 3, 3].item() == pytest.approx(0.7) and patches[1, 0, 3, 3].item() == pytest.approx(0.7)
    placed = place_patches(where, patches, 64)
    assert (placed - change).abs().amax() < 0.02  # what the windows held comes back in place (its tails cut at 3σ)
    nothing = place_patches(torch.full((1, 3), float("nan")), patches[:1], 64)
    assert nothing.abs().sum() == 0  # NaN row: nothing drawn
    disk = site_disk(torch.cat([where[:1], where[:1], torch.full((1, 3), float("nan"))]), 64,
                     torch.tensor([2.5, 5.0, 9.0]))
    assert disk.shape == (3, 1, 64, 64) and disk[0, 0, 16, 48]
    assert disk[0].sum().item() == pytest.approx(3.14159 * 2.5 ** 2, rel=0.15)  # each site its own radius, in px
    assert disk[1].sum().item() == pytest.approx(3.14159 * 5 ** 2, rel=0.15)
    assert not disk[2].any()


def test_a_findings_size_is_its_half_width_at_half_maximum_above_the_windows_edge():
    for sigma in (0.5, 1.0, 2.0, 3.0):
        hwhm = finding_hwhm(bumps([8], [8], 0.9, size=17, sigma=sigma) + 0.1)  # on a flat ground
        assert hwhm == pytest.approx(sigma * (2 * torch.log(torch.tensor(2.0))).sqrt().item(), rel=0.12), sigma
    signs = bumps([8, 8], [8, 8], 1.0, size=17) * torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
    assert finding_hwhm(signs) == pytest.approx(1.18, abs=0.01)  # |change|: brighter and darker findings alike
    assert finding_hwhm(torch.ones(3, 1, 5, 5)) == 2.0  # no peak: as wide as the window
    with pytest.raises(ValueError, match="a finding's size needs patches of side >= 3, got 1"):
        finding_hwhm(torch.ones(2, 1, 1, 1))
    cut, padded = site_codes.resized(signs, 5), site_codes.resized(signs, 21)
    torch.testing.assert_close(site_codes.resized(cut, 17)[..., 6:11, 6:11], signs[..., 6:11, 6:11])
    assert cut.shape[-1] == 5 and padded.shape[-1] == 21 and padded[..., :2, :].abs().sum() == 0


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
    radius = exact.transplant.disk * exact.site_banks["lesion"].hwhm  # 2.8 of the bank's measured HWHM
    changed = ((out3[:2] - x[mixed][:2]).abs() > 1e-5).sum((1, 2, 3))  # the drawn ones are the source outside the
    assert (changed <= 3.2 * radius ** 2 + 4 * radius).all()  # disk (π r² and its rim's pixels)


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
    outside = ~site_disk(sites.where, 16, TransplantSettings().disk * sites.hwhm)
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
    pipe.site_banks["lesion"] = SiteBank(torch.tensor([[0.5, 0.5, 1.0]]), torch.ones(1, 3, 5, 5))
    with pytest.raises(ValueError, match=r"holds patches of 3 channel\(s\); this model has 1"):
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
    assert pipe.site_banks["lesion"].hwhm == pytest.approx(fitted.hwhm)  # stored beside the patches


def test_the_shipped_brain_model_carries_its_site_bank():
    from causaldiff.checkpoint import load_checkpoint

    banks = load_site_banks(load_checkpoint("brain32"))
    assert set(banks) == {"lesion"} and banks["lesion"].sites.shape[0] >= 32
    assert banks["lesion"].patches.shape[1:] == (1, 7, 7) and 1.1 < banks["lesion"].hwhm < 1.4  # measured, stored
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
    monkeypatch.setattr("causaldiff.inference.sites.abduct_sites", lambda *a, **k: (peaks, patches))
    bank = fit_site_banks(CounterfactualPipeline(model), x, labels)["lesion"]
    torch.testing.assert_close(bank.sites, peaks[[0, 1, 3]])
    torch.testing.assert_close(site_codes.resized(bank.patches, 5), patches[[0, 1, 3]])


def test_a_switched_off_finding_is_decoded_afresh_in_a_disk_where_the_image_exceeds_its_removal(brain, monkeypatch):
    """do(lesion=0) on an exact abduction: a disk (2.8 of the bank's HWHM) around the peak, in the bank's direction and
    through its zero-mean shape, of the image minus its removal (decoded without residuals or mask, the lesion's block
    alone switched off) is decoded without the residuals and as counterfactual at every step; a broad brighter
    reconstruction error does not draw the disk."""
    from causaldiff.inference.sites import removal_disks

    model, x, labels = brain
    neg = torch.nonzero(labels["lesion"] == 0).flatten()[:3]
    y = {**{k: v[neg] for k, v in labels.items()}, "lesion": torch.ones(3)}
    bank = SiteBank(torch.tensor([[0.5, 0.5, 0.8]]), bumps([3], [3], 0.8, size=7))  # HWHM 1.18 px
    pipe = CounterfactualPipeline(model, inversion="residual", keep_unchanged=True, site_banks={"lesion": bank})
    ab = pipe.abduct(x[neg], y, steps=3)
    decode = pipe.decode
    removed = x[neg] - bumps([5, 9, 11], [6, 10, 4], 0.9, size=16) + bumps([2, 2, 2], [13, 13, 13], 1.5, size=16) \
        - bumps([13] * 3, [13] * 3, 1.0, size=16, sigma=4.0)  # a broad error: brighter than the bump, 3x3-smoothed
    latents = []

    def removal(noise, cf_z, s, steps, guidance, z, trace=None, keep_unchanged=None, depth=None, redraw=None):
        if keep_unchanged is False and trace is None:  # the removal: a bright bump taken away, a darker change larger
            latents.append(cf_z)  # in size, and a broad brighter error
            return removed[: len(noise)]
        return decode(noise, cf_z, s, steps, guidance, z, trace, keep_unchanged, depth, redraw)

    monkeypatch.setattr(pipe, "decode", removal)
    off, on = pipe.intervene(ab, "lesion=0")[0], ab.z
    disks, start = removal_disks(pipe, ab, torch.cat([off, on]), [{**y, "lesion": torch.zeros(3)}, y], 3,
                                 torch.Generator().manual_seed(0))  # off, left on
    a = pipe._schedule("sample", 3).a_from[0]  # a disk starts from q(x_t | removal), fresh noise
    eps = torch.randn(3, *x.shape[1:], generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(start[:3], a.sqrt() * removed + (1 - a).sqrt() * eps)
    k = model.graph.index("lesion")
    assert len(latents) == 1 and latents[0].shape == ab.z.shape  # one decoding of the three switched off
    torch.testing.assert_close(latents[0][:, k], off[:, k])  # the lesion's block switched off, and nothing else
    torch.testing.assert_close(torch.cat([latents[0][:, :k], latents[0][:, k + 1:]], 1),
                               torch.cat([ab.z[:, :k], ab.z[:, k + 1:]], 1))
    assert disks.shape == (6, 1, 16, 16) and not disks[3:].any()
    assert disks[[0, 1, 2], 0, [5, 9, 11], [6, 10, 4]].all() and not disks[:3, 0, 2, 13].any()  # the bright one
    assert not disks[:3, 0, 13, 13].any()
    broad = change_peaks(x[neg], removed, 1.0)[:, :2] * 16  # without the filter: the broad error's peak
    assert ((broad - 13.5).abs() < 1.5).all()
    assert disks[:3].sum((1, 2, 3)).float().mean() == pytest.approx(3.14159 * (2.8 * bank.hwhm) ** 2, rel=0.2)
    assert removal_disks(pipe, ab, on, [y], 3) is None  # nothing switched off
    assert removal_disks(pipe, CounterfactualPipeline(model).abduct(x[neg], y, 3), on, [y], 3) is None  # no trace
    monkeypatch.undo()
    cf_z, _ = pipe.intervene(ab, "lesion=0")
    everywhere = torch.ones(3, 1, 16, 16, dtype=torch.bool)
    afresh = pipe.decode(ab.noise, cf_z, ab.s, 3, 1.0, ab.z, ab.trace, redraw=everywhere)
    plain = pipe.decode(ab.noise, cf_z, ab.s, 3, 1.0, ab.z, None, keep_unchanged=False)  # no residuals, no mask
    guided = pipe.decode(ab.noise, cf_z, ab.s, 3, pipe.transplant.removal_guidance, ab.z, None, keep_unchanged=False)
    torch.testing.assert_close(afresh, guided, atol=1e-5, rtol=0)  # a removal alone: at least the removal guidance
    kept = pipe.decode(ab.noise, cf_z, ab.s, 3, 1.0, ab.z, ab.trace)
    assert (kept - afresh).abs().amax() > 1e-2  # the residuals and the mask matter elsewhere
    unmasked = CounterfactualPipeline(model, inversion="residual")
    torch.testing.assert_close(unmasked.decode(ab.noise, cf_z, ab.s, 3, 1.0, ab.z, ab.trace, redraw=everywhere),
                               plain, atol=1e-5, rtol=0)  # without keep_unchanged too


def test_a_switched_off_finding_with_nothing_else_changed_changes_its_disk_alone(brain):
    """Keeping unchanged pixels, do(lesion=0) alone is decoded afresh in its disk and every other pixel comes back as
    it was (as outside a transplant's disk); with another node changed too, the predicted change admits more."""
    model, x, labels = brain
    pos = torch.nonzero(labels["lesion"] == 1).flatten()[:3]
    y = {k: v[pos] for k, v in labels.items()}
    pipe = CounterfactualPipeline(model, inversion="residual", keep_unchanged=True)
    ab = pipe.abduct(x[pos], y, steps=3)
    disk = site_disk(torch.tensor([[0.5, 0.5, 1.0]] * 3), 16, 3.0)
    outside = ~disk.expand_as(x[pos])
    for do, alone in (("lesion=0", True), ({"lesion": 0.0, "age": 75.0}, False)):
        cf_z, _ = pipe.intervene(ab, do)
        cf_x = pipe.decode(ab.noise, cf_z, ab.s, 3, 1.0, ab.z, ab.trace, redraw=disk)
        assert (cf_x - x[pos])[~outside].abs().amax() > 1e-2  # the disk is decoded afresh
        moved = (cf_x - x[pos])[outside].abs().amax()
        assert moved < 1e-4 if alone else moved > 1e-3
    assert pipe._confined(ab.z, cf_z, disk).tolist() == [False] * 3
    assert pipe._confined(ab.z, ab.z, disk).tolist() == [True] * 3  # nothing but the finding changed
    assert pipe._confined(ab.z, ab.z, torch.zeros_like(disk)).tolist() == [False] * 3  # no disk: nothing confined
    pipe.site_banks = {"lesion": SiteBank(torch.tensor([[0.5, 0.5, 0.8]]), bumps([3], [3], 0.8, size=7))}
    seeded = [pipe.counterfactuals(ab, ["lesion=0"], 3, 1.0, torch.Generator().manual_seed(seed))[0].cf_x
              for seed in (0, 0, 1)]
    torch.testing.assert_close(seeded[0], seeded[1])  # the disk's fresh noise is the generator's
    changed = (seeded[0] - seeded[2]).abs().amax(1).flatten(1)
    assert (changed.amax(1) > 1e-3).all() and ((changed > 1e-4).sum(1) < 0.5 * 16 * 16).all()  # in the disk alone


def test_a_segmented_finding_is_banked_from_its_mask_without_the_model(brain, monkeypatch):
    """With masks, a site is the finding's peak over its background filled in by Laplace's equation (a ramp is
    harmonic: it comes back exactly), and its patch is the finding alone; images without a mask are not used."""
    from causaldiff.inference.sites import harmonic_fill, masked_sites

    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    ramp = ((yy + 2 * xx) / 60 - 0.4).expand(3, 1, 16, 16)
    hole = torch.zeros(3, 1, 16, 16, dtype=torch.bool)
    hole[:, :, 4:9, 6:11] = True
    torch.testing.assert_close(harmonic_fill(ramp, hole), ramp, atol=2e-3, rtol=0)
    finding = bumps([6, 6, 7], [8, 8, 8], 0.7, size=16, sigma=0.7)
    where, patches = masked_sites(ramp + finding, (finding > 0.1).float(), side=7)
    torch.testing.assert_close(where[:, :2] * 16, torch.tensor([[6.5, 8.5], [6.5, 8.5], [7.5, 8.5]]))
    assert (where[:, 2] > 0.2).all()  # 3x3-smoothed
    torch.testing.assert_close(patches[0, 0], finding[0, 0, 3:10, 5:12], atol=0.02, rtol=0)  # the finding alone

    model, x, labels = brain
    monkeypatch.setattr("causaldiff.inference.sites.abduct_sites", lambda *a, **k: pytest.fail("the model ran"))
    pos = torch.nonzero(labels["lesion"] == 1).flatten()
    masks = torch.zeros(x.shape[0], 1, 16, 16)
    masks[pos[:2], :, 3:6, 9:12] = 1.0  # two of the lesion images segmented, the rest not
    shown = x.clone()
    shown[pos[:2], :, 3:6, 9:12] += 0.5
    bank = fit_site_banks(CounterfactualPipeline(model), shown, labels, {"lesion": masks})["lesion"]
    assert bank.sites.shape[0] == 2 and (bank.sites[:, 2] > 0).all()
    torch.testing.assert_close(bank.sites[:, :2] * 16, torch.full((2, 2), 4.5).add(torch.tensor([0.0, 6.0])),
                               atol=1.0, rtol=0)
