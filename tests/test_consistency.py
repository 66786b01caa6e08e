"""Counterfactual-consistency objective: counterfactual latents as inference builds them, a loss that is zero for a
no-op, gradients into the decoder and none into the reader, and its ramped weight in training."""

import copy

import torch

from causaldiff.cli import main
from causaldiff.training.consistency import consistency_loss, counterfactual_latents
from causaldiff.training.module import CausalDiffAEModule
from tests.helpers import TINY, tiny_model
from tests.test_training import CONFIG, metrics


def test_counterfactual_latents_shift_the_node_and_leave_non_descendants_bit_identical():
    model, batch = tiny_model("pendulum")
    z = model.mechanisms(model.encode(batch["x"])[0]).detach()
    labels, mask = batch["labels"], {k: v.clone() for k, v in batch["mask"].items()}
    k = model.graph.index("light_angle")
    mask["light_angle"][0] = False  # an unobserved label: that image is not intervened on
    perm = torch.arange(len(z)).roll(1)
    cf_z, y_new, valid = counterfactual_latents(model, z, labels, mask, k, perm)
    g = model.alignment.prior_block
    shift = g(k, labels["light_angle"][perm].float()) - g(k, labels["light_angle"].float())
    torch.testing.assert_close(cf_z[2:, k] - z[2:, k], shift[2:])
    assert valid.tolist() == [False, False] + [True] * (len(z) - 2)  # image 1 would take image 0's unknown value
    assert torch.equal(cf_z[:2], z[:2]) and torch.equal(y_new[:2], labels["light_angle"][:2].float())
    for node in model.graph.order:
        if node != "light_angle" and node not in model.graph.descendants("light_angle"):
            assert torch.equal(cf_z[:, model.graph.index(node)], z[:, model.graph.index(node)])


def test_a_switched_class_takes_the_other_images_deviation():
    model, batch = tiny_model("brain")
    z = model.mechanisms(model.encode(batch["x"])[0]).detach()
    k = model.graph.index("sex")
    perm = torch.arange(len(z)).flip(0)
    cf_z, _, _ = counterfactual_latents(model, z, batch["labels"], batch["mask"], k, perm)
    switched = batch["labels"]["sex"] != batch["labels"]["sex"][perm]
    assert switched.any() and (~switched).any()
    assert torch.equal(cf_z[switched, k], z[perm][switched, k])
    assert torch.equal(cf_z[~switched, k], z[~switched, k])  # a kept class keeps its own deviation
    reader = copy.deepcopy(model).requires_grad_(False)
    for seed in range(4):  # discrete and continuous nodes: cross-entropy, KL and squared terms
        torch.manual_seed(seed)
        mu_u, _, mu_s, _ = model.encode(batch["x"])
        loss = consistency_loss(model, reader, batch["x"], model.mechanisms(mu_u), mu_s, batch["labels"],
                                batch["mask"])
        assert loss.isfinite() and loss.item() >= 0


def test_loss_is_zero_for_a_no_op_and_trains_the_decoder_not_the_reader():
    model, batch = tiny_model("pendulum")  # continuous nodes only
    reader = copy.deepcopy(model).requires_grad_(False)
    one = {k: v[:1] for k, v in batch["labels"].items()}  # a batch of one: the other image is itself
    mu_u, _, mu_s, _ = model.encode(batch["x"][:1])
    loss = consistency_loss(model, reader, batch["x"][:1], model.mechanisms(mu_u), mu_s, one,
                            {k: v[:1] for k, v in batch["mask"].items()})
    assert loss.abs().item() < 1e-8
    mu_u, _, mu_s, _ = model.encode(batch["x"])
    torch.manual_seed(1)
    loss = consistency_loss(model, reader, batch["x"], model.mechanisms(mu_u), mu_s, batch["labels"], batch["mask"])
    assert loss.item() > 0 and loss.isfinite()
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.unet.parameters())
    assert all(p.grad is None for p in reader.parameters())


def test_training_ramps_the_weight_and_logs_the_term(tmp_path):
    module = CausalDiffAEModule(graph=tiny_model("pendulum")[0].graph.to_dict(), image_size=16, **TINY,
                                beta_cf=2.0, cf_start_steps=10)
    assert [module._cf_weight(step) for step in (0, 10, 15, 20, 40)] == [0.0, 0.0, 1.0, 2.0, 2.0]
    main(["fit", "--config", str(CONFIG), "--trainer.max_steps=6", f"--trainer.default_root_dir={tmp_path}",
          "--model.beta_cf=1.0", "--model.cf_start_steps=1"])
    rows = [r for r in metrics(tmp_path, 0) if r.get("train/cf")]
    assert rows and all(0 < float(r["train/cf"]) < 100 for r in rows)
