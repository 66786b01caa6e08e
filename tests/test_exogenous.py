"""Exogenous codes of discrete nodes: drawn from the class prior when do() switches a class."""

import warnings

import pytest
import torch

from causaldiff.inference.pipeline import CounterfactualPipeline
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.models.exogenous import ClassBank
from causaldiff.training.module import CausalDiffAEModule
from tests.helpers import TINY, brain_with_banks, tiny_model


@pytest.fixture(scope="module")
def brain():
    return brain_with_banks()


def test_class_bank_keeps_the_latest_deviations_per_class_and_samples_them_seeded():
    bank = ClassBank(2, 4, 3)
    r = torch.arange(18.0).reshape(6, 3)
    y = torch.tensor([0, 1, 0, 0, 0, 0])
    bank.update(r, y, torch.ones(6))  # five of class 0 into four slots: the first is overwritten
    assert bank.written.tolist() == [5, 1]
    assert {tuple(row) for row in bank.bank[0].tolist()} == {tuple(row) for row in r[[2, 3, 4, 5]].tolist()}
    torch.testing.assert_close(bank.bank[1, 0], r[1])
    draw = lambda seed: bank.sample(torch.tensor([0] * 8), torch.Generator().manual_seed(seed))  # noqa: E731
    assert torch.equal(draw(1), draw(1))
    stored = {tuple(row) for row in r[[2, 3, 4, 5]].tolist()}
    assert {tuple(row) for row in draw(2).tolist()} <= stored  # every draw is a stored deviation
    assert torch.equal(bank.sample(torch.tensor([1, 1])), r[[1, 1]])  # a class holding one deviation gives it
    torch.testing.assert_close(bank.bank[0], r[[5, 2, 3, 4]])  # slots in order of arrival, wrapped
    bank.update(r[:2] + 100, torch.tensor([0, 0]), torch.tensor([1, 0]))  # the second row is not seen
    assert bank.written.tolist() == [6, 1]
    torch.testing.assert_close(bank.bank[0], torch.stack([r[5], r[0] + 100, r[3], r[4]]))  # the oldest (r2) goes


def test_switching_a_class_draws_the_code_from_its_prior_seeded(brain):
    model, (x0, y0), _ = brain
    pipe = CounterfactualPipeline(model)
    ab = pipe.abduct(x0, y0, steps=2)
    k, g = model.graph.index("lesion"), model.alignment.prior_block
    draws = [pipe.intervene(ab, "lesion=1", torch.Generator().manual_seed(s))[0][:, k] - g(k, torch.ones(3))
             for s in (1, 1, 2)]
    assert torch.equal(draws[0], draws[1])  # same seed, same lesion
    assert not torch.allclose(draws[0], draws[2])  # another seed, another one
    assert (draws[0] - 5.0).abs().max() < 0.5  # from the bank near 5: nothing of the lesion-free deviation is left
    shifted = ab.z[:, k] - g(k, torch.zeros(3))  # what a model without a prior keeps
    assert (draws[0] - shifted).abs().min() > 1.0


def test_a_kept_class_keeps_its_abducted_code(brain):
    model, _, (x1, y1) = brain
    pipe = CounterfactualPipeline(model)
    ab = pipe.abduct(x1, y1, steps=2)
    cf_z, _ = pipe.intervene(ab, "lesion=1", torch.Generator().manual_seed(1))
    torch.testing.assert_close(cf_z, ab.z, atol=1e-6, rtol=0)  # do(lesion=1) on lesion images: nothing drawn


def test_an_unfitted_prior_warns_once_and_shifts():
    model, batch = tiny_model("brain", n=256)
    pipe = CounterfactualPipeline(model)
    labels = {k: v[:2] for k, v in batch["labels"].items()}
    labels["lesion"] = torch.zeros(2)
    ab = pipe.abduct(batch["x"][:2], labels, steps=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cf_z, _ = pipe.intervene(ab, "lesion=1")
        pipe.intervene(ab, "lesion=1")
    assert len([w for w in caught if "no fitted exogenous prior" in str(w.message)]) == 1
    k, g = model.graph.index("lesion"), model.alignment.prior_block
    torch.testing.assert_close(cf_z[:, k], g(k, torch.ones(2)) + ab.z[:, k] - g(k, torch.zeros(2)))  # shifted


def test_training_fills_the_banks_from_the_ema_encoder():
    model, batch = tiny_model("brain", n=256)
    module = CausalDiffAEModule(model.graph.to_dict(), image_size=16, channels=1, **TINY)
    module._update_exogenous(batch)
    bank = module.ema_model.exogenous.banks["lesion"]
    y = batch["labels"]["lesion"]
    assert bank.written.tolist() == [int((y == 0).sum()), int((y == 1).sum())]
    ema = module.ema_model
    with torch.no_grad():
        r = ema.deviations(ema.mechanisms(ema.encode(batch["x"])[0]), batch["labels"])[:, model.graph.index("lesion")]
    torch.testing.assert_close(bank.bank[0, :int((y == 0).sum())], r[y == 0])
    assert torch.equal(module.model.exogenous.banks["lesion"].bank, bank.bank)  # both models carry them


def test_checkpoints_without_priors_load_empty(tmp_path):
    model, _ = tiny_model("brain", n=256)
    state = {k: v for k, v in model.state_dict().items() if not k.startswith("exogenous.")}
    state["exogenous.moments.lesion.count"] = torch.ones(2)  # an older layout of the priors is dropped too
    path = tmp_path / "old.ckpt"
    torch.save({"state_dict": {f"model.{k}": v for k, v in state.items()},
                "hyper_parameters": {**model.config, "graph": model.graph.to_dict()}}, path)
    loaded = CausalDiffAE.from_checkpoint(path, ema=False)
    assert int(loaded.exogenous.banks["lesion"].written.sum()) == 0
