import argparse
import warnings

import pytest
import torch
from PIL import Image

from causaldiff.checkpoint import recommended_settings
from causaldiff.cli import main
from causaldiff.commands.common import add_inference_args
from causaldiff.data.folder import FolderDataset
from causaldiff.inference.config import CounterfactualConfig
from causaldiff.inference.inputs import checkpoint_inputs
from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.training.export import export_checkpoint
from causaldiff.viz import GUTTER
from tests.helpers import tiny_model


@pytest.fixture(scope="module")
def pipe_and_batch():
    model, batch = tiny_model()
    torch.manual_seed(0)
    for f in model.mechanisms.f:  # mechanisms start at zero (z = u); give them weights as training would
        for p in f.parameters():
            torch.nn.init.normal_(p, std=0.3)
    return CounterfactualPipeline(model), batch


@pytest.mark.parametrize("do", ["shadow_length=5", "light_angle=100", "pendulum_angle+=10",
                                ["pendulum_angle=0", "light_angle=80"]])
def test_non_descendants_bit_identical_descendants_follow(pipe_and_batch, do):
    pipe, batch = pipe_and_batch
    g = pipe.graph
    ab = pipe.abduct(batch["x"][:4], {k: v[:4] for k, v in batch["labels"].items()}, steps=3)
    cf_z, cf_labels = pipe.intervene(ab, do)
    nodes = [d.split("=")[0].rstrip("+-") for d in ([do] if isinstance(do, str) else do)]
    affected = set(nodes) | {d for n in nodes for d in g.descendants(n)}
    for i, name in enumerate(g.order):
        if name in affected:
            assert not torch.equal(cf_z[:, i], ab.z[:, i]), name
        else:
            assert torch.equal(cf_z[:, i], ab.z[:, i]), name
            assert torch.equal(cf_labels[name], ab.labels[name]), name


def test_shared_inversion_network_evaluations(pipe_and_batch):
    pipe, batch = pipe_and_batch
    n, k, steps = 3, 4, 5
    seen = []
    eps = pipe.model.eps

    def counting(x, t, c):
        seen.append(x.shape[0])
        return eps(x, t, c)

    pipe.model.eps = counting
    try:
        ab = pipe.abduct(batch["x"][:n], None, steps)
        outs = pipe.counterfactuals(ab, [[], *[f"light_angle={60 + 20 * j}" for j in range(k - 1)]], steps)
    finally:
        del pipe.model.eps
    assert sum(seen) == n * steps + n * k * steps  # not 2 * n * k * steps
    assert len(seen) == 2 * steps  # one batched call per step for inversion and for decoding
    assert len(outs) == k and outs[1].cf_x.shape == batch["x"][:n].shape


def test_same_seed_same_images(pipe_and_batch):
    pipe, batch = pipe_and_batch
    a = pipe(batch["x"][:2], None, "light_angle=70", steps=4, generator=torch.Generator().manual_seed(1))
    b = pipe(batch["x"][:2], None, "light_angle=70", steps=4, generator=torch.Generator().manual_seed(1))
    assert torch.equal(a.cf_x, b.cf_x) and torch.equal(a.noise, b.noise)
    assert all(torch.equal(a.cf_labels[k], b.cf_labels[k]) for k in a.cf_labels)


def test_inversion_then_sampling_reconstructs(tiny_ckpt):
    """Null intervention on the trained tiny model: mean L1 on the [0, 255] scale < 1.0 at 50 steps, < 0.5 at 100
    (measured ~0.26 and ~0.13); far above that at 5 steps (measured ~2.2)."""
    pipe = CounterfactualPipeline.from_checkpoint(tiny_ckpt)
    inp = checkpoint_inputs(tiny_ckpt, 8)
    err = {s: ((pipe(inp.x, inp.labels, [], steps=s).cf_x - inp.x).abs().mean() * 127.5).item() for s in (5, 50, 100)}
    assert err[50] < 1.0 and err[100] < 0.5 and err[5] > err[50]


def test_bad_inputs(pipe_and_batch):
    pipe, batch = pipe_and_batch
    x = batch["x"][:2]
    with pytest.raises(ValueError, match="unknown node 'height'"):
        pipe(x, None, "height=3", steps=2)
    with pytest.raises(ValueError, match=r"images must have shape \(B, 3, 16, 16\)"):
        pipe(torch.zeros(2, 3, 32, 32), None, [], steps=2)
    with pytest.raises(ValueError, match=r"images must have shape"):
        pipe(torch.zeros(2, 1, 16, 16), None, [], steps=2)
    with pytest.raises(ValueError, match="steps must be an integer >= 1"):
        pipe(x, None, [], steps=0)
    with pytest.raises(ValueError, match="labels missing node"):
        pipe(x, {"light_angle": torch.zeros(2)}, [], steps=2)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        pipe(x, None, "light_angle=500", steps=1)
        pipe(x, None, "light_angle=600", steps=1)
    assert sum("outside the training range of 'light_angle'" in str(m.message) for m in w) == 1


def test_categorical_out_of_range_and_missing_checkpoint(tmp_path):
    model, batch = tiny_model("morpho", n=64)
    pipe = CounterfactualPipeline(model)
    with pytest.raises(ValueError, match=r"categorical node 'digit' takes an integer class in \[0, 9\]"):
        pipe(batch["x"][:1], None, "digit=12", steps=1)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        CausalDiffAE.from_checkpoint(tmp_path / "missing.ckpt")


def test_grid_cli(tiny_ckpt, tmp_path):
    out = tmp_path / "g.png"
    main(["grid", "--checkpoint", str(tiny_ckpt), "--node", "light_angle", "--values", "60,90,120", "--n", "4",
          "--steps", "5", "--out", str(out)])
    with Image.open(out) as im:
        img = im.copy()
    cell = 64 + 4  # 16 px images upscaled to 64, 4 px gutters
    assert img.width == 5 * cell + 4 and img.height > 4 * cell
    assert img.getpixel((1, img.height - 2)) == (GUTTER,) * 3  # grey gutters set white-background cells apart
    rows = (tmp_path / "g.csv").read_text().splitlines()
    assert rows[0].startswith("node,source,row,column,intervention,pendulum_angle")
    assert len(rows) == 1 + 4 * 4
    assert sum(",light_angle=90," in r for r in rows) == 4
    with pytest.raises(SystemExit, match="unknown node 'nope'"):
        main(["grid", "--checkpoint", str(tiny_ckpt), "--node", "nope", "--values", "1", "--out", str(out)])


def test_counterfactual_cli_writes_a_loadable_folder(tiny_ckpt, tmp_path):
    main(["data", "make", "pendulum", "--n", "5", "--size", "24", "--out", str(tmp_path / "in")])
    main(["counterfactual", "--checkpoint", str(tiny_ckpt), "--input", str(tmp_path / "in"), "--do",
          "light_angle=100", "--do", "pendulum_angle+=5", "--steps", "4", "--out", str(tmp_path / "out")])
    ds = FolderDataset(tmp_path / "out", size=16, channels=3)
    assert len(ds) == 5 and torch.all(ds.labels["light_angle"] == 100)
    src = FolderDataset(tmp_path / "in", size=24, channels=3)
    torch.testing.assert_close(ds.labels["pendulum_angle"], src.labels["pendulum_angle"] + 5)
    text = (tmp_path / "out" / "labels.csv").read_text()
    assert "source_file,intervention,counterfactual" in text.splitlines()[0]
    assert "light_angle=100;pendulum_angle+=5" in text


def test_exact_inversion_reconstructs_where_plain_ddim_misses(tiny_ckpt):
    """At 20 steps in float32: fixed-point inversion L1 < 0.1 grey levels (measured ~0.02), plain DDIM > 0.3
    (measured ~0.6)."""
    inp = checkpoint_inputs(tiny_ckpt, 8)
    err = {}
    for inversion in ("ddim", "fixed-point"):
        pipe = CounterfactualPipeline.from_checkpoint(tiny_ckpt, inversion=inversion, precision="float32")
        err[inversion] = ((pipe(inp.x, inp.labels, [], steps=20).cf_x - inp.x).abs().mean() * 127.5).item()
    assert err["fixed-point"] < 0.1 < 0.3 < err["ddim"]
    assert err["fixed-point"] < err["ddim"] / 10
    with pytest.raises(ValueError, match="inversion must be one of"):
        CounterfactualPipeline.from_checkpoint(tiny_ckpt, inversion="edict")


@pytest.mark.parametrize("keep,w", [(False, 1.0), (False, 3.0), (True, 1.0), (True, 3.0)])
def test_residual_inversion_returns_x_under_a_null_intervention(tiny_ckpt, keep, w):
    """Residual abduction retraces the inversion's path: a null intervention gives x back to float precision (plain
    DDIM misses by > 0.3 grey levels at 20 steps), under every guidance that decodes the factual condition as is;
    an intervention still changes the image, and the same residuals serve K interventions at once."""
    inp = checkpoint_inputs(tiny_ckpt, 8)
    pipe = CounterfactualPipeline.from_checkpoint(tiny_ckpt, CounterfactualConfig(inversion="residual",
                                                                                  keep_unchanged=keep))
    ab = pipe.abduct(inp.x, inp.labels, steps=20)
    assert all(t.shape == (20, *inp.x.shape) for t in ab.trace)
    null, moved = pipe.counterfactuals(ab, [[], "light_angle=100"], steps=20, guidance=w)
    assert (null.cf_x - inp.x).abs().max().item() * 127.5 < 1e-3
    assert (moved.cf_x - inp.x).abs().mean().item() * 127.5 > 0.5
    with pytest.raises(ValueError, match=r"trace is for 20 steps; decode it with the steps and depth it was "
                       r"abducted with, not 10 \(10 at depth 1.0\)"):
        pipe.counterfactuals(ab, ["light_angle=100"], steps=10)


def test_a_partial_inversion_stops_at_its_depth_and_decodes_from_there(tiny_ckpt):
    """depth 0.5 at 20 steps: abduction and decoding take the 10 steps below T / 2; residual abduction still returns x
    under a null intervention and an intervention still moves it, also through a pipeline of another depth (an
    abduction is decoded at its own); half the network calls are made; fresh noise (x_T) is decoded on all 20 steps
    when told depth=1; a depth outside (0, 1] is refused."""
    inp = checkpoint_inputs(tiny_ckpt, 8)
    pipe = CounterfactualPipeline.from_checkpoint(tiny_ckpt, inversion="residual", depth=0.5)
    ab = pipe.abduct(inp.x, inp.labels, steps=20)
    half = pipe.model.scheduler_config["num_train_timesteps"] // 2
    assert ab.trace.residuals.shape[0] == 10 and pipe._schedule("sample", 20).t.max().item() == half - half // 10
    null, moved = pipe.counterfactuals(ab, [[], "light_angle=100"], steps=20)
    assert (null.cf_x - inp.x).abs().max().item() * 127.5 < 1e-3
    assert (moved.cf_x - inp.x).abs().mean().item() * 127.5 > 0.5
    with pytest.raises(ValueError, match=r"not 20 \(20 at depth 1.0\)"):
        pipe.predict(ab.noise, ab.z, ab.s, 20, trace=ab.trace, depth=1.0)
    deep = CounterfactualPipeline.from_checkpoint(tiny_ckpt, inversion="residual")  # depth 1: the abduction's own wins
    assert ab.depth == 0.5 and (deep.counterfactuals(ab, [[]], steps=20)[0].cf_x - inp.x).abs().max() * 127.5 < 1e-3
    calls = {}
    for depth in (1.0, 0.5):
        plain = CounterfactualPipeline.from_checkpoint(tiny_ckpt, depth=depth)
        eps, calls[depth] = plain.model.eps, 0

        def counted(*args, eps=eps, depth=depth):
            calls[depth] += 1
            return eps(*args)

        plain.model.eps = counted
        plain(inp.x, inp.labels, [], steps=20)
    assert calls == {1.0: 40, 0.5: 20}  # one network call a step, inverting and decoding
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match=f"depth must be in \\(0, 1\\] .*got {bad}"):
            CounterfactualPipeline.from_checkpoint(tiny_ckpt, depth=bad)
        with pytest.raises(ValueError, match="depth must be in"):
            pipe.predict(ab.noise, ab.z, ab.s, 20, depth=bad)


def test_masked_decoding_with_an_exact_abduction_changes_only_what_the_intervention_changes(tiny_ckpt):
    """Residual abduction + masked decoding: pixels the intervention does not change come back exactly (plain
    decoding under the new condition re-renders nearly all of them), and the change itself is still drawn."""
    inp = checkpoint_inputs(tiny_ckpt, 8)
    out, inside = {}, inp.x.abs() < 0.99  # pixels the final clamp to [-1, 1] cannot return by itself
    for against in ("factual", "masked"):
        pipe = CounterfactualPipeline.from_checkpoint(tiny_ckpt, inversion="residual",
                                                      keep_unchanged=against == "masked")
        cf = pipe(inp.x, inp.labels, "light_angle=100", steps=10).cf_x
        same = ((cf - inp.x).abs() * 127.5 < 1e-3)[inside].float().mean().item()
        out[against] = same, (cf - inp.x).abs().amax().item()
    assert out["factual"][0] < 0.01 < 0.1 < out["masked"][0], out  # share returned exactly: 0.003, 0.20
    assert out["masked"][1] * 127.5 > 5  # and somewhere the image moves by more than 5 grey levels


def test_a_checkpoint_recommends_its_switches_and_a_given_flag_wins(tiny_ckpt, tmp_path):
    """An exported checkpoint's ``inference`` entry sets the settings the pipeline, the config and the CLI use
    when not told otherwise: here residual inversion, so a null intervention returns the input exactly."""
    rec = export_checkpoint(tiny_ckpt, tmp_path / "rec.ckpt", inference={"inversion": "residual"})
    plain = export_checkpoint(tiny_ckpt, tmp_path / "plain.ckpt")
    assert CounterfactualPipeline.from_checkpoint(rec).inversion == "residual"
    assert CounterfactualPipeline.from_checkpoint(rec, inversion=None).inversion == "residual"  # None: not given
    assert CounterfactualPipeline.from_checkpoint(rec, inversion="ddim").inversion == "ddim"
    assert CounterfactualPipeline.from_checkpoint(plain).inversion == "ddim"
    opts = CounterfactualConfig.for_checkpoint(rec, steps=5, inversion=None)
    assert (opts.inversion, opts.steps, opts.keep_unchanged) == ("residual", 5, False)
    with pytest.raises(ValueError, match=r"inversion must be one of \('ddim', 'residual'\)"):
        CounterfactualConfig.for_checkpoint(rec, inversion="fixed-point")  # an ablation, not a user setting
    main(["data", "make", "pendulum", "--n", "3", "--size", "16", "--out", str(tmp_path / "in")])
    src = FolderDataset(tmp_path / "in", size=16, channels=3)
    err = {}
    for name, extra in (("rec", []), ("given", ["--inversion", "ddim"])):
        main(["counterfactual", "--checkpoint", str(rec), "--input", str(tmp_path / "in"), "--do", "light_angle+=0",
              "--steps", "6", *extra, "--out", str(tmp_path / name)])
        ds = FolderDataset(tmp_path / name, size=16, channels=3)
        assert [f.name for f in ds.files] == ["cf_" + f.name for f in src.files]
        err[name] = max((ds[i]["x"] - src[i]["x"]).abs().max().item() * 127.5 for i in range(3))
    assert err["rec"] <= 1.0 < err["given"]  # PNG rounding at most; plain DDIM misses by more
    deep = export_checkpoint(tiny_ckpt, tmp_path / "deep.ckpt", inference={"depth": 0.75})
    assert CounterfactualPipeline.from_checkpoint(deep).depth == 0.75
    parser = argparse.ArgumentParser()
    add_inference_args(parser)
    config = lambda *flags: CounterfactualConfig.from_args(parser.parse_args(["--checkpoint", str(deep), *flags]),  # noqa: E731
                                                           recommended_settings(deep))
    assert config().depth == 0.75 and config("--depth", "0.5").depth == 0.5
    with pytest.raises(ValueError, match=r"unknown inference setting\(s\) \['mode'\]"):
        export_checkpoint(tiny_ckpt, tmp_path / "bad.ckpt", inference={"mode": "replace"})


@pytest.mark.parametrize("propagation", ["none", "labels", "mechanisms"])
def test_ablation_variants(pipe_and_batch, propagation):
    pipe, batch = pipe_and_batch
    variant = CounterfactualPipeline(pipe.model, propagation=propagation)
    ab = variant.abduct(batch["x"][:4], None, steps=2)
    cf_z, cf_labels = variant.intervene(ab, "light_angle=100")
    i, j = pipe.graph.index("shadow_length"), pipe.graph.index("light_angle")
    g = pipe.model.alignment.prior_block
    if propagation == "none":  # descendants do not follow
        assert torch.equal(cf_z[:, i], ab.z[:, i])
    elif propagation == "labels":  # they follow the attribute SCM's counterfactual label (the default)
        assert CounterfactualPipeline(pipe.model).propagation == "labels"
        expect = ab.z[:, i] + g(i, cf_labels["shadow_length"]) - g(i, ab.labels["shadow_length"])
        torch.testing.assert_close(cf_z[:, i], expect)
    else:  # through the latent mechanisms, from the moved parent block
        expect = pipe.model.mechanisms.intervene(ab.z, {j: cf_z[:, j]}, propagate=True)
        torch.testing.assert_close(cf_z, expect)
        assert not torch.allclose(cf_z[:, i], ab.z[:, i])


def test_forward_noise_variant_is_seeded(pipe_and_batch):
    pipe, batch = pipe_and_batch
    variant = CounterfactualPipeline(pipe.model, inversion="none")
    a = variant.abduct(batch["x"][:2], None, 5, torch.Generator().manual_seed(3))
    b = variant.abduct(batch["x"][:2], None, 5, torch.Generator().manual_seed(3))
    c = variant.abduct(batch["x"][:2], None, 5, torch.Generator().manual_seed(4))
    assert torch.equal(a.noise, b.noise) and not torch.equal(a.noise, c.noise)
    a_t = variant._schedule("invert", 5).a_to[-1]  # the level the 5-step sampler starts from
    eps = (a.noise - a_t.sqrt() * batch["x"][:2]) / (1 - a_t).sqrt()
    assert abs(eps.std().item() - 1) < 0.1  # x_T = sqrt(a_T) x + sqrt(1 - a_T) eps with eps ~ N(0, I)


def test_per_sample_interventions(pipe_and_batch):
    pipe, batch = pipe_and_batch
    values = torch.tensor([60.0, 80.0, 100.0])
    out = pipe(batch["x"][:3], None, {"light_angle": values}, steps=2)
    assert torch.equal(out.cf_labels["light_angle"], values)
    with pytest.raises(ValueError, match="binary node 'sex' takes 0 or 1, got 2"):
        from causaldiff.graph import CausalGraph
        from causaldiff.interventions import resolve
        resolve({"sex": torch.tensor([0.0, 2.0])}, CausalGraph.from_dict({"sex": {"kind": "binary"}}))


def test_counterfactual_cli_keeps_source_depth_and_subfolder_names(tiny_ckpt, tmp_path):
    import numpy as np

    main(["data", "make", "pendulum", "--n", "2", "--size", "16", "--out", str(tmp_path / "in")])
    root = tmp_path / "in"
    (root / "sub").mkdir()
    np.save(root / "sub" / "000000.npy", np.linspace(-50, 50, 16 * 16 * 3, dtype=np.float32).reshape(16, 16, 3))
    lines = (root / "labels.csv").read_text().splitlines()
    (root / "labels.csv").write_text("\n".join([lines[0], lines[1].replace("000000.png", "sub/000000.npy"), lines[2]]))
    main(["counterfactual", "--checkpoint", str(tiny_ckpt), "--input", str(root), "--do", "light_angle=100",
          "--steps", "3", "--out", str(tmp_path / "out")])
    files = [r.split(",")[0] for r in (tmp_path / "out" / "labels.csv").read_text().splitlines()[1:]]
    assert files == ["cf_sub__000000.npy", "cf_000001.png"]
    arr = np.load(tmp_path / "out" / files[0])
    assert arr.shape == (16, 16, 3) and -50 <= arr.min() < arr.max() <= 50


def test_a_trace_spares_the_factual_decoding_and_keeps_the_output(tiny_ckpt):
    """The masked and transplant loops read the factual path and predictions from a residual abduction's trace:
    the same images (to float rounding) from fewer network evaluations (masked: B instead of 2B a step, 2B instead of
    3B under guidance; transplant: none before the transplant, 2B instead of 3B after it)."""
    from causaldiff.diffusion.masked import masked_loop
    from causaldiff.diffusion.transplant import TransplantSettings, transplant_loop

    inp = checkpoint_inputs(tiny_ckpt, 4)
    pipe = CounterfactualPipeline.from_checkpoint(tiny_ckpt, inversion="residual", precision="float32")
    ab = pipe.abduct(inp.x, inp.labels, steps=10)
    m, tables = pipe.model, pipe._schedule("sample", 10)
    cf_z, _ = pipe.intervene(ab, "light_angle=100")
    images = []

    def counted(x, t, cond):
        images.append(x.shape[0])
        return m.eps(x, t, cond)

    conds = {"noise": ab.noise, "c_cf": m.condition(cf_z, ab.s), "c_f": m.condition(ab.z, ab.s)}
    where = torch.tensor([[0.5, 0.5, 1.0]] * 4)
    sites = {"where": where, "patches": 0.5 * torch.ones(4, m.channels, 3, 3), "hwhm": torch.full((4,), 1.2)}
    settings = TransplantSettings(at=0.3)
    bump_at = settings.step(tables, m.scheduler_config["num_train_timesteps"])
    assert 0 < bump_at < 10
    loops = {"masked": (masked_loop, {}, {"tables": tables, "guidance": 1.0}, (40, 80)),
             "guided": (masked_loop, {}, {"tables": tables, "guidance": 2.0}, (80, 120)),
             "transplant": (transplant_loop, sites, {"tables": tables, "settings": settings,
                                                     "bump_at": bump_at},
                            ((10 - bump_at) * 8, bump_at * 4 + (10 - bump_at) * 12))}
    for name, (loop, extra, static, expected) in loops.items():
        outs = []
        for full in (True, False):
            images.clear()
            given = ab.trace._asdict() if full else {"residuals": ab.trace.residuals}
            given = {"eps_f" if k == "eps" else k: v for k, v in given.items()}
            outs.append(loop(counted, **conds, **extra, **given, **static))
            outs.append(sum(images))
        assert (outs[1], outs[3]) == expected, name
        assert (outs[0] - outs[2]).abs().max().item() * 127.5 < 1e-3, name


def test_bf16_network_keeps_the_sampler_in_float32_near_the_float32_path(pipe_and_batch, monkeypatch):
    """precision=bfloat16 runs the network under autocast and hands the sampler float32 eps: the counterfactual
    stays float32 and within a few grey levels of the float32 path; auto takes bf16 exactly where it is native."""
    import causaldiff.inference.pipeline as pipeline

    pipe, batch = pipe_and_batch
    x = batch["x"][:4]
    out = {}
    for precision in ("float32", "bfloat16"):
        p = CounterfactualPipeline(pipe.model, precision=precision)
        out[precision] = p(x, None, "light_angle=100", steps=4).cf_x
    assert out["bfloat16"].dtype == torch.float32
    diff = (out["bfloat16"] - out["float32"]).abs().mean().item() * 127.5
    assert 0 < diff < 3, diff
    monkeypatch.setattr(pipeline, "native_bf16", lambda device: False)
    assert CounterfactualPipeline(pipe.model, precision="auto").precision == "float32"
    monkeypatch.setattr(pipeline, "native_bf16", lambda device: True)
    assert CounterfactualPipeline(pipe.model, precision="auto").precision == "bfloat16"
    with pytest.raises(ValueError, match=r"precision must be one of \('auto', 'float32', 'bfloat16'\), got 'fp8'"):
        CounterfactualConfig(precision="fp8")
