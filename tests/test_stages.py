"""Staged training schedules: parsing, the learning-rate cycle of each stage, and a staged fit that switches its
prediction target, saves it with the weights, and resumes in the right stage from any checkpoint."""

import math
import shutil
from pathlib import Path

import pytest
import torch

from causaldiff.cli import main
from causaldiff.models.causal_diffae import CausalDiffAE
from causaldiff.training.stages import lr_at, parse_stages, stage_at

CONFIG = Path(__file__).parent.parent / "configs" / "tiny.yaml"
DEFAULTS = {"prediction": "eps", "focus_weight": 0.0, "lr": 1e-3, "warmup_steps": 2}


def test_stages_lie_end_to_end_and_each_anneals_its_own_learning_rate():
    stages = parse_stages([{"steps": 10}, {"steps": 6, "prediction": "v", "lr": 5e-4, "warmup_steps": 0}], DEFAULTS)
    assert [(s.start, s.steps, s.prediction, s.lr) for s in stages] == [(0, 10, "eps", 1e-3), (10, 6, "v", 5e-4)]
    assert stage_at(stages, 9) is stages[0] and stage_at(stages, 10) is stages[1] and stage_at(stages, 99) is stages[1]
    lrs = [lr_at(stages, step) for step in range(16)]
    assert lrs[:2] == [5e-4, 1e-3]  # warm-up over 2 steps
    assert lrs[9] == pytest.approx(5e-4 * (1 + math.cos(math.pi * 7 / 8)))  # near 0 at the first stage's end
    assert lrs[10] == pytest.approx(5e-4)  # the restart, at the second stage's lr
    assert lrs[15] == pytest.approx(2.5e-4 * (1 + math.cos(math.pi * 5 / 6)))


@pytest.mark.parametrize("spec, message", [
    ([{"steps": 0}], "stage 1: steps must be an integer >= 1; got 0"),
    ([{"steps": 5}, {"step": 5}], "stage 2: unknown setting 'step'; a stage sets steps, prediction"),
    ([{"steps": 5, "prediction": "x0"}], "stage 1: prediction must be 'eps' or 'v'; got 'x0'"),
    ([{"steps": 5, "lr": 0}], "stage 1: lr must be > 0"),
    (["fast"], "stage 1: expected a mapping of steps, prediction"),
])
def test_bad_stages_are_named(spec, message):
    with pytest.raises(ValueError, match=message):
        parse_stages(spec, DEFAULTS)


def test_a_staged_fit_switches_its_target_and_resumes_in_the_right_stage_from_any_checkpoint(tmp_path):
    """eps for 10 steps, then v for 10 (tiny saves every 10): the checkpoint at step 10 says eps (its last step
    trained eps), the final one v; resuming from step 10 trains the second stage's 10 steps under v."""
    stages = "--model.stages=[{steps: 10, prediction: eps}, {steps: 10, prediction: v, warmup_steps: 0}]"
    keep = tmp_path / "keep.yaml"  # every periodic checkpoint kept, not only the last
    keep.write_text("trainer:\n  callbacks:\n    - class_path: causaldiff.training.callbacks.ModelCheckpoint\n"
                    "      init_args: {save_last: true, every_n_train_steps: 10, save_top_k: -1, "
                    "enable_version_counter: false}\n")
    run = ["fit", "--config", str(CONFIG), "--config", str(keep), stages, "--trainer.max_steps=20"]
    main([*run, f"--trainer.default_root_dir={tmp_path / 'a'}"])
    final = torch.load(tmp_path / "a/checkpoints/last.ckpt", weights_only=True)
    assert final["global_step"] == 20 and final["hyper_parameters"]["prediction"] == "v"
    assert CausalDiffAE.from_checkpoint(tmp_path / "a/checkpoints/last.ckpt").prediction == "v"
    [step10] = (tmp_path / "a/checkpoints").glob("*step=10.ckpt")
    mid = torch.load(step10, weights_only=True)
    assert mid["global_step"] == 10 and mid["hyper_parameters"]["prediction"] == "eps"

    (tmp_path / "b/checkpoints").mkdir(parents=True)  # a run killed after step 10, then the same command again
    shutil.copy(step10, tmp_path / "b/checkpoints/last.ckpt")
    main([*run, f"--trainer.default_root_dir={tmp_path / 'b'}"])
    resumed = torch.load(tmp_path / "b/checkpoints/last.ckpt", weights_only=True)
    assert resumed["global_step"] == 20 and resumed["hyper_parameters"]["prediction"] == "v"
    lrs = resumed["lr_schedulers"][0]
    assert lrs["last_epoch"] == 20 and lrs["_last_lr"][0] == pytest.approx(0.0, abs=1e-6)  # annealed to 0

    with pytest.raises(SystemExit, match="the stages add up to 20 steps but the run has 30"):
        main([*run[:-1], "--trainer.max_steps=30", f"--trainer.default_root_dir={tmp_path / 'c'}"])
    with pytest.raises(SystemExit, match="trained with prediction=v at step 20, where this config says eps"):
        main(["fit", "--config", str(CONFIG), "--trainer.max_steps=30", f"--trainer.default_root_dir={tmp_path / 'a'}"])
