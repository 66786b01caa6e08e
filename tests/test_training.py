import csv
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from causaldiff.cli import main
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.training.losses import diffae_loss
from tests.helpers import tiny_model

CONFIG = Path(__file__).parent.parent / "configs" / "tiny.yaml"


def metrics(run: Path, version: int) -> list[dict]:
    with open(run / "lightning_logs" / f"version_{version}" / "metrics.csv") as f:
        return [r for r in csv.DictReader(f) if r.get("train/mse")]


def test_checkpoint_loads_with_ema_weights_and_fitted_scm(tiny_ckpt):
    model = CausalDiffAE.from_checkpoint(tiny_ckpt)
    ckpt = torch.load(tiny_ckpt, weights_only=True)
    assert ckpt["global_step"] == 300
    assert bool(model.scm.fitted) and model.graph.order[0] == "pendulum_angle"
    ema = ckpt["state_dict"]["ema_model.unet.conv_in.weight"]
    raw = ckpt["state_dict"]["model.unet.conv_in.weight"]
    assert torch.equal(model.unet.conv_in.weight, ema) and not torch.equal(ema, raw)
    assert model.alignment.loc[0] != 0  # label normalisation travelled with the checkpoint


def test_diffusion_loss_falls(tiny_run):
    mse = [float(r["train/mse"]) for r in metrics(tiny_run, 0)]
    first, last = sum(mse[:5]) / 5, sum(mse[-5:]) / 5
    assert first / last > 2.5, (first, last)  # measured: ~1.0 → ~0.23 (ratio ~4.5) in 300 steps


def test_resume_continues_from_saved_step(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:  # the same command twice: the second run resumes from runs/tiny/checkpoints/last.ckpt
        main(["fit", "--config", str(CONFIG), "--trainer.max_steps=20"])
        first = torch.load(tmp_path / "runs/tiny/checkpoints/last.ckpt", weights_only=True)
        main(["fit", "--config", str(CONFIG), "--trainer.max_steps=30"])
    finally:
        os.chdir(cwd)
    ckpt = torch.load(tmp_path / "runs/tiny/checkpoints/last.ckpt", weights_only=True)
    assert first["global_step"] == 20 and ckpt["global_step"] == 30
    steps = [int(r["step"]) for r in metrics(tmp_path / "runs/tiny", 1)]
    assert min(steps) >= 20  # continued, did not restart from 0
    assert ckpt["optimizer_states"][0]["state"]  # Adam moments carried over


def test_default_root_dir_moves_everything_a_run_writes(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        main(["fit", "--config", str(CONFIG), "--trainer.max_steps=2", "--trainer.default_root_dir=elsewhere"])
    finally:
        os.chdir(cwd)
    assert (tmp_path / "elsewhere" / "checkpoints" / "last.ckpt").is_file()
    assert (tmp_path / "elsewhere" / "lightning_logs" / "version_0" / "hparams.yaml").is_file()
    assert not (tmp_path / "runs").exists()


def test_training_commands_fail_in_one_line(tmp_path):
    graph = '{"a": {"parents": ["b"]}, "b": {"parents": ["a"]}}'
    with pytest.raises(SystemExit, match=r"^error: graph has a cycle: a -> b -> a$"):
        main(["fit", "--config", str(CONFIG), "--data.world=null", f"--data.folder={tmp_path}",
              f"--data.folder_graph={graph}"])
    with pytest.raises(SystemExit, match=r"^error: config not found: nope\.yaml"):
        main(["fit", "--config", "nope.yaml"])


def test_pickled_code_checkpoint_is_refused(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("touch " + str(tmp_path / "pwned"),))

    path = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "hyper_parameters": {"graph": Evil()}}, path)
    with pytest.raises(ValueError, match="refusing to load .*evil.ckpt.*pickled objects"):
        CausalDiffAE.from_checkpoint(path)
    assert not (tmp_path / "pwned").exists()


def test_truncated_and_missing_checkpoints(tiny_ckpt, tmp_path):
    bad = tmp_path / "trunc.ckpt"
    bad.write_bytes(tiny_ckpt.read_bytes()[:5000])
    with pytest.raises(ValueError, match="trunc.ckpt is not a readable checkpoint"):
        CausalDiffAE.from_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="checkpoint not found"):
        CausalDiffAE.from_checkpoint(tmp_path / "nope.ckpt")


def test_missing_labels_are_excluded_from_label_terms():
    model, batch = tiny_model()
    model.train()
    masked = {**batch, "mask": {**batch["mask"], "light_angle": torch.zeros(8, dtype=torch.bool)}}
    changed = {**masked, "labels": {**batch["labels"], "light_angle": batch["labels"]["light_angle"] + 50}}
    torch.manual_seed(0)
    a = diffae_loss(model, masked)
    torch.manual_seed(0)
    b = diffae_loss(model, changed)
    assert torch.equal(a["kl_z"], b["kl_z"]) and torch.equal(a["readout"], b["readout"])
    torch.manual_seed(0)
    c = diffae_loss(model, {**batch, "labels": changed["labels"]})  # observed: the label now matters
    assert not torch.equal(a["kl_z"], c["kl_z"])


def test_fit_on_folder_with_nan_labels(tmp_path):
    main(["data", "make", "pendulum", "--n", "48", "--size", "16", "--out", str(tmp_path / "d")])
    lines = (tmp_path / "d" / "labels.csv").read_text().splitlines()
    rows = [lines[0]] + [",".join("" if (i % 3 == 0 and j == 3) else c for j, c in enumerate(line.split(",")))
                         for i, line in enumerate(lines[1:])]
    (tmp_path / "d" / "labels.csv").write_text("\n".join(rows) + "\n")
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        main(["fit", "--config", str(CONFIG), "--data.world=null", f"--data.folder={tmp_path / 'd'}",
              "--trainer.max_steps=6", "--trainer.callbacks=[]", "--ckpt_path=null"])
    finally:
        os.chdir(cwd)
    ckpts = list((tmp_path / "runs" / "tiny").rglob("*.ckpt"))
    assert ckpts
    rows = metrics(tmp_path / "runs" / "tiny", 0)
    assert all(torch.isfinite(torch.tensor(float(r["train/loss"]))) for r in rows)


@pytest.mark.slow
def test_ddp_two_cpu_processes(tmp_path):
    cmd = [sys.executable, "-m", "causaldiff.cli", "fit", "--config", str(CONFIG), "--trainer.strategy=ddp",
           "--trainer.devices=2", "--trainer.max_steps=10", "--ckpt_path=null"]
    proc = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ckpt = torch.load(tmp_path / "runs" / "tiny" / "checkpoints" / "last.ckpt", weights_only=True)
    assert ckpt["global_step"] == 10
    assert (tmp_path / "runs" / "tiny" / "lightning_logs" / "version_0" / "grids" / "step_0000010.png").is_file()


@pytest.mark.slow
def test_wandb_logger_offline_by_one_switch(tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        main(["fit", "--config", str(CONFIG), "--trainer.max_steps=10", "--ckpt_path=null",
              "--trainer.logger=pytorch_lightning.loggers.WandbLogger", "--trainer.logger.offline=true",
              "--trainer.logger.save_dir=runs/tiny", "--trainer.logger.project=causaldiff"])
    finally:
        os.chdir(cwd)
    runs = list((tmp_path / "runs" / "tiny" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and any(runs[0].rglob("*.wandb"))


def test_init_from_starts_from_a_checkpoints_weights(tiny_ckpt, tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    base = ["fit", "--config", str(CONFIG), f"--model.init_from={tiny_ckpt}", "--data.seed=3"]
    try:  # lr 0: the weights after two steps are exactly the ones loaded
        main([*base, "--trainer.max_steps=2", "--model.lr=0"])
        with pytest.raises(SystemExit, match="^error: init_from .*architecture differs"):
            main([*base, "--trainer.max_steps=2", "--model.latent_dim=8",
                  "--trainer.default_root_dir=other", "--trainer.callbacks=[]", "--trainer.logger=false"])
        with pytest.raises(SystemExit, match="^error: init_from .*do not match this run's"):
            main([*base, "--trainer.max_steps=2", "--data.size=8", "--trainer.default_root_dir=other",
                  "--trainer.callbacks=[]", "--trainer.logger=false"])
        # an eps model may start a v-prediction run: same weights, the output read as v from then on
        main([*base, "--trainer.max_steps=1", "--model.lr=0", "--model.prediction=v", "--trainer.default_root_dir=v",
              "--trainer.logger=false"])
    finally:
        os.chdir(cwd)
    src = torch.load(tiny_ckpt, weights_only=True)["state_dict"]
    for run in ("runs/tiny", "v"):
        new = torch.load(tmp_path / run / "checkpoints/last.ckpt", weights_only=True)["state_dict"]
        for key in ("unet.conv_in.weight", "encoder.head.weight", "mechanisms.f.2.0.weight", "condition_proj.null"):
            assert torch.equal(new[f"model.{key}"], src[f"ema_model.{key}"]), (run, key)
            assert torch.equal(new[f"ema_model.{key}"], src[f"ema_model.{key}"]), (run, key)
    assert CausalDiffAE.from_checkpoint(tmp_path / "v/checkpoints/last.ckpt").prediction == "v"
    assert CausalDiffAE.from_checkpoint(tiny_ckpt).prediction == "eps"
    new = torch.load(tmp_path / "runs/tiny/checkpoints/last.ckpt", weights_only=True)["state_dict"]
    # label statistics and the attribute SCM come from this run's data (seed 3), not the checkpoint's
    assert not torch.equal(new["model.alignment.loc"], src["model.alignment.loc"])
    assert not torch.equal(new["model.scm.quantiles"], src["model.scm.quantiles"])


def test_a_focus_weighted_fit_trains_on_the_brains_lesion_masks_and_refuses_data_without_them(tmp_path, caplog):
    caplog.set_level(logging.INFO)
    cwd = os.getcwd()
    os.chdir(tmp_path)
    base = ["fit", "--config", str(CONFIG), "--data.world=brain", "--data.n=64", "--trainer.max_steps=2",
            "--model.focus_weight=20", "--trainer.logger=false"]
    try:
        with pytest.raises(SystemExit, match="^error: focus_weight needs focus masks in the data: set --data.focus"):
            main(base)
        main([*base, "--data.focus=auto", "--data.world=pendulum", "--trainer.default_root_dir=runs/auto"])
        assert "focus: no local node's pixels are marked" in caplog.text  # auto found none: said, and fitted
        main([*base, "--data.focus=auto", "--trainer.default_root_dir=runs/auto_brain"])
        assert "focus: the pixels of lesion weigh more in the loss" in caplog.text
        main([*base, "--data.focus=lesion"])
    finally:
        os.chdir(cwd)
    ckpt = torch.load(tmp_path / "runs/tiny/checkpoints/last.ckpt", weights_only=False)
    assert ckpt["global_step"] == 2 and ckpt["hyper_parameters"]["focus_weight"] == 20
    assert ckpt["datamodule_hyper_parameters"]["focus"] == "lesion"


def test_coordinates_start_from_a_model_without_them(tiny_ckpt, tmp_path):
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:  # lr 0: the saved weights are the loaded ones, conv_in widened by two zero input channels
        main(["fit", "--config", str(CONFIG), f"--model.init_from={tiny_ckpt}", "--model.coordinates=true",
              "--trainer.max_steps=1", "--model.lr=0"])
    finally:
        os.chdir(cwd)
    ckpt = tmp_path / "runs/tiny/checkpoints/last.ckpt"
    src, new = CausalDiffAE.from_checkpoint(tiny_ckpt), CausalDiffAE.from_checkpoint(ckpt)
    w = new.unet.conv_in.weight
    assert new.coordinates and w.shape[1] == src.unet.conv_in.weight.shape[1] + 2
    assert torch.equal(w[:, :-2], src.unet.conv_in.weight) and not w[:, -2:].any()
    torch.manual_seed(0)
    x_t, t = torch.randn(2, src.channels, src.image_size, src.image_size), torch.tensor([10, 90])
    cond = src.null_condition(2)
    assert torch.allclose(new.eps(x_t, t, cond), src.eps(x_t, t, cond), atol=1e-6)  # the same function at the start


def test_coordinate_maps_span_the_image():
    from causaldiff.models.decoder import with_coordinates

    out = with_coordinates(torch.zeros(3, 1, 4, 6))
    assert out.shape == (3, 3, 4, 6) and not out[:, 0].any()
    assert out[0, 1, 0].tolist() == pytest.approx([-1, -0.6, -0.2, 0.2, 0.6, 1])  # x along the width
    assert out[0, 2, :, 0].tolist() == pytest.approx([-1, -1 / 3, 1 / 3, 1])  # y along the height
    assert torch.equal(out[0, 1:], out[2, 1:])


def test_p2_weighting_moves_weight_to_noisy_steps():
    from causaldiff.diffusion.schedule import alphas_cumprod, scheduler_config
    from causaldiff.training.losses import p2_weights

    w = p2_weights(alphas_cumprod(scheduler_config(1000)), gamma=1.0)
    assert w.mean().item() == pytest.approx(1.0) and bool((w[1:] >= w[:-1]).all())
    assert w[0] < 1e-3 and w[-1] > 1.3  # clean steps count ~0, the noisiest ~1.38x the mean
    model, batch = tiny_model()
    torch.manual_seed(0)
    plain = diffae_loss(model, batch)
    torch.manual_seed(0)
    same = diffae_loss(model, batch, p2_gamma=0.0)
    torch.manual_seed(0)
    weighted = diffae_loss(model, batch, p2_gamma=1.0)
    assert torch.equal(plain["mse"], same["mse"]) and not torch.equal(plain["mse"], weighted["mse"])


def test_min_snr_weighs_the_x0_error_by_min_snr_gamma_under_either_prediction():
    from causaldiff.diffusion.schedule import alphas_cumprod, scheduler_config
    from causaldiff.training.losses import min_snr_weights

    a = alphas_cumprod(scheduler_config(1000)).double()
    snr = a / (1 - a)
    # one x0 error e gives an eps error e * sqrt(a / (1 - a)) and a v error of that / sqrt(a) (v = sqrt(a) eps - ...)
    x0_err = torch.ones_like(a)
    eps_mse, v_mse = x0_err * snr, x0_err * snr / a
    target = x0_err * snr.clamp(max=5.0)  # Hang et al. (2023): the x0-MSE weighted by min(SNR, gamma)
    assert torch.allclose(eps_mse * min_snr_weights(a, 5.0, "eps"), target)
    assert torch.allclose(v_mse * min_snr_weights(a, 5.0, "v"), target)
    assert min_snr_weights(a, 5.0, "v")[-1] < 1e-3  # the noisiest v step counts ~SNR, not ~1


def test_focus_weight_charges_the_focus_pixels_more():
    model, batch = tiny_model()
    ones = {**batch, "focus": torch.ones_like(batch["x"][:, :1])}
    zeros = {**batch, "focus": torch.zeros_like(batch["x"][:, :1])}
    mse = {}
    for name, b, w in (("plain", batch, 0.0), ("off", ones, 0.0), ("none", zeros, 5.0), ("all", ones, 5.0),
                       ("no mask", batch, 5.0)):
        torch.manual_seed(0)
        mse[name] = diffae_loss(model, b, focus_weight=w)["mse"]
    assert mse["off"] == mse["plain"] == mse["none"] == mse["no mask"]  # weight 0, an empty mask, or no mask
    assert mse["all"].item() == pytest.approx(6 * mse["plain"].item(), rel=1e-5)  # every pixel at 1 + 5


def test_latent_noise_zero_feeds_the_posterior_mean():
    model, batch = tiny_model()
    reads = {}
    for scale in (0.0, 1.0):
        reads[scale] = []
        for seed in (1, 2):
            torch.manual_seed(seed)
            reads[scale].append(diffae_loss(model, batch, latent_noise=scale)["readout"])
    assert torch.equal(*reads[0.0])  # the mean: no draw reaches the read-out
    assert not torch.equal(*reads[1.0])


def test_a_node_the_image_does_not_show_does_not_reach_the_decoder():
    from tests.helpers import TINY

    graph = {"ph": {}, "hue": {"parents": ["ph"]}, "size": {"parents": ["ph"], "shown": False}}
    torch.manual_seed(0)
    model = CausalDiffAE(graph, image_size=16, channels=3, **TINY).eval()
    z, s = torch.randn(2, 3, model.latent_dim), torch.randn(2, model.style_dim)
    base = model.condition(z, s)
    for node, moves in (("ph", True), ("hue", True), ("size", False)):
        moved = z.clone()
        moved[:, model.graph.index(node)] += 3.0
        assert (model.condition(moved, s) - base).abs().max().item() > 1e-3 if moves else \
            torch.equal(model.condition(moved, s), base), node
    ckpt = {"state_dict": {f"model.{k}": v for k, v in model.state_dict().items()},
            "hyper_parameters": {"graph": model.graph.to_dict(), "image_size": 16, "channels": 3,
                                 "condition_norm": True, **TINY}}
    loaded = CausalDiffAE.from_checkpoint(ckpt, ema=False)
    assert loaded.graph["size"].shown is False and torch.equal(loaded.condition(z, s), base)


def test_v_prediction_converts_to_eps_and_trains_on_the_v_mse(tmp_path):
    model, batch = tiny_model()
    model.prediction = "v"
    x, t = batch["x"], torch.tensor([0, 50, 99] * 3)[: batch["x"].shape[0]]
    a = model.alphas_cumprod[t].view(-1, 1, 1, 1)
    noise = torch.randn_like(x)
    x_t = a.sqrt() * x + (1 - a).sqrt() * noise
    cond = model.condition(*[torch.randn(x.shape[0], *s) for s in ((len(model.graph), 4), (8,))])
    v = model.unet(x_t, t, class_labels=cond).sample
    eps = model.eps(x_t, t, cond)
    torch.testing.assert_close(eps, a.sqrt() * v + (1 - a).sqrt() * x_t)
    torch.testing.assert_close((x_t - (1 - a).sqrt() * eps) / a.sqrt(), a.sqrt() * x_t - (1 - a).sqrt() * v,
                               atol=1e-4, rtol=1e-4)  # x0 = sqrt(a) x_t - sqrt(1 - a) v
    torch.manual_seed(0)
    mse = diffae_loss(model, batch, p_uncond=0.0, latent_noise=0.0)["mse"]
    torch.manual_seed(0)  # the same draws by hand, in diffae_loss's order: latent noise (scaled by 0), t, noise
    mu_u, _, mu_s, _ = model.encode(batch["x"])
    torch.randn_like(mu_u), torch.randn_like(mu_s)
    t = torch.randint(0, 100, (x.shape[0],))
    a = model.alphas_cumprod[t].view(-1, 1, 1, 1)
    noise = torch.randn_like(x)
    torch.rand(x.shape[0])  # the condition-dropout draw
    x_t = a.sqrt() * x + (1 - a).sqrt() * noise
    v = model.unet(x_t, t, class_labels=model.condition(model.mechanisms(mu_u), mu_s)).sample
    v_target = a.sqrt() * noise - (1 - a).sqrt() * x
    torch.testing.assert_close(mse, (v - v_target).pow(2).mean(), rtol=1e-3, atol=1e-6)
    with pytest.raises(ValueError, match="prediction must be 'eps' or 'v'"):
        CausalDiffAE(model.graph.to_dict(), prediction="x0")
    main(["fit", "--config", str(CONFIG), "--trainer.max_steps=2", f"--trainer.default_root_dir={tmp_path}",
          "--model.prediction=v"])
    assert CausalDiffAE.from_checkpoint(tmp_path / "checkpoints" / "last.ckpt").prediction == "v"
    with pytest.raises(SystemExit, match=r"trained with prediction=v at step 2, where this config says eps; resume "
                                         r"it under the config it was started with \(--model.prediction=v"):
        main(["fit", "--config", str(CONFIG), "--trainer.max_steps=4", f"--trainer.default_root_dir={tmp_path}"])


def test_bf16_on_a_cpu_without_native_bf16_trains_in_float32_and_says_so(tmp_path, monkeypatch, capsys):
    """bf16 autocast on a CPU without AVX512-BF16 / AMX falls back to a convolution 17x slower than float32: fit
    trains in 32-true instead and says so in one line; a GPU's bf16 and float32 are kept as asked."""
    import causaldiff.precision
    from causaldiff.training.cli import _runnable_precision

    monkeypatch.setattr(causaldiff.precision, "native_bf16", lambda device="cpu": False)
    main(["fit", "--config", str(CONFIG), "--trainer.max_steps=2", f"--trainer.default_root_dir={tmp_path}",
          "--trainer.precision=bf16-mixed", "--trainer.accelerator=cpu", "--report.n=0"])
    said = [line for line in capsys.readouterr().out.splitlines() if "native bf16" in line]
    assert said == ["precision bf16-mixed: this CPU has no native bf16 (AVX512-BF16 / AMX), where it would train "
                    "many times slower; training in 32-true"]
    saved = next(tmp_path.rglob("config.yaml")).read_text()
    assert "precision: 32-true" in saved and (tmp_path / "checkpoints" / "last.ckpt").exists()
    assert _runnable_precision("32-true", "cpu") == "32-true"
    assert _runnable_precision("bf16-mixed", "gpu") == "bf16-mixed"


def test_last_checkpoint_holds_the_final_step_between_periodic_saves(tmp_path):
    """tiny saves every 10 steps; a run of 15 ends with last.ckpt at step 15 (Lightning alone kept step 10)."""
    main(["fit", "--config", str(CONFIG), "--trainer.max_steps=15", f"--trainer.default_root_dir={tmp_path}"])
    assert torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["global_step"] == 15


def test_auto_widths_follow_the_image_size_and_the_checkpoint_holds_them(tmp_path, caplog):
    from causaldiff.models.sizing import auto_widths

    # 32 px: the recipe measured on the test beds; 64 px: the GPU template's sizes; each UNet level halves exactly
    assert auto_widths(32) == {"encoder_widths": [32, 64, 128], "unet_channels": [32, 64, 64], "attention_levels": []}
    assert auto_widths(64) == {"encoder_widths": [32, 64, 128, 256], "unet_channels": [32, 64, 128, 128],
                               "attention_levels": [2]}
    assert auto_widths(96)["unet_channels"] == [32, 64, 128, 128] and auto_widths(96)["attention_levels"] == [3]
    assert auto_widths(30)["unet_channels"] == [32, 32]  # 30 -> 15: an odd size stops the halving
    assert max(auto_widths(1024)["unet_channels"] + auto_widths(1024)["encoder_widths"]) == 256
    with pytest.raises(ValueError, match="at least 8 px, got 4"):
        auto_widths(4)
    caplog.set_level(logging.INFO)
    main(["fit", "--config", str(CONFIG), "--trainer.max_steps=1", f"--trainer.default_root_dir={tmp_path}",
          "--model.widths=auto", "--model.unet_channels=[8]", "--trainer.logger=false"])
    assert ("widths: auto for 16 px images: encoder [32, 64], UNet [32, 32], attention at UNet levels none"
            in caplog.text)
    model = CausalDiffAE.from_checkpoint(tmp_path / "checkpoints/last.ckpt")
    assert model.unet.config.block_out_channels == (32, 32) and model.encoder.head.in_features == 64
    with pytest.raises(SystemExit, match="^error: widths must be auto or left out"):
        main(["fit", "--config", str(CONFIG), "--trainer.max_steps=1", f"--trainer.default_root_dir={tmp_path}/x",
              "--model.widths=large", "--trainer.logger=false", "--trainer.callbacks=[]"])
